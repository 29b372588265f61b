"""Reading the server name (SNI) out of a TLS ClientHello, without terminating TLS.

The scheduler proxy routes a connection by the name its client put in the ClientHello's
``server_name`` extension (RFC 6066), then relays the bytes untouched.
"""

from __future__ import annotations

__all__ = ["MAX_HELLO", "MAX_RECORD", "ClientHelloError", "IncompleteClientHello", "read_sni"]

# A TLS record carries at most 2**14 bytes of plaintext (RFC 8446 5.1). A ClientHello
# with post-quantum key shares is ~2 KiB; 64 KiB leaves room for anything legitimate.
MAX_RECORD = 2**14
MAX_HELLO = 2**16

_HANDSHAKE = 22
_CLIENT_HELLO = 1
_EXT_SERVER_NAME = 0
_HOST_NAME = 0


class ClientHelloError(ValueError):
    """The bytes are not a TLS ClientHello (the text says why, for the log)."""


class IncompleteClientHello(Exception):
    """More bytes are needed to finish the ClientHello."""


def read_sni(data: bytes) -> str | None:
    """The server name in the TLS ClientHello at the start of ``data``.

    Returns ``None`` when the ClientHello has no ``server_name``. Raises
    :class:`IncompleteClientHello` when ``data`` ends before the ClientHello does, and
    :class:`ClientHelloError` when it is not a ClientHello (or too big to be one). The
    handshake message may span several records, as RFC 8446 allows.
    """
    handshake = bytearray()
    pos = 0
    needed = 4  # the handshake header, until it is known how long the message is
    while len(handshake) < needed:
        if len(data) < pos + 1:
            raise IncompleteClientHello
        if data[pos] != _HANDSHAKE:
            raise ClientHelloError("not a TLS handshake")
        if len(data) < pos + 5:
            raise IncompleteClientHello
        major, length = data[pos + 1], int.from_bytes(data[pos + 3 : pos + 5])
        if major != 3:
            raise ClientHelloError("not a TLS handshake")
        if length == 0 or length > MAX_RECORD:
            raise ClientHelloError(f"bad TLS record length {length}")
        if len(data) < pos + 5 + length:
            raise IncompleteClientHello
        handshake += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if needed == 4 and len(handshake) >= 4:
            if handshake[0] != _CLIENT_HELLO:
                raise ClientHelloError("first handshake message is not a ClientHello")
            needed = 4 + int.from_bytes(handshake[1:4])
            if needed > MAX_HELLO:
                raise ClientHelloError(f"ClientHello of {needed} bytes is too big")
    return _server_name(memoryview(handshake)[4:needed])


class _Cursor:
    """Bounds-checked reading of TLS's length-prefixed fields."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ClientHelloError("truncated ClientHello")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def integer(self, size: int) -> int:
        return int.from_bytes(self.take(size))

    def vector(self, size: int) -> memoryview:
        return self.take(self.integer(size))

    def at_end(self) -> bool:
        return self.pos >= len(self.data)


def _server_name(body: memoryview) -> str | None:
    hello = _Cursor(body)
    hello.take(2 + 32)  # legacy_version, random
    hello.vector(1)  # legacy_session_id
    hello.vector(2)  # cipher_suites
    hello.vector(1)  # legacy_compression_methods
    if hello.at_end():
        return None  # no extensions at all (TLS 1.0-era clients)
    extensions = _Cursor(hello.vector(2))
    while not extensions.at_end():
        ext_type = extensions.integer(2)
        ext_data = extensions.vector(2)
        if ext_type != _EXT_SERVER_NAME:
            continue
        names = _Cursor(_Cursor(ext_data).vector(2))
        while not names.at_end():
            name_type = names.integer(1)
            name = names.vector(2)
            if name_type == _HOST_NAME:
                try:
                    return bytes(name).decode("ascii")
                except UnicodeDecodeError:
                    raise ClientHelloError("server name is not ASCII") from None
        return None
    return None
