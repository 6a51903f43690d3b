# chargeguard.net.http against a tiny in-process HTTP server (both runtimes).
import asyncio

from chargeguard.net.http import BodyBuffer, HttpClient
from httpfake import HANG, HOST, IS_MPY, FakeServer, elapsed_ms, now_ms, reply, until
from support import skip


def serve(handler, check):
    """Run `await check(server)` with a FakeServer answering by `handler`."""

    async def main():
        server = await FakeServer(handler).start()
        try:
            await check(server)
        finally:
            await server.close()

    asyncio.run(main())


def answer(*steps):
    return lambda method, path, body: steps


def test_get_with_content_length():
    async def check(server):
        client = HttpClient()
        code = await client.get(HOST, server.port, "/RealTimeData", 1000)
        assert code == 200, client.error
        assert client.error is None
        assert bytes(client.body()) == b"hello"
        assert client.body_is(b"hello")
        assert not client.body_is(b"hell")
        method, path, headers, body = server.requests[0]
        assert (method, path, body) == ("GET", "/RealTimeData", b"")
        assert headers["host"] == "127.0.0.1:%d" % server.port
        assert headers["connection"] == "close"

    serve(answer(reply(200, b"hello")), check)


def test_request_line_is_http10():
    seen = []

    def handler(method, path, body):
        return [reply(204)]

    async def check(server):
        client = HttpClient()
        assert await client.get(HOST, server.port, "/a?b=1", 1000) == 204
        assert client.body_len == 0
        seen.append(server.requests[0][1])

    serve(handler, check)
    assert seen == ["/a?b=1"]


def test_read_to_close_and_split_packets():
    raw = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    steps = (raw[:7], 20, raw[7:30], 20, raw[30:] + b"OK\r\n", 20, b"and more")

    async def check(server):
        client = HttpClient()
        assert await client.get(HOST, server.port, "/", 1000) == 200, client.error
        assert bytes(client.body()) == b"OK\r\nand more"

    serve(answer(*steps), check)


def test_body_is_ignores_surrounding_whitespace():
    async def check(server):
        client = HttpClient(max_body=16)
        assert await client.get(HOST, server.port, "/", 1000) == 200
        assert client.body_is(b"OK")
        assert not client.body_is(b"KO")

    serve(answer(reply(200, b" OK\r\n")), check)


def test_header_names_any_case_and_extra_bytes_ignored():
    raw = b"HTTP/1.1 200 OK\r\ncontent-LENGTH:  3 \r\nX-A: b\r\n\r\nabcdef"

    async def check(server):
        client = HttpClient()
        assert await client.get(HOST, server.port, "/", 1000) == 200, client.error
        assert bytes(client.body()) == b"abc"

    serve(answer(raw), check)


def test_bare_newlines_accepted():
    async def check(server):
        client = HttpClient()
        assert await client.get(HOST, server.port, "/", 1000) == 200, client.error
        assert bytes(client.body()) == b"xy"

    serve(answer(b"HTTP/1.0 200 OK\nContent-Length: 2\n\nxy"), check)


def test_http_error_status_is_returned_with_body():
    async def check(server):
        client = HttpClient()
        assert await client.get(HOST, server.port, "/", 1000) == 500
        assert client.error is None
        assert bytes(client.body()) == b"boom"

    serve(answer(reply(500, b"boom")), check)


def test_body_limit_exact_fits():
    async def check(server):
        client = HttpClient(max_body=64)
        assert await client.get(HOST, server.port, "/", 1000) == 200, client.error
        assert client.body_len == 64

    serve(answer(reply(200, b"x" * 64, length=False)), check)


def test_oversize_body_without_length():
    async def check(server):
        client = HttpClient(max_body=64)
        assert await client.get(HOST, server.port, "/", 1000) == 0
        assert client.error == "long body"
        assert client.body_len == 0

    serve(answer(reply(200, b"x" * 65, length=False)), check)


def test_oversize_content_length_refused_before_reading():
    async def check(server):
        client = HttpClient(max_body=64)
        start = now_ms()
        assert await client.get(HOST, server.port, "/", 2000) == 0
        assert client.error == "long body"
        # Refused from the header alone, not after waiting for 100000 bytes.
        assert elapsed_ms(start) < 1000

    serve(answer(b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r\n\r\n", HANG), check)


def test_oversize_body_after_large_head_chunk():
    # Body bytes that arrive with the head count against the limit too.
    async def check(server):
        client = HttpClient(max_body=8)
        assert await client.get(HOST, server.port, "/", 1000) == 0
        assert client.error == "long body"

    serve(answer(reply(200, b"y" * 40, length=False)), check)


def test_head_too_large():
    big = b"HTTP/1.0 200 OK\r\nX-Filler: " + b"z" * 2000 + b"\r\n\r\n"

    async def check(server):
        client = HttpClient()
        assert await client.get(HOST, server.port, "/", 1000) == 0
        assert client.error == "long head"

    serve(answer(big), check)


def test_small_buffer_drops_long_header_lines():
    # A 64-byte body limit gives a 256-byte buffer: longer header lines are
    # looked at by their name and dropped, the status line's reason too.
    raw = (
        b"HTTP/1.1 200 " + b"r" * 300 + b"\r\n"
        + b"Server: " + b"s" * 400 + b"\r\n"
        + b"content-length: 4\r\nX-A: b\r\n\r\nOK\r\n"
    )

    async def check(server):
        client = HttpClient(max_body=64)
        assert len(client.buf) == 256
        assert await client.get(HOST, server.port, "/", 1000) == 200, client.error
        assert bytes(client.body()) == b"OK\r\n"
        assert client.body_is(b"OK")

    serve(answer(raw), check)


def test_small_buffer_with_head_in_small_packets():
    lines = [b"HTTP/1.0 200 OK"] + [b"X-%d: %s" % (k, b"v" * (60 + k * 7)) for k in range(9)]
    raw = b"\r\n".join(lines + [b"Content-Length: 10", b"", b"0123456789"])
    steps = []
    for at in range(0, len(raw), 37):
        steps += [raw[at : at + 37], 5]

    async def check(server):
        client = HttpClient(max_body=16)
        assert await client.get(HOST, server.port, "/", 2000) == 200, client.error
        assert bytes(client.body()) == b"0123456789"

    serve(answer(*steps), check)


def test_head_limit_counts_dropped_lines():
    raw = b"HTTP/1.0 200 OK\r\n" + b"X-Filler: " + b"z" * 1000 + b"\r\n\r\nOK"

    async def check(server):
        client = HttpClient(max_body=64)
        assert await client.get(HOST, server.port, "/", 1000) == 0
        assert client.error == "long head"

    serve(answer(raw), check)


def test_long_transfer_encoding_line_still_refused():
    raw = b"HTTP/1.0 200 OK\r\nTransfer-Encoding:" + b" " * 300 + b"chunked\r\n\r\n"

    async def check(server):
        client = HttpClient(max_body=64)
        assert await client.get(HOST, server.port, "/", 1000) == 0
        assert client.error == "chunked"

    serve(answer(raw), check)


def test_chunked_refused():
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n0\r\n\r\n"

    async def check(server):
        client = HttpClient()
        assert await client.get(HOST, server.port, "/", 1000) == 0
        assert client.error == "chunked"

    serve(answer(raw), check)


def test_truncated_body():
    async def check(server):
        client = HttpClient()
        assert await client.get(HOST, server.port, "/", 1000) == 0
        assert client.error == "short body"

    serve(answer(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nabc"), check)


def test_closed_without_response():
    async def check(server):
        client = HttpClient()
        assert await client.get(HOST, server.port, "/", 1000) == 0
        assert client.error == "no reply"

    serve(answer(), check)


def test_closed_in_head():
    async def check(server):
        client = HttpClient()
        assert await client.get(HOST, server.port, "/", 1000) == 0
        assert client.error == "short head"

    serve(answer(b"HTTP/1.0 200 OK\r\nContent-"), check)


def test_bad_status_lines():
    for raw in (b"garbage\r\n\r\n", b"HTTP/1.0 2x0 OK\r\n\r\n", b"HTTP/1.0 200OK\r\n\r\n", b"{\"a\": 1}\n\n"):

        async def check(server):
            client = HttpClient()
            assert await client.get(HOST, server.port, "/", 1000) == 0
            assert client.error == "bad status", (raw, client.error)

        serve(answer(raw), check)


def test_bad_content_length():
    for value in (b"", b"12a", b"-1", b"99999999999"):
        raw = b"HTTP/1.0 200 OK\r\nContent-Length: " + value + b"\r\n\r\n"

        async def check(server):
            client = HttpClient()
            assert await client.get(HOST, server.port, "/", 1000) == 0
            assert client.error == "bad length", (value, client.error)

        serve(answer(raw), check)


def test_hung_peer_times_out_at_deadline_and_is_closed():
    async def check(server):
        client = HttpClient()
        start = now_ms()
        assert await client.get(HOST, server.port, "/", 300) == 0
        took = elapsed_ms(start)
        assert client.error == "timeout"
        assert 250 <= took < 1000, took
        assert await until(lambda: server.client_closed)
        assert server.client_closed == 1

    serve(answer(HANG), check)


def test_deadline_covers_the_body():
    # Head at once, then the body trickles in: the one deadline still holds.
    steps = (b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nab", 150, b"cd", 150, b"ef", 150, b"gh", HANG)

    async def check(server):
        client = HttpClient()
        start = now_ms()
        assert await client.get(HOST, server.port, "/", 300) == 0
        assert client.error == "timeout"
        assert elapsed_ms(start) < 1000

    serve(answer(*steps), check)


def test_zero_timeout_fails_without_connecting():
    async def check(server):
        client = HttpClient()
        assert await client.get(HOST, server.port, "/", 0) == 0
        assert client.error == "timeout"
        assert server.requests == []

    serve(answer(reply(200, b"x")), check)


def test_connection_refused():
    ports = []

    async def check(server):
        ports.append(server.port)

    serve(answer(), check)

    async def main():
        client = HttpClient()
        assert await client.get(HOST, ports[0], "/", 1000) == 0
        assert client.error == "connection refused", client.error

    asyncio.run(main())


def test_bad_paths_rejected_without_connecting():
    async def check(server):
        client = HttpClient()
        for path in ("", "x", "/a b", "/a\r\nX: y"):
            assert await client.get(HOST, server.port, path, 1000) == 0
            assert client.error == "bad path"
        assert server.requests == []

    serve(answer(reply(200)), check)


def test_json_errors_raise_value_error():
    async def check(server):
        client = HttpClient()
        assert await client.get(HOST, server.port, "/", 1000) == 200
        try:
            client.json()
        except ValueError:
            return
        raise AssertionError("no ValueError")

    serve(answer(reply(200, b'{"ChargeState": ')), check)


def test_client_reused_with_same_buffer():
    def handler(method, path, body):
        return [reply(200, path[1:].encode())]

    async def check(server):
        client = HttpClient()
        buf = client.buf
        for name in ("first", "2nd", "third-one"):
            assert await client.get(HOST, server.port, "/" + name, 1000) == 200
            assert bytes(client.body()) == name.encode()
        assert client.buf is buf and len(buf) > 2048  # the default body limit, + 1
        # A failure after a success leaves no stale body behind.
        assert await client.get(HOST, server.port, "/a b", 1000) == 0
        assert client.body_len == 0 and client.status == 0

    serve(handler, check)


def test_cancel_closes_connection():
    async def check(server):
        client = HttpClient()
        task = asyncio.create_task(client.get(HOST, server.port, "/", 5000))
        # Cancelled while the request is out, not before it was even sent.
        assert await until(lambda: server.requests)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError("not cancelled")
        assert await until(lambda: server.client_closed)
        assert server.client_closed == 1
        # The client is usable again afterwards.
        assert not client._busy

    serve(answer(HANG), check)


def test_busy_client_refuses_second_request():
    async def check(server):
        client = HttpClient()
        first = asyncio.create_task(client.get(HOST, server.port, "/", 1000))
        assert await until(lambda: server.requests)  # the first is out and held
        assert await client.get(HOST, server.port, "/", 300) == 0
        assert len(server.requests) == 1  # the second sent nothing
        assert await first == 0
        assert client.error == "timeout"  # the first one's error, untouched

    serve(answer(HANG), check)


def test_address_is_looked_up_once_and_again_after_a_failure():
    # On MicroPython a name lookup blocks the loop: the client keeps the
    # address and looks up again only after a connection error.
    import chargeguard.net.http as http_module

    if not IS_MPY:
        skip("CPython resolves inside asyncio.open_connection, off the loop")
    real_socket = http_module.socket
    lookups = []

    class CountingSocket:
        def __getattr__(self, name):
            return getattr(real_socket, name)

        def getaddrinfo(self, *args):
            lookups.append(args[0])
            return real_socket.getaddrinfo(*args)

    async def check(server):
        client = HttpClient()
        for _ in range(3):
            assert await client.get(HOST, server.port, "/", 1000) == 200, client.error
        assert lookups == [HOST]
        # Nothing listens there: the failure makes the next request look up again.
        assert await client.get(HOST, 1, "/", 1000) == 0
        assert await client.get(HOST, server.port, "/", 1000) == 200
        assert lookups == [HOST, HOST, HOST]

    http_module.socket = CountingSocket()
    try:
        serve(answer(reply(200, b"ok")), check)
    finally:
        http_module.socket = real_socket


def test_host_names_go_to_the_async_resolver_inside_the_deadline():
    if not IS_MPY:
        skip("CPython resolves in its executor; the resolver hook is MicroPython's path")
    from chargeguard.net import http

    asked = []

    async def resolve(name, timeout_ms):
        asked.append((name, timeout_ms))
        if name == "nowhere.lan":
            raise ValueError("dns: no such name")
        if name == "slow.lan":
            await asyncio.sleep(10)  # a resolver that never answers
        return HOST

    async def check(server):
        client = HttpClient()
        assert await client.get("trydan.lan", server.port, "/x", 1000) == 200, client.error
        assert await client.get("trydan.lan", server.port, "/x", 1000) == 200  # looked up once
        assert asked == [("trydan.lan", 1000)]
        assert await client.get(HOST, server.port, "/x", 1000) == 200  # numeric: no lookup
        assert len(asked) == 1
        assert await client.get("nowhere.lan", server.port, "/x", 1000) == 0
        assert client.error == "dns: no such name"
        start = now_ms()
        assert await client.get("slow.lan", server.port, "/x", 300) == 0
        assert client.error == "timeout" and elapsed_ms(start) < 1500

    http.use_resolver(resolve)
    try:
        serve(lambda method, path, body: [reply(200, b"ok")], check)
    finally:
        http.use_resolver(None)


def test_clients_sharing_a_body_buffer_never_wait_for_each_other():
    # Path /stall: the head and part of the body, then nothing (a box that
    # stalls inside its answer); /mute: no answer at all; /ok: a whole one.
    def handler(method, path, body):
        if path == "/stall":
            return [b"HTTP/1.0 200 OK\r\nContent-Length: 20\r\n\r\n{\"a\"", HANG]
        if path == "/mute":
            return [HANG]
        return [reply(200, b"fine")]

    async def check(server):
        shared = BodyBuffer(65)
        stalled, mute, other = (HttpClient(64, shared) for _ in range(3))
        assert len(stalled._head) == 256 and other.buf is shared.buf
        # A client that gets no answer holds nothing: the other reads its body.
        waiting = asyncio.create_task(mute.get(HOST, server.port, "/mute", 600))
        assert await until(lambda: len(server.requests) == 1)
        assert await other.get(HOST, server.port, "/ok", 1000) == 200, other.error
        assert bytes(other.body()) == b"fine"
        other.release()
        assert await waiting == 0 and mute.error == "timeout"
        # One whose body has started holds it: the other fails at once, "busy".
        stalling = asyncio.create_task(stalled.get(HOST, server.port, "/stall", 800))
        assert await until(lambda: shared.holder is stalled)
        assert await other.get(HOST, server.port, "/ok", 1000) == 0
        assert other.error == "busy"
        # At once: the stalled one still holds the buffer (a wait for it would
        # end only with its 800 ms timeout), whatever the host's pace.
        assert shared.holder is stalled and not stalling.done()
        # Its timeout frees the buffer.
        assert await stalling == 0 and stalled.error == "timeout"
        assert shared.holder is None
        assert await other.get(HOST, server.port, "/ok", 1000) == 200, other.error
        assert bytes(other.body()) == b"fine" and shared.holder is other
        # Held until release() or the client's next request.
        assert await stalled.get(HOST, server.port, "/ok", 1000) == 0 and stalled.error == "busy"
        other.release()
        assert await stalled.get(HOST, server.port, "/ok", 1000) == 200, stalled.error
        assert await stalled.get(HOST, server.port, "/ok", 1000) == 200, stalled.error

    serve(handler, check)


def test_a_cancelled_request_frees_the_shared_body_buffer():
    def handler(method, path, body):
        return [b"HTTP/1.0 200 OK\r\nContent-Length: 20\r\n\r\n{", HANG]

    async def check(server):
        shared = BodyBuffer(65)
        client = HttpClient(64, shared)
        task = asyncio.create_task(client.get(HOST, server.port, "/", 5000))
        assert await until(lambda: shared.holder is client)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert shared.holder is None

    serve(handler, check)


def test_a_body_is_posted_as_json_and_the_answer_read():
    async def check(server):
        client = HttpClient(256)
        body = b'{"state":"active","charge_current":10}'
        code = await client.get(HOST, server.port, "/claims/17223", 1000, body)
        assert code == 200, client.error
        assert client.body_is(b'{"msg":"done"}')
        method, path, headers, received = server.requests[0]
        assert (method, path, received) == ("POST", "/claims/17223", body)
        assert headers["content-type"] == "application/json"
        assert headers["content-length"] == str(len(body))
        assert headers["connection"] == "close"
        # get() on the same client is a GET again, with no body.
        assert await client.get(HOST, server.port, "/status", 1000) == 200
        assert server.requests[1][0] == "GET" and server.requests[1][3] == b""

    serve(answer(reply(200, b'{"msg":"done"}')), check)


def test_post_to_a_hung_server_times_out():
    async def check(server):
        client = HttpClient(256)
        start = now_ms()
        assert await client.get(HOST, server.port, "/claims/1", 300, b"{}") == 0
        assert client.error == "timeout"
        assert 250 <= elapsed_ms(start) < 1000

    serve(answer(HANG), check)


def test_a_request_head_is_built_in_the_clients_buffer_without_allocating():
    # The guard's commands pass their path as bytes from a buffer of their
    # own: the head is then made with no object at all (a command must not
    # fail for want of heap), on CPython the same bytes.
    client = HttpClient(64)
    path = memoryview(bytearray(b"/write/Intensity=16"))
    body = b'{"a":1}'
    # The first request to a host makes its "Host" value (once per host and port).
    assert client._request(path, "192.0.2.10", 8080, None, None, False) > 0
    get = b"GET /write/Intensity=16 HTTP/1.0\r\nHost: 192.0.2.10:8080\r\nConnection: close\r\n\r\n"
    post = (
        b"POST /write/Intensity=16 HTTP/1.0\r\nHost: 192.0.2.10:8080\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n"
    )
    if IS_MPY:
        import micropython

        micropython.heap_lock()  # any allocation now raises MemoryError
        try:
            get_size = client._request(path, "192.0.2.10", 8080, None, None, False)
            post_size = client._request(path, "192.0.2.10", 8080, body, None, False)
        finally:
            micropython.heap_unlock()
    else:
        get_size = client._request(path, "192.0.2.10", 8080, None, None, False)
        post_size = client._request(path, "192.0.2.10", 8080, body, None, False)
    assert (get_size, post_size) == (len(get), len(post)), (get_size, post_size)
    assert bytes(client._head[: len(post)]) == post
    # Port 80 is not named; a head longer than the buffer is left to the string path (-1).
    assert client._request(b"/x", "box", 80, None, None, True) == len(b"GET /x HTTP/1.1\r\nHost: box\r\n\r\n")
    assert bytes(client._head[:10]) == b"GET /x HTT"
    assert client._request(b"/" + b"x" * 300, "box", 80, None, None, False) == -1


def test_a_head_longer_than_the_buffer_still_goes_out():
    seen = []

    def handler(method, path, body):
        return [reply(200, b"OK")]

    long_path = "/" + "a" * 400

    async def check(server):
        client = HttpClient(64)  # a 256-byte buffer: the head does not fit
        assert await client.get(HOST, server.port, long_path, 1000) == 200, client.error
        assert await client.get(HOST, server.port, "/p", 1000, b'{"x":1}', "X-Test: 1\r\n") == 200, client.error
        seen.extend(server.requests)

    serve(handler, check)
    assert seen[0][1] == long_path
    assert seen[1][:2] == ("POST", "/p") and seen[1][2]["x-test"] == "1" and seen[1][3] == b'{"x":1}'
