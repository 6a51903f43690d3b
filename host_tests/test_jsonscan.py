# net/jsonscan.py: numbers read in place from JSON bodies (both runtimes).
from chargeguard.net import jsonscan
from chargeguard.net.jsonscan import FLAG_BOOL, FLAG_REQUIRED


def read(body, key, scale=0, index=-1, flags=0):
    buf = bytearray(body)
    end = jsonscan.object_end(buf, len(buf))
    assert end > 0, body
    return jsonscan.number(buf, end, key, scale, index, flags)


def bad(body, key, scale=0, index=-1, flags=0):
    try:
        value = read(body, key, scale, index, flags)
    except ValueError as err:
        return err.args[0]
    raise AssertionError("no error for %r: %r" % (body, value))


def test_object_end():
    assert jsonscan.object_end(bytearray(b"{}"), 2) == 2
    assert jsonscan.object_end(bytearray(b' {"a":1}\r\n'), 10) == 8
    assert jsonscan.object_end(bytearray(b"\t{ }"), 4) == 4
    for body in (b"", b"{", b"}", b"[1]", b'"x"', b"{\"a\":1", b"null", b"\xff\xfe", b" { ] "):
        assert jsonscan.object_end(bytearray(body), len(body)) == -1, body
    # Only buf[:end] counts (the rest of a shared buffer is an older body).
    buf = bytearray(b'{"a":1}}}}}')
    assert jsonscan.object_end(buf, 3) == -1
    assert jsonscan.object_end(buf, 7) == 7


def test_numbers_scaled_and_rounded_half_away_from_zero():
    cases = (
        (b"16", 0, 16),
        (b"-16", 0, -16),
        (b"0", 3, 0),
        (b"15.96", 3, 15960),
        (b"15.9996", 3, 16000),
        (b"15.9994", 3, 15999),
        (b"0.0005", 3, 1),
        (b"0.0004", 3, 0),
        (b"-0.0005", 3, -1),
        (b"2.5", 0, 3),
        (b"-2.5", 0, -3),
        (b"3.5", 0, 4),
        (b"1e3", 0, 1000),
        (b"1.5E+2", 0, 150),
        (b"25e-1", 0, 3),
        (b"7e-400", 3, 0),
        (b"123456789", 0, 123456789),
        (b"0.000000001", 0, 0),
        (b"6900.0", 0, 6900),
    )
    for text, scale, expected in cases:
        body = b'{"x": 1, "v": ' + text + b', "y": 2}'
        assert read(body, b'"v"', scale) == expected, (text, scale, read(body, b'"v"', scale))
        # The value may also end the object.
        assert read(b'{"v":' + text + b"}", b'"v"', scale) == expected, text


def test_out_of_range_and_no_numbers_are_errors_naming_the_key():
    for text in (b"1000000000", b"1e9", b"1e300", b'"16"', b"16abc", b"1.2.3", b"1.", b".5", b"-", b"+1", b"1e",
                 b"[1]", b"{}", b"true", b"tru", b"nul"):
        assert bad(b'{"v":' + text + b"}", b'"v"') == "v", text
    assert bad(b'{"v":1.5}', b'"v"', 9) == "v"  # 1.5e9 after scaling


def test_missing_and_null():
    assert read(b'{"a":1}', b'"v"') is None
    assert read(b'{"v":null}', b'"v"') is None
    assert read(b'{"v" : null }', b'"v"') is None
    assert bad(b'{"a":1}', b'"v"', flags=FLAG_REQUIRED) == "v"
    assert bad(b'{"v":null}', b'"v"', flags=FLAG_REQUIRED) == "v"


def test_booleans_only_when_asked():
    assert read(b'{"v":true}', b'"v"', flags=FLAG_BOOL) == 1
    assert read(b'{"v": false }', b'"v"', flags=FLAG_BOOL) == 0
    assert read(b'{"v":1}', b'"v"', flags=FLAG_BOOL) == 1  # a 0/1 number is a flag too
    assert bad(b'{"v":true}', b'"v"') == "v"
    assert bad(b'{"v":truex}', b'"v"', flags=FLAG_BOOL) == "v"
    assert bad(b'{"v":"true"}', b'"v"', flags=FLAG_BOOL) == "v"


def test_keys_must_match_whole_and_be_members():
    body = b'{"max_amp":32,"amp_x":7,"name":"amp","s":"\\"amp\\":9","amp":16}'
    assert read(body, b'"amp"') == 16
    # A string value equal to the key, followed by a colon nowhere: no member.
    assert read(b'{"a":"amp","b":"x"}', b'"amp"') is None
    # The first member of a name counts.
    assert read(b'{"v":1,"v":2}', b'"v"') == 1


def test_array_elements():
    nrg = b'{"nrg":[230.1,231,229.5,0,10.24,10.5,0,2355.1,2404,0,0,4759.1,99,98,0,0]}'
    assert read(nrg, b'"nrg"', 3, 4) == 10240
    assert read(nrg, b'"nrg"', 3, 6) == 0
    assert read(nrg, b'"nrg"', 0, 11) == 4759
    assert read(nrg, b'"nrg"', 0, 0) == 230
    assert read(b'{"a":[ 1 , null , 3 ]}', b'"a"', 0, 1) is None
    assert read(b'{"a":[1,null,3]}', b'"a"', 0, 2) == 3
    assert bad(b'{"a":[1,2]}', b'"a"', 0, 2) == "a"  # too short
    assert bad(b'{"a":[1,2}', b'"a"', 0, 5) == "a"  # not closed
    assert bad(b'{"a":5}', b'"a"', 0, 0) == "a"  # no array
    assert bad(b'{"a":["x",2]}', b'"a"', 0, 1) == "a"  # not numbers
    assert bad(b'{"a":[[1],2]}', b'"a"', 0, 1) == "a"


def _lcg(seed):
    # A tiny deterministic generator (the same numbers on both runtimes).
    state = [seed]

    def next_byte():
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (state[0] >> 16) & 0xFF

    return next_byte


def test_fuzzed_bodies_give_a_number_none_or_valueerror():
    # Truncations, byte flips and random bytes of a real answer: the scanner
    # either reads an int below 10**9, None, or raises ValueError; it never
    # reads outside the body nor raises anything else.
    base = b'{"car":2,"err":0,"frc":2,"amp":16,"tcl":10,"psm":0,"nrg":[230,230,230,0,10.1,10.2,9.9,2323,2346,2277,0,6946,99,99,99,0],"wh":1234.5}'
    keys = (b'"car"', b'"frc"', b'"tcl"', b'"nrg"', b'"wh"', b'"amp"')
    rnd = _lcg(7)
    bodies = [base[:n] + b"}" for n in range(1, len(base))]
    for _ in range(300):
        body = bytearray(base)
        for _ in range(1 + rnd() % 4):
            body[rnd() % len(body)] = rnd()
        bodies.append(bytes(body))
    for _ in range(100):
        bodies.append(b"{" + bytes(rnd() for _ in range(rnd() % 60)) + b"}")
    seen = 0
    for body in bodies:
        buf = bytearray(body)
        end = jsonscan.object_end(buf, len(buf))
        if end < 0:
            continue
        for key in keys:
            for index in (-1, 4, 11):
                try:
                    value = jsonscan.number(buf, end, key, 3, index)
                except ValueError:
                    continue
                assert value is None or (type(value) is int and -(10**9) < value < 10**9), (body, key, value)
                seen += 1
    assert seen > 100
