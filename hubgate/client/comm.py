"""The ``gateway://host:port/<cluster>`` comm for ``distributed``, and its TLS security.

A connection opens TCP to the gateway's scheduler proxy and starts TLS with the server
name ``daskgateway-<cluster>``; the proxy routes by that name without terminating TLS,
so the handshake is end to end with the cluster's scheduler. dask-gateway's client
registers a backend that behaves the same; whichever is imported first stays.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

from distributed.comm.core import Comm, Connector
from distributed.comm.registry import Backend, backends
from distributed.comm.tcp import (
    MAX_BUFFER_SIZE,
    TLS,
    convert_stream_closed_error,
    get_stream_address,
)
from distributed.security import Security
from distributed.utils import ensure_ip, get_ip
from tornado import netutil
from tornado.iostream import StreamClosedError
from tornado.tcpclient import TCPClient

__all__ = ["GatewaySecurity", "SNI_PREFIX", "parse_gateway_address"]

SNI_PREFIX = "daskgateway-"


def parse_gateway_address(address: str) -> tuple[str, int, str]:
    """``[gateway://]host:port/<cluster>`` -> ``(host, port, cluster)``."""
    if not address.startswith("gateway://"):
        address = "gateway://" + address
    parsed = urlparse(address)
    name = parsed.path.strip("/")
    if not name or parsed.hostname is None or parsed.port is None:
        raise ValueError(
            f"Gateway address {address!r} must look like gateway://host:port/<cluster name>"
        )
    return parsed.hostname, parsed.port, name


class GatewayConnector(Connector):
    # Name resolution in threads, so a slow DNS lookup never blocks the event loop.
    _resolver = netutil.ExecutorResolver(
        close_executor=False, executor=ThreadPoolExecutor(2, thread_name_prefix="hubgate-dns")
    )
    _client = TCPClient(resolver=_resolver)

    async def connect(self, address: str, deserialize: bool = True, **connection_args: Any) -> Comm:
        host, port, name = parse_gateway_address(address)
        ctx = connection_args.get("ssl_context")
        if not isinstance(ctx, ssl.SSLContext):
            raise TypeError(
                "A gateway:// connection needs the cluster's security (an ssl_context); "
                "use cluster.get_client() or Client(address, security=cluster.security)"
            )
        try:
            plain = await self._client.connect(host, port, max_buffer_size=MAX_BUFFER_SIZE)
            stream = await plain.start_tls(
                False, ssl_options=ctx, server_hostname=SNI_PREFIX + name
            )
            if stream.closed() and stream.error:
                raise StreamClosedError(stream.error)
        except StreamClosedError as exc:
            convert_stream_closed_error(self, exc)
        local = "tls://" + get_stream_address(stream)
        return TLS(stream, local, "gateway://" + address, deserialize)


class GatewayBackend(Backend):
    """Connect-only backend: nothing listens on a gateway address."""

    def get_connector(self) -> Connector:
        return GatewayConnector()

    def get_listener(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Nothing can listen on a gateway:// address")

    def get_address_host(self, loc: str) -> str:
        return parse_gateway_address(loc)[0]

    def get_address_host_port(self, loc: str) -> tuple[str, int]:
        host, port, _ = parse_gateway_address(loc)
        return host, port

    def resolve_address(self, loc: str) -> str:
        host, port, name = parse_gateway_address(loc)
        return f"{ensure_ip(host)}:{port}/{name}"

    def get_local_address_for(self, loc: str) -> str:
        host, port, name = parse_gateway_address(loc)
        return f"{get_ip(ensure_ip(host))}:{port}/{name}"


backends.setdefault("gateway", GatewayBackend())


class GatewaySecurity(Security):
    """TLS material of one cluster, held in memory.

    ``tls_cert`` is the client certificate, optionally followed by the cluster's CA
    certificate (a bundle): the file serves both as the trusted CAs and as the
    certificate chain we present. Python can only load PEMs from files, so they are
    written to a private temporary folder just long enough to build the context.
    """

    def __init__(self, tls_key: str, tls_cert: str) -> None:
        super().__init__(require_encryption=True)
        self.tls_key = tls_key
        self.tls_cert = tls_cert
        self._context: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return "GatewaySecurity<...>"

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            with tempfile.TemporaryDirectory(prefix="hubgate-tls-") as folder:
                cert_path = os.path.join(folder, "cluster.crt")
                key_path = os.path.join(folder, "cluster.key")
                for path, text in ((cert_path, self.tls_cert), (key_path, self.tls_key)):
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as f:
                        f.write(text)
                ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cert_path)
                ctx.verify_mode = ssl.CERT_REQUIRED
                # The scheduler is identified by the cluster CA, not by a host name.
                ctx.check_hostname = False
                ctx.load_cert_chain(cert_path, key_path)
            self._context = ctx
        return self._context

    def get_connection_args(self, role: str) -> dict[str, Any]:
        return {
            "ssl_context": self._ssl_context(),
            "require_encryption": True,
            "extra_conn_args": {},
        }
