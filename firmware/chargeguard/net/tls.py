"""TLS for net/http.py: the SSL context that trusts one CA, and TLS failures in words.

Loaded only for an HTTPS request (HomeWizard API v2, meters/http_meter.py):
the plain-HTTP drivers never carry it, and a build without `ssl` (the 32-bit
heap-proxy port) fails here with ImportError, said in words by the driver.
"""

import sys

_MPY = sys.implementation.name == "micropython"


def context(ca):
    """An SSL context for net/http.py's `get(..., tls=(context, name))` that trusts only the CA certificate `ca` (bytes, PEM or DER).

    Raises ImportError on a build without ssl, ValueError for a `ca` that
    is no certificate. Made once per driver and kept: the parsed CA stays
    in the context.
    """
    import ssl

    if _MPY:
        start = ca.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            # MicroPython's mbedTLS is built without PEM parsing: the first
            # certificate's base64 to DER.
            import binascii

            start += 27
            end = ca.find(b"-----END", start)
            if end < 0:
                raise ValueError("PEM cut short")
            ca = binascii.a2b_base64(ca[start:end].replace(b"\r", b"").replace(b"\n", b""))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=ca)
        return context
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    # Devices named in their certificate's common name only (HomeWizard:
    # "appliance/<type>/<serial>", api-documentation.homewizard.com/docs/v2/authorization).
    context.hostname_checks_common_name = True
    context.load_verify_locations(cadata=ca.decode() if ca[:1] == b"-" else ca)
    return context


def reason(err):
    """A TLS failure (the exception) in a few words, "tls: ...": mbedTLS (MicroPython) and OpenSSL (CPython) word it differently."""
    text = str(err.args[-1] if err.args else err).lower()
    for key, words in (
        ("common name", "certificate name is not the expected one"),
        ("hostname mismatch", "certificate name is not the expected one"),
        ("trusted ca", "certificate not signed by the trusted CA"),
        ("local issuer", "certificate not signed by the trusted CA"),
        ("self-signed", "certificate not signed by the trusted CA"),
        ("self signed", "certificate not signed by the trusted CA"),
        ("expired", "certificate expired or not yet valid"),
        ("future", "certificate expired or not yet valid"),
    ):
        if key in text:
            return "tls: " + words
    return "tls: handshake failed"
