"""An OCPP 1.6J central system's websocket server on 127.0.0.1 in a thread of its own, for the emulator's tests.

Subclasses give `_handler(connection)` (websockets' per-connection coroutine); `port` is known once start()
returned. The tests check tools/sim/ocpp_emulator.py against mobilityhouse's `ocpp` package, not ChargeGuard's.
"""

import asyncio
import threading

import websockets


class CentralThread:
    def __init__(self, wait_s):
        self.wait_s = wait_s  # the most starting or stopping the thread may take
        self.port = None
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _handler(self, connection):
        raise NotImplementedError

    async def _main(self):
        async with websockets.serve(self._handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"]) as server:
            self.port = server.sockets[0].getsockname()[1]
            self.stopped = asyncio.Event()
            self.ready.set()
            await self.stopped.wait()

    def start(self):
        self.thread.start()
        assert self.ready.wait(self.wait_s)
        return self

    def stop(self):
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(timeout=self.wait_s)
