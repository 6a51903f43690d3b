"""Numbers read straight out of a JSON body in a buffer, without parsing it into objects.

A wallbox's status answer is read into the HTTP client's (shared) body buffer;
`json.loads` on it would build a dict of every key (3-5 KB of heap for a
60-key OpenEVSE /status), which a busy ESP32 may not have. The drivers need a
handful of numbers, so they look each one up in place:

    object_end(buf, end) -> where the one JSON object in buf[:end] ends, or -1
    number(buf, end, key, scale=0, index=-1, flags=0) -> int or None

`key` is the member name with its quotes (b'"car"'), so "amp" does not match
"max_amp" nor "amp_x". The first member with that name counts (a JSON parser
keeps the last); members of nested objects are not told apart from the outer
ones (the boxes that use this send flat objects). A number becomes an int
times 10**scale, rounded half away from zero: `"amp": 15.96` with scale 3 is
15960 (mA). `index` >= 0 reads element `index` of an array of numbers
(go-e's `nrg`). `null` or a missing key is None (ValueError with FLAG_REQUIRED);
`true`/`false` are 1/0 only with FLAG_BOOL. A value that is no number (a
string, "16abc", "1.2.3", an object), or 10**9 or more after scaling, raises
ValueError(key name). Nothing is allocated but the ValueError and the
result (a small int), so a poll never fails for want of heap.
"""

from micropython import const

FLAG_REQUIRED = const(1)
FLAG_BOOL = const(2)

_LIMIT = const(1000000000)
_LIMIT_10 = const(100000000)
_EXP_CAP = const(40)  # exponents are counted up to this; past it the value is 0 or out of range anyway


def object_end(buf, end):
    """The end of the body in buf[:end] without trailing blanks, or -1 unless it is one `{...}` (blanks around it allowed)."""
    start = 0
    while start < end and buf[start] <= 32:
        start += 1
    while end > start and buf[end - 1] <= 32:
        end -= 1
    if end - start < 2 or buf[start] != 123 or buf[end - 1] != 125:  # '{' ... '}'
        return -1
    return end


def _blanks(buf, pos, end):
    while pos < end and buf[pos] <= 32:
        pos += 1
    return pos


def _digits(buf, pos, end):
    while pos < end and 48 <= buf[pos] <= 57:
        pos += 1
    return pos


def _bad(key):
    return ValueError(bytes(key[1:-1]).decode())


def number(buf, end, key, scale=0, index=-1, flags=0):
    """The number of member `key` in buf[:end] (see the module doc); raises ValueError(name) when bad."""
    klen = len(key)
    pos = 0
    while True:
        pos = buf.find(key, pos, end)
        if pos < 0:
            if flags & FLAG_REQUIRED:
                raise _bad(key)
            return None
        # A quote escaped inside a string (\"car\":) is no member name.
        after = _blanks(buf, pos + klen, end)
        if (pos == 0 or buf[pos - 1] != 92) and after < end and buf[after] == 58:  # not '\', then ':'
            break
        pos += klen
    pos = _blanks(buf, after + 1, end)
    if index >= 0:
        if pos >= end or buf[pos] != 91:  # '['
            raise _bad(key)
        pos = _blanks(buf, pos + 1, end)
        while index:
            # Skip one element: a number, true, false or null.
            while pos < end and buf[pos] not in b",]":
                if buf[pos] in b'"[{':
                    raise _bad(key)
                pos += 1
            if pos >= end or buf[pos] != 44:  # ',': the array is too short
                raise _bad(key)
            pos = _blanks(buf, pos + 1, end)
            index -= 1
    if buf.find(b"null", pos, pos + 4) == pos:
        if flags & FLAG_REQUIRED:
            raise _bad(key)
        return None
    if flags & FLAG_BOOL:
        if buf.find(b"true", pos, pos + 4) == pos:
            value, pos = 1, pos + 4
        elif buf.find(b"false", pos, pos + 5) == pos:
            value, pos = 0, pos + 5
        else:
            value = -1
        if value >= 0:
            pos = _blanks(buf, pos, end)
            if pos < end and buf[pos] in b",}]":
                return value
            raise _bad(key)
    neg = pos < end and buf[pos] == 45  # '-'
    first = pos + neg
    point = _digits(buf, first, end)
    whole = point - first
    stop = point
    if stop < end and buf[stop] == 46:  # '.'
        stop = _digits(buf, stop + 1, end)
        if stop == point + 1:
            whole = 0  # "1." is no JSON number
    exp = 0
    pos = stop
    if pos < end and buf[pos] | 32 == 101:  # 'e' or 'E'
        pos += 1
        minus = pos < end and buf[pos] == 45
        if pos < end and buf[pos] in b"+-":
            pos += 1
        digits = pos
        while pos < end and 48 <= buf[pos] <= 57:
            if exp < _EXP_CAP:
                exp = exp * 10 + buf[pos] - 48
            pos += 1
        if pos == digits:
            whole = 0
        if minus:
            exp = -exp
    pos = _blanks(buf, pos, end)
    if not whole or pos >= end or buf[pos] not in b",}]":
        raise _bad(key)
    # Add up the digits that end up before the point; look at the first one
    # dropped to round.
    keep = whole + scale + exp
    value = 0
    count = 0
    dropped = 0
    while count < keep or (count == keep and dropped == 0 and first < stop):
        digit = 0
        if first < stop:
            digit = buf[first] - 48
            first += 1
            if digit < 0:
                continue  # the point
        if count == keep:
            dropped = 1 + (digit >= 5)
            break
        if value >= _LIMIT_10:
            raise _bad(key)
        value = value * 10 + digit
        count += 1
    if keep < 0:
        value = 0  # every digit is dropped, the first one among them is a 0
    if dropped == 2:
        value += 1
    if value >= _LIMIT:
        raise _bad(key)
    return -value if neg else value
