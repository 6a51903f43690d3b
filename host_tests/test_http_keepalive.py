# chargeguard.net.http_keep's persistent connections (KeptClient, the
# HomeWizard v2 meter's: one TLS handshake per connection, not per poll): the
# answer's framing decides whether the connection is kept (Content-Length,
# Connection: close, HTTP/1.0, read to close, extra bytes, chunked), a kept
# connection the peer closed is retried once on a fresh one, a peer that stops
# answering on it costs the deadline, and reuse allocates less than a new
# connection. Over plain HTTP against the in-process FakeServer, so it runs on
# CPython and on both MicroPython unix ports (the 32-bit one has no ssl); the
# TLS side is in host_tests/system/test_http_meter_v2_system.py.
import asyncio

from chargeguard.net.http import HttpClient
from chargeguard.net.http_keep import KeptClient
from httpfake import CLOSE, HANG, HOST, IS_MPY, FakeServer, elapsed_ms, now_ms, reply, until
from support import skip


def serve(handler, check, servers=1):
    """Run `await check(*servers)` with keep-alive FakeServers answering by `handler`."""

    async def main():
        started = []
        try:
            for _ in range(servers):
                started.append(await FakeServer(handler, keep=True).start())
            await check(*started)
        finally:
            for server in started:
                await server.close()

    asyncio.run(main())


def numbered(*extra, headers=b"", instead=None):
    """A FakeServer handler: each request answered with its number ("1", "2", ...), `headers` in the
    answer and `extra` steps after it; request n gets the steps instead[n] instead, if given."""
    count = [0]

    def handler(method, path, body):
        count[0] += 1
        if instead and count[0] in instead:
            return list(instead[count[0]])
        return [reply(200, b"%d" % count[0], headers)] + list(extra)

    return handler


async def get_ok(client, server, expected, timeout_ms=1000):
    code = await client.get(HOST, server.port, "/data", timeout_ms)
    assert code == 200, client.error
    assert bytes(client.body()) == expected, bytes(client.body())


def test_one_connection_serves_every_request_as_http11():
    async def check(server):
        client = KeptClient(256)
        for n in range(1, 6):
            await get_ok(client, server, b"%d" % n)
        assert server.connections == 1 and client.connections == 1
        headers = server.requests[0][2]
        assert "connection" not in headers  # HTTP/1.1: persistent unless told
        assert headers["host"] == "127.0.0.1:%d" % server.port
        await client.close()
        assert await until(lambda: server.client_closed)
        await get_ok(client, server, b"6")  # after close(): a fresh connection
        assert server.connections == 2 and client.connections == 2

    serve(numbered(), check)


def test_without_keep_every_request_is_http10_with_connection_close():
    async def check(server):
        client = HttpClient(256)
        for n in range(1, 4):
            await get_ok(client, server, b"%d" % n)
        assert server.connections == 3
        assert all(r[2]["connection"] == "close" for r in server.requests)

    serve(numbered(), check)


def test_connection_close_in_the_answer_closes_it_after_the_answer():
    for value in (b"close", b"Close", b"keep-alive, CLOSE"):

        async def check(server):
            client = KeptClient(256)
            for n in range(1, 4):
                await get_ok(client, server, b"%d" % n)
            assert server.connections == 3 and client.connections == 3, value
            # The client closed each one after its answer (the server waited for more).
            assert await until(lambda: server.client_closed == 3)

        serve(numbered(headers=b"Connection: " + value + b"\r\n"), check)


def test_an_http10_answer_or_one_read_to_the_close_is_not_kept():
    for raw, steps in (
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", ()),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nok", (CLOSE,)),  # no length: to the close
    ):

        def handler(method, path, body):
            return [raw] + list(steps)

        async def check(server):
            client = KeptClient(256)
            for _ in range(3):
                await get_ok(client, server, b"ok")
            assert server.connections == 3 and client.connections == 3, raw

        serve(handler, check)


def test_a_204_without_length_is_kept():
    async def check(server):
        client = KeptClient(256)
        for _ in range(3):
            assert await client.get(HOST, server.port, "/", 1000) == 204, client.error
            assert client.body_len == 0
        assert server.connections == 1

    serve(lambda method, path, body: [b"HTTP/1.1 204 No Content\r\n\r\n"], check)


def test_bytes_after_the_announced_body_are_never_read_as_the_next_answer():
    answers = [0]

    def handler(method, path, body):
        answers[0] += 1
        return [reply(200, b"%d" % answers[0])[:-1] + b"%dEXTRA" % answers[0]]

    async def check(server):
        client = KeptClient(256)
        for n in range(1, 4):
            await get_ok(client, server, b"%d" % n)
        assert server.connections == 3 and client.connections == 3

    serve(handler, check)


def test_a_kept_connection_the_peer_closed_is_retried_once_on_a_fresh_one():
    # The peer closes after every answer without saying so (a meter that
    # drops idle connections): each next request finds it closed, goes out
    # again on a fresh connection and gets its answer in the same call.
    async def check(server):
        client = KeptClient(256)
        await get_ok(client, server, b"1")
        # Wait until the close has reached the client's side (a request made
        # before that would race it and could be answered on the old connection).
        assert await until(lambda: server.connections == 1 and not server._tasks)
        for n in range(2, 6):
            await get_ok(client, server, b"%d" % n)
            assert await until(lambda: not server._tasks)
        assert server.connections == 5 and client.connections == 5
        assert len(server.requests) == 5  # no request answered twice

    serve(numbered(CLOSE), check)


def test_a_post_is_never_sent_twice():
    async def check(server):
        client = KeptClient(256)
        await get_ok(client, server, b"1")
        assert await until(lambda: not server._tasks)
        code = await client.get(HOST, server.port, "/set", 1000, b'{"a": 1}')
        assert code == 0 and client.error is not None
        assert len(server.requests) == 1 and server.connections == 1
        await get_ok(client, server, b"2")  # the next request connects anew

    serve(numbered(CLOSE), check)


def test_a_short_body_on_a_kept_connection_fails_and_the_next_request_reconnects():
    short = [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345", CLOSE]

    async def check(server):
        client = KeptClient(256)
        await get_ok(client, server, b"1")
        assert await client.get(HOST, server.port, "/data", 1000) == 0
        assert client.error == "short body"  # an answer came: not sent again
        assert len(server.requests) == 2
        await get_ok(client, server, b"3")
        assert server.connections == 2 and client.connections == 2

    serve(numbered(instead={2: short}), check)


def test_a_chunked_answer_turns_the_client_to_http10_within_the_same_call():
    def handler(method, path, body):
        if server_headers[-1].get("connection") == "close":
            return [reply(200, b"plain")]
        return [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nchunk\r\n0\r\n\r\n"]

    server_headers = []

    async def check(server):
        server.requests = Recorder(server_headers)
        client = KeptClient(256)
        await get_ok(client, server, b"plain")
        assert not client.keep  # HTTP/1.0 with Connection: close to this peer from now on
        await get_ok(client, server, b"plain")
        assert len(server.requests) == 3 and client.connections == 3

    serve(handler, check)


class Recorder(list):
    # FakeServer.requests that also keeps each request's headers where the handler sees them.
    def __init__(self, headers):
        super().__init__()
        self.headers = headers

    def append(self, request):
        self.headers.append(request[2])
        super().append(request)


def test_a_peer_that_stops_answering_on_the_kept_connection_costs_the_deadline():
    async def check(server):
        client = KeptClient(256)
        await get_ok(client, server, b"1")
        start = now_ms()
        assert await client.get(HOST, server.port, "/data", 300) == 0
        took = elapsed_ms(start)
        assert client.error == "timeout"
        assert 250 <= took < 1000, took  # no retry past the deadline
        assert await until(lambda: server.client_closed == 1)  # the kept connection is dropped
        await get_ok(client, server, b"3")
        assert server.connections == 2

    serve(numbered(instead={2: [HANG]}), check)


def test_a_cancelled_request_drops_the_kept_connection():
    async def check(server):
        client = KeptClient(256)
        await get_ok(client, server, b"1")
        task = asyncio.create_task(client.get(HOST, server.port, "/data", 5000))
        assert await until(lambda: len(server.requests) == 2)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert await until(lambda: server.client_closed == 1)
        assert client._sock is None and not client._busy

    serve(numbered(instead={2: [HANG]}), check)


def test_another_peer_gets_its_own_connection():
    async def check(first, second):
        client = KeptClient(256)
        await get_ok(client, first, b"1")
        await get_ok(client, first, b"2")
        await get_ok(client, second, b"3")  # closes the one to `first` (one handler: one count)
        assert await until(lambda: first.client_closed == 1)
        await get_ok(client, second, b"4")
        assert first.connections == 1 and second.connections == 1 and client.connections == 2

    serve(numbered(), check, servers=2)


def test_a_kept_connection_allocates_less_per_request_and_the_heap_stays_flat():
    if not IS_MPY:
        skip("allocation is measured on MicroPython")
    import gc

    async def per_request(client, server):
        gc.collect()
        gc.disable()
        try:
            before = gc.mem_alloc()
            assert await client.get(HOST, server.port, "/data", 1000) == 200, client.error
            return gc.mem_alloc() - before
        finally:
            gc.enable()

    async def check(server):
        kept = KeptClient(256)
        fresh = HttpClient(256)
        for _ in range(3):
            assert await kept.get(HOST, server.port, "/data", 1000) == 200
            assert await fresh.get(HOST, server.port, "/data", 1000) == 200
        # Both sides of the loop (the fake server's too) allocate; only the difference counts.
        kept_bytes = await per_request(kept, server)
        fresh_bytes = await per_request(fresh, server)
        assert kept_bytes < fresh_bytes, (kept_bytes, fresh_bytes)
        server.requests.clear()
        gc.collect()
        warm = gc.mem_alloc()
        for _ in range(30):
            assert await kept.get(HOST, server.port, "/data", 1000) == 200
            server.requests.clear()  # the fake server's own record
        gc.collect()
        assert gc.mem_alloc() - warm <= 64, gc.mem_alloc() - warm
        assert kept.connections == 1

    serve(numbered(), check)
