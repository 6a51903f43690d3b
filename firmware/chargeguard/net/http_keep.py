"""An HTTP client that keeps its connection open between requests (HTTP/1.1 persistent connections).

For the HomeWizard API v2 meter (meters/http_meter.py): over HTTPS every new
connection costs a TLS handshake whose crypto runs on the event loop (up to
about a second on an ESP32: docs/configuration.md), so the connection is
made once and kept for poll after poll. A module of its own: the plain-HTTP
drivers (one connection per request) never load this code.

`KeptClient(max_body)` is a net/http.py `HttpClient` (same `get()`, buffer,
errors and deadline) whose requests go out as HTTP/1.1 without
`Connection: close`. After an answer complete by its framing (an HTTP/1.1
status line, a `Content-Length` whose bytes all came and nothing after them,
or a 204/304; no `Connection: close`) the connection stays open, and the
next request to the same host, port and `tls` (the same object) is sent on
it; a request to another peer closes it first. Every other answer, error,
timeout, short read or cancellation closes it, and the next request connects
anew (a TLS handshake).

The peer may close a kept connection at any time (HomeWizard documents
nothing about keep-alive). That shows at the next request: its write fails
or its read ends (or fails) before any byte of an answer. Such a request, a
GET only (a POST is never sent twice), goes out once more on a fresh
connection, inside the same deadline: a meter that closes every connection
still answers every poll, at one handshake each.

A chunked answer (`Transfer-Encoding`, which net/http.py does not decode) is
refused and this client speaks HTTP/1.0 with `Connection: close` to its peer
from then on (`keep` becomes False; a server never chunks an answer to
HTTP/1.0); the same GET goes out once more that way at once.

`connections` counts the connections made (a kept one once); `close()` drops
a kept connection. While a connection is kept it holds its socket and, over
TLS, mbedTLS's buffers (about 1 KB of GC heap on the unix port, about 20 KB
of IDF heap on an ESP32: docs/configuration.md); the body buffer is the
same bounded one as HttpClient's.
"""

from chargeguard.net.http import HttpClient


class KeptClient(HttpClient):
    """HttpClient with a persistent connection (see the module doc)."""

    def __init__(self, max_body):
        HttpClient.__init__(self, max_body)
        self.keep = True  # False for good after a chunked answer
        self.connections = 0
        # The peer of the kept connection.
        self._peer_host = None
        self._peer_port = 0
        self._peer_tls = None

    async def close(self):
        """Close a kept connection; the next request connects anew. Never raises but CancelledError."""
        if not self._busy:
            await self._drop()

    async def _exchange(self, host, port, path, timeout_ms, body, headers, tls, keep=False):
        if self._sock is not None and (host != self._peer_host or port != self._peer_port or tls is not self._peer_tls):
            await self._drop()  # kept for another peer
        reused = self._sock is not None
        keep = self.keep
        if not reused:
            self.connections += 1
        self._peer_host = host
        self._peer_port = port
        self._peer_tls = tls
        try:
            return await HttpClient._exchange(self, host, port, path, timeout_ms, body, headers, tls, keep)
        except (OSError, ValueError) as err:
            chunked = keep and err.args and err.args[0] == "chunked"
            if chunked:
                self.keep = False  # this peer chunks HTTP/1.1 answers: HTTP/1.0 from now on
            # A kept connection found dead: the write failed (OSError), or
            # the read failed or ended before a byte of an answer came.
            stale = reused and not self._answered and (isinstance(err, OSError) or err.args[:1] == ("no reply",))
            if body is not None or not (chunked or stale):
                raise
        await self._drop()
        self.connections += 1
        return await HttpClient._exchange(self, host, port, path, timeout_ms, body, headers, tls, self.keep)
