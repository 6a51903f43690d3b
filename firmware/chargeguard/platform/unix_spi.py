"""The unix port's fake SPI bus to an ATM90E32: each 32-bit access goes to an emulator over TCP on 127.0.0.1.

A platform module of its own (platform/<name>_spi.py, `open_spi(platform)`),
loaded by meters/atm90e32.py only for that meter. The emulator is
tools/sim/atm90e32_emulator.py: it answers each 4-byte frame with the 4
bytes the chip would shift out.
"""

import socket

TIMEOUT_S = 0.2  # an access on the real bus takes 160 us; the emulator answers in well under this


def open_spi(platform):
    """A UnixSpi to the emulator at CHARGEGUARD_ATM90E32 ("127.0.0.1:PORT", or board["atm90e32_address"]).

    OSError when none is configured.
    """
    import os

    address = os.getenv("CHARGEGUARD_ATM90E32") or platform.board.get("atm90e32_address")
    if not address or ":" not in address:
        raise OSError(19, "no ATM90E32 on the unix port: set CHARGEGUARD_ATM90E32 to the emulator's 127.0.0.1:PORT")
    host, port = address.rsplit(":", 1)
    return UnixSpi(host, int(port))


class UnixSpi:
    """transfer(tx, rx) as the ESP32's bus: 4 bytes out, 4 in, with a deadline; OSError when the emulator is gone."""

    def __init__(self, host, port):
        self.address = socket.getaddrinfo(host, port)[0][-1]
        self.sock = None

    def transfer(self, tx, rx):
        """One access: send tx (4 bytes), fill rx (4 bytes) with the answer."""
        sock = self.sock
        try:
            if sock is None:
                sock = socket.socket()
                sock.settimeout(TIMEOUT_S)
                self.sock = sock
                sock.connect(self.address)
            sock.send(tx)
            got = 0
            while got < 4:
                chunk = sock.recv(4 - got)
                if not chunk:
                    raise OSError(104, "the emulator closed the connection")
                for byte in chunk:
                    rx[got] = byte
                    got += 1
        except OSError:
            self.close()
            raise

    def close(self):
        """Drop the connection (the next access connects again)."""
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
