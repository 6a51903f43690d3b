# A tiny in-process HTTP server for the HTTP client and driver tests (both
# runtimes), with a driver's fake clock and `with_driver` to run a driver
# against it; `feed` hands a body
# straight to an HttpMeter (test_http_meter*.py).
import sys

import asyncio

IS_MPY = sys.implementation.name == "micropython"
HOST = "127.0.0.1"
HANG = None  # in a FakeServer script: stop answering, wait for the client to go
CLOSE = "close"  # in a FakeServer script (keep=True): close the connection now


def now_ms():
    import time

    if IS_MPY:
        return time.ticks_ms()
    return int(time.monotonic() * 1000)


def elapsed_ms(start):
    import time

    if IS_MPY:
        return time.ticks_diff(time.ticks_ms(), start)
    return now_ms() - start


async def until(condition, limit_ms=10000):
    """Yield to the loop until condition() holds or limit_ms pass; its last value.

    For what the server side does on the same loop (a request arrives, a
    close is seen): a few loop turns on an idle machine; limit_ms only bounds
    a broken path.
    """
    start = now_ms()
    while not condition() and elapsed_ms(start) < limit_ms:
        await asyncio.sleep(0.01)
    return condition()


class Clock:
    """A driver's clock (called for ticks_ms): `ms`, which only the test moves."""

    def __init__(self, ms=1000):
        self.ms = ms

    def __call__(self):
        return self.ms


def with_driver(handler, make, check):
    """Run `await check(make(port))` against a FakeServer answering by `handler` (the box), closed after."""

    async def main():
        server = await FakeServer(handler).start()
        try:
            await check(make(server.port))
        finally:
            await server.close()

    asyncio.run(main())


def feed(meter, body, tick=5000):
    """Put body in an HttpMeter's HTTP buffer as if it had just arrived; its decode(tick)'s result."""
    if isinstance(body, str):
        body = body.encode()
    buf = meter.client.buf
    assert len(body) <= len(buf)
    buf[: len(body)] = body
    meter.client.body_len = len(body)
    return meter.decode(tick)


def reply(status=200, body=b"", headers=b"", length=True):
    """Raw bytes of a plain HTTP/1.1 answer."""
    if isinstance(body, str):
        body = body.encode()
    head = b"HTTP/1.1 %d X\r\n" % status
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + headers + b"\r\n" + body


class FakeServer:
    """HTTP server on 127.0.0.1 driven by a script per request.

    `handler(method, path, body)` returns a list of steps: bytes are sent,
    an int sleeps that many ms, HANG stops answering until the client closes
    (or the server is closed). After the last step the connection is closed;
    with keep=True it waits for the next request on it instead (an HTTP/1.1
    server), until the client closes it or a CLOSE step. Every request is
    recorded in `requests` as (method, path, headers, body); `client_closed`
    counts connections the client closed while we waited, `connections` the
    connections accepted.
    """

    def __init__(self, handler, keep=False):
        self.handler = handler
        self.keep = keep
        self.connections = 0
        self.requests = []
        self.client_closed = 0
        self.port = 0
        self._server = None
        self._tasks = []

    async def start(self):
        if not IS_MPY:
            self._server = await asyncio.start_server(self._serve, HOST, 0)
            self.port = self._server.sockets[0].getsockname()[1]
            return self
        # MicroPython's server does not tell its port: try a few random ones.
        import random

        for _ in range(50):
            port = 20000 + random.getrandbits(14) * 2
            try:
                self._server = await asyncio.start_server(self._serve, HOST, port)
            except OSError:
                continue
            self.port = port
            return self
        raise OSError("no free port")

    async def close(self):
        for task in self._tasks:
            task.cancel()
        self._server.close()
        await self._server.wait_closed()
        for _ in range(5):
            await asyncio.sleep(0)

    async def _serve(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.append(task)
        self.connections += 1
        try:
            while await self._handle(reader, writer) and self.keep:
                pass
        except Exception:
            pass
        finally:
            self._tasks.remove(task)
            try:
                writer.close()
                await writer.wait_closed()
            except Exception:
                pass

    async def _handle(self, reader, writer):
        # One request and its answer; True when the connection may serve another.
        line = await reader.readline()
        parts = line.decode().split()
        if len(parts) < 2:
            if not line and self.keep:
                self.client_closed += 1  # the client closed a kept connection
            return False
        headers = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        self.requests.append((parts[0], parts[1], headers, body))
        for step in self.handler(parts[0], parts[1], body):
            if step is HANG:
                # Wait for the client to give up: read() returns b"" on close.
                while await reader.read(64):
                    pass
                self.client_closed += 1
                return False
            if step is CLOSE:
                return False
            if isinstance(step, int):
                await asyncio.sleep(step / 1000)
                continue
            writer.write(step)
            await writer.drain()
        return True
