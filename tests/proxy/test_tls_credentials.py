"""Per-cluster TLS material: what the certificates say, and what a stolen client
credential cannot do (pretend to be the scheduler or a worker, or sign certificates)."""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from dask_gateway.client import GatewaySecurity
from distributed.comm import connect
from distributed.security import Security

from hubgate.hub_service.tls import (
    ClusterCredentials,
    agenerate_cluster_credentials,
    generate_cluster_credentials,
)

from .conftest import client_security, server_security


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _basic(cert: x509.Certificate) -> x509.BasicConstraints:
    return cert.extensions.get_extension_for_class(x509.BasicConstraints).value


# -- what the certificates say ----------------------------------------------------------


def test_ca_is_a_ca_that_can_only_sign_leaves(credentials: ClusterCredentials) -> None:
    ca = _cert(credentials.ca_cert)
    basic = _basic(ca)
    assert basic.ca is True and basic.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)


@pytest.mark.parametrize(
    ("field", "usages"),
    [
        ("scheduler_cert", {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
        ("worker_cert", {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
        ("client_cert", {ExtendedKeyUsageOID.CLIENT_AUTH}),
    ],
)
def test_leaves_are_signed_by_the_ca_and_are_not_cas(
    credentials: ClusterCredentials, field: str, usages: set[x509.ObjectIdentifier]
) -> None:
    ca = _cert(credentials.ca_cert)
    leaf = _cert(getattr(credentials, field))
    leaf.verify_directly_issued_by(ca)
    assert _basic(leaf).ca is False
    assert _eku(leaf) == usages
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc > datetime.timedelta(days=365)


def test_scheduler_names(credentials: ClusterCredentials) -> None:
    san = _cert(credentials.scheduler_cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert set(san.value.get_values_for_type(x509.DNSName)) == {
        "daskgateway-alpha",
        "dask-scheduler",
    }


def test_keys_match_their_certificates(credentials: ClusterCredentials) -> None:
    for role in ("ca", "scheduler", "worker", "client"):
        key = serialization.load_pem_private_key(getattr(credentials, f"{role}_key"), None)
        cert = _cert(getattr(credentials, f"{role}_cert"))
        assert key.public_key() == cert.public_key(), role


def test_client_bundle_is_client_cert_then_ca(credentials: ClusterCredentials) -> None:
    bundle = credentials.client_tls_cert()
    assert bundle == (credentials.client_cert + credentials.ca_cert).decode()
    certs = x509.load_pem_x509_certificates(bundle.encode())
    assert [c.subject for c in certs] == [
        _cert(credentials.client_cert).subject,
        _cert(credentials.ca_cert).subject,
    ]
    assert credentials.client_tls_key() == credentials.client_key.decode()


def test_credentials_files(credentials: ClusterCredentials) -> None:
    assert credentials.credentials_files("scheduler") == {
        "ca.crt": credentials.ca_cert,
        "scheduler.crt": credentials.scheduler_cert,
        "scheduler.key": credentials.scheduler_key,
    }
    assert credentials.credentials_files("worker") == {
        "ca.crt": credentials.ca_cert,
        "worker.crt": credentials.worker_cert,
        "worker.key": credentials.worker_key,
    }
    with pytest.raises(ValueError, match="unknown role 'client'"):
        credentials.credentials_files("client")


def test_json_round_trip_and_repr(credentials: ClusterCredentials) -> None:
    assert ClusterCredentials.from_json(credentials.to_json()) == credentials
    assert "PRIVATE" not in repr(credentials)


async def test_async_generation_gives_each_cluster_its_own_ca() -> None:
    first = await agenerate_cluster_credentials("beta")
    second = await agenerate_cluster_credentials("beta")
    assert first.ca_cert != second.ca_cert
    assert _cert(first.ca_cert).subject != _cert(second.ca_cert).subject
    with pytest.raises(ssl.SSLError):
        _handshake(_gateway_context(first), _server_context(second, "scheduler"))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        generate_cluster_credentials("")
    with pytest.raises(ValueError, match="valid_days"):
        generate_cluster_credentials("x", valid_days=0)


# -- TLS handshakes in memory -------------------------------------------------------------


def _handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext) -> None:
    """A full TLS handshake between two contexts through memory BIOs; raises the
    first side's SSLError if either side rejects the other."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False, server_hostname="daskgateway-x")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for side, obj in (("client", client), ("server", server)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3: the server sees a bad client certificate only on first read.
            client.write(b"ping")
            s_in.write(c_out.read())
            assert server.read(4) == b"ping"
            return
    raise AssertionError("handshake did not finish")


def _distributed_context(security: Security, role: str) -> ssl.SSLContext:
    return security.get_connection_args(role)["ssl_context"]


def _server_context(credentials: ClusterCredentials, role: str) -> ssl.SSLContext:
    return server_security(credentials).get_listen_args(role)["ssl_context"]


def _gateway_context(credentials: ClusterCredentials) -> ssl.SSLContext:
    """Exactly what the official dask-gateway client builds from the cluster JSON."""
    security = GatewaySecurity(
        tls_key=credentials.client_tls_key(), tls_cert=credentials.client_tls_cert()
    )
    return security.get_connection_args("client")["ssl_context"]


def _strict(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """Python 3.13's create_default_context flags, which treat every certificate in the
    trust store as an anchor (the official client's trust store holds the client cert)."""
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


def _impostor_context(cert: bytes, key: bytes, ca: bytes) -> ssl.SSLContext:
    """A TLS server presenting ``cert`` (with ``ca`` as chain), requiring client certs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:
        cert_path, key_path = os.path.join(folder, "c.pem"), os.path.join(folder, "k.pem")
        with open(cert_path, "wb") as f:
            f.write(cert + ca)
        with open(key_path, "wb") as f:
            f.write(key)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


def _forge(credentials: ClusterCredentials, usages: list[x509.ObjectIdentifier]) -> bytes:
    """A certificate signed with the client's key, as a holder of the client
    credentials could make; returns cert PEM + key PEM."""
    signer = serialization.load_pem_private_key(credentials.client_key, None)
    issuer = _cert(credentials.client_cert).subject
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("daskgateway-alpha")]), critical=False
        )
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _split(pems: bytes) -> tuple[bytes, bytes]:
    cert, _, key = pems.partition(b"-----BEGIN PRIVATE KEY-----")
    return cert, b"-----BEGIN PRIVATE KEY-----" + key


# -- mutual TLS works ---------------------------------------------------------------------


def test_mutual_tls_between_roles(credentials: ClusterCredentials) -> None:
    servers = server_security(credentials)
    scheduler = _server_context(credentials, "scheduler")
    _handshake(_gateway_context(credentials), scheduler)
    _handshake(_strict(_gateway_context(credentials)), scheduler)
    _handshake(_distributed_context(client_security(credentials), "client"), scheduler)
    _handshake(_distributed_context(servers, "worker"), scheduler)
    _handshake(_distributed_context(servers, "scheduler"), _server_context(credentials, "worker"))


# -- a client's credentials cannot impersonate the scheduler -------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["default", "py313-flags"])
def test_official_client_rejects_a_server_with_the_client_cert(
    credentials: ClusterCredentials, strict: bool
) -> None:
    client_ctx = _gateway_context(credentials)
    if strict:
        _strict(client_ctx)
    impostor = _impostor_context(credentials.client_cert, credentials.client_key, b"")
    with pytest.raises(ssl.SSLError, match="unsuitable certificate purpose"):
        _handshake(client_ctx, impostor)


@pytest.mark.parametrize("role", ["client", "worker"])
def test_distributed_rejects_a_server_with_the_client_cert(
    credentials: ClusterCredentials, role: str
) -> None:
    security = client_security(credentials) if role == "client" else server_security(credentials)
    impostor = _impostor_context(
        credentials.client_cert, credentials.client_key, credentials.ca_cert
    )
    with pytest.raises(ssl.SSLError, match="unsuitable certificate purpose"):
        _handshake(_distributed_context(security, role), impostor)


@pytest.mark.parametrize("strict", [False, True], ids=["default", "py313-flags"])
def test_certificates_signed_with_the_client_key_are_rejected(
    credentials: ClusterCredentials, strict: bool
) -> None:
    # As a server, to the official client (whose trust store holds the client cert)...
    forged_cert, forged_key = _split(
        _forge(credentials, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    )
    impostor = _impostor_context(forged_cert, forged_key, credentials.client_cert)
    client_ctx = _gateway_context(credentials)
    worker_ctx = _distributed_context(server_security(credentials), "worker")
    if strict:
        _strict(client_ctx)
        _strict(worker_ctx)
    with pytest.raises(ssl.SSLError, match="certificate verify failed"):
        _handshake(client_ctx, impostor)
    # ...to a worker...
    with pytest.raises(ssl.SSLError, match="certificate verify failed"):
        _handshake(worker_ctx, impostor)
    # ...and as a worker (client side) to the scheduler.
    forged_worker = Security(
        tls_ca_file=credentials.ca_cert.decode(),
        tls_worker_cert=(forged_cert + credentials.client_cert).decode(),
        tls_worker_key=forged_key.decode(),
        require_encryption=True,
    )
    with pytest.raises(ssl.SSLError):
        _handshake(
            _distributed_context(forged_worker, "worker"),
            _server_context(credentials, "scheduler"),
        )


async def test_real_comms_refuse_an_impostor_scheduler(credentials: ClusterCredentials) -> None:
    """A real distributed listener that presents the client credentials as its
    scheduler certificate: a worker's connect and the official client's connect fail."""
    from distributed.comm import listen

    impostor = Security(
        tls_ca_file=credentials.ca_cert.decode(),
        tls_scheduler_cert=credentials.client_tls_cert(),
        tls_scheduler_key=credentials.client_tls_key(),
        require_encryption=True,
    )

    async def handler(comm: object) -> None:
        pass

    listener = listen("tls://127.0.0.1:0", handler, **impostor.get_listen_args("scheduler"))
    await listener.start()
    try:
        worker_args = server_security(credentials).get_connection_args("worker")
        with pytest.raises(OSError):
            await connect(listener.contact_address, timeout=5, **worker_args)
        gateway = GatewaySecurity(
            tls_key=credentials.client_tls_key(), tls_cert=credentials.client_tls_cert()
        )
        with pytest.raises(OSError):
            await connect(
                listener.contact_address, timeout=5, **gateway.get_connection_args("client")
            )
        # And the same listener with the real scheduler credentials is accepted.
        real = listen(
            "tls://127.0.0.1:0",
            handler,
            **server_security(credentials).get_listen_args("scheduler"),
        )
        await real.start()
        try:
            comm = await connect(
                real.contact_address, timeout=5, **gateway.get_connection_args("client")
            )
            await comm.close()
        finally:
            real.stop()
    finally:
        listener.stop()
