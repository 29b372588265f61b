"""Real TLS ClientHellos for the tests, made by Python's ssl without a network."""

from __future__ import annotations

import contextlib
import ssl


def client_hello(server_name: str | None) -> bytes:
    """The first flight of a TLS client (one record holding the ClientHello)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    ctx = ssl.create_default_context()
    if server_name is None:
        ctx.check_hostname = False
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def split_records(hello: bytes, size: int) -> bytes:
    """The same handshake message re-cut into records of ``size`` bytes each."""
    header, body = hello[:5], hello[5 : 5 + int.from_bytes(hello[3:5])]
    out = b""
    for start in range(0, len(body), size):
        part = body[start : start + size]
        out += header[:3] + len(part).to_bytes(2) + part
    return out
