"""The gateway:// comm with a certificate bundle, against a real TLS scheduler; and the
version report."""

from __future__ import annotations

import asyncio
import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from distributed import Client, Scheduler
from distributed.comm import get_address_host_port
from distributed.comm.registry import backends
from distributed.security import Security

from hubgate.client.comm import GatewayConnector, GatewaySecurity, parse_gateway_address
from hubgate.client.versions import VersionReport


def _pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert(subject: str, key, issuer_name, issuer_key, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def pki():
    """A cluster CA, a scheduler certificate and a client certificate it signed."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-ca")])
    ca = _cert("cluster-ca", ca_key, ca_name, ca_key, ca=True)
    out = {"ca": _pem(ca)}
    for role in ("scheduler", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        out[role] = _pem(_cert(role, key, ca_name, ca_key, ca=False))
        out[role + "_key"] = _key_pem(key)
    return out


def test_parse_gateway_address():
    assert parse_gateway_address("gateway://h:8786/abc") == ("h", 8786, "abc")
    assert parse_gateway_address("h:1/x") == ("h", 1, "x")
    with pytest.raises(ValueError, match="must look like gateway://host:port/<cluster name>"):
        parse_gateway_address("gateway://h:8786")
    assert "gateway" in backends


async def test_tls_with_sni_and_a_bundle(pki):
    """The connector sends SNI daskgateway-<name> and presents the client certificate
    from the bundle; the server checks it against the CA."""
    seen = {}
    handled = asyncio.Event()
    security = GatewaySecurity(tls_key=pki["client_key"], tls_cert=pki["client"] + pki["ca"])

    async def handle(reader, writer):
        seen["peer"] = writer.get_extra_info("peercert")
        handled.set()
        writer.close()

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=pki["ca"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED

    def record_sni(sock, name, ctx):
        seen["sni"] = name  # returning None accepts the handshake

    server_ctx.sni_callback = record_sni
    _load_chain(server_ctx, pki["scheduler"], pki["scheduler_key"])

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        comm = await GatewayConnector().connect(
            f"127.0.0.1:{port}/abc123", **security.get_connection_args("client")
        )
        await asyncio.wait_for(handled.wait(), timeout=60)
        await comm.close()
    finally:
        server.close()
        await server.wait_closed()
    assert seen["sni"] == "daskgateway-abc123"
    subject = dict(x[0] for x in seen["peer"]["subject"])
    assert subject["commonName"] == "client"


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        cert_path, key_path = os.path.join(folder, "c"), os.path.join(folder, "k")
        for path, text in ((cert_path, cert), (key_path, key)):
            with open(path, "w") as f:
                f.write(text)
        ctx.load_cert_chain(cert_path, key_path)


async def test_client_through_gateway_comm_to_a_tls_scheduler(pki, tmp_path):
    files = {}
    for name in ("ca", "scheduler", "scheduler_key"):
        files[name] = tmp_path / name
        files[name].write_text(pki[name])
    scheduler_security = Security(
        tls_ca_file=str(files["ca"]),
        tls_scheduler_cert=str(files["scheduler"]),
        tls_scheduler_key=str(files["scheduler_key"]),
        require_encryption=True,
    )
    async with Scheduler(
        protocol="tls",
        host="127.0.0.1",
        port=0,
        dashboard_address="127.0.0.1:0",
        security=scheduler_security,
    ) as scheduler:
        port = get_address_host_port(scheduler.address)[1]
        security = GatewaySecurity(tls_key=pki["client_key"], tls_cert=pki["client"] + pki["ca"])
        async with Client(
            f"gateway://127.0.0.1:{port}/mycluster",
            security=security,
            asynchronous=True,
            set_as_default=False,
        ) as client:
            info = await client.scheduler.identity()
            assert info["type"] == "Scheduler"


async def test_a_client_certificate_from_another_ca_is_refused(pki, tmp_path):
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other-ca")])
    other_ca = _cert("other-ca", other_key, other_name, other_key, ca=True)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _cert("stranger", stranger_key, other_name, other_key, ca=False)

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=pki["ca"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    _load_chain(server_ctx, pki["scheduler"], pki["scheduler_key"])

    async def handle(reader, writer):
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    # The stranger's bundle trusts its own CA, so it rejects the scheduler too.
    security = GatewaySecurity(
        tls_key=_key_pem(stranger_key), tls_cert=_pem(stranger) + _pem(other_ca)
    )
    try:
        with pytest.raises(OSError):
            await GatewayConnector().connect(
                f"127.0.0.1:{port}/abc", **security.get_connection_args("client")
            )
    finally:
        server.close()
        await server.wait_closed()


def _versions(client, scheduler, *workers):
    def entry(packages):
        return {"host": {}, "packages": packages}

    return {
        "client": entry(client),
        "scheduler": entry(scheduler),
        "workers": {f"tls://w{i}": entry(w) for i, w in enumerate(workers)},
    }


BASE = {
    "python": "3.11.7.final.0",
    "dask": "2026.8.0",
    "distributed": "2026.8.0",
    "cloudpickle": "3.1.0",
    "msgpack": "1.1.0",
    "hubgate": "0.1.0",
}


def test_version_report_matching():
    other_patch = {**BASE, "python": "3.11.9.final.0"}
    report = VersionReport.from_versions(_versions(BASE, other_patch, BASE, BASE))
    assert report.ok and report.mismatches == []
    assert [row.package for row in report.rows] == list(BASE)
    assert str(report).startswith("All checked packages match:")
    # A plain dask-gateway cluster has no hubgate: not a mismatch.
    report = VersionReport.from_versions(_versions(BASE, {**BASE, "hubgate": None}))
    assert report.ok


def test_version_report_mismatch_table():
    old = {**BASE, "dask": "2024.1.0", "distributed": "2024.1.0", "python": "3.10.4.final.0"}
    report = VersionReport.from_versions(_versions(BASE, old, old, BASE))
    assert not report.ok
    assert [row.package for row in report.mismatches] == ["python", "dask", "distributed"]
    text = str(report)
    lines = text.splitlines()
    assert lines[1].split(" | ")[0].strip() == "package"
    dask_row = next(line for line in lines if line.startswith("! dask "))
    assert [cell.strip() for cell in dask_row.split("|")] == [
        "! dask",
        "2026.8.0",
        "2024.1.0",
        "2024.1.0, 2026.8.0",
    ]
    assert "pip install dask==2024.1.0 distributed==2024.1.0" in lines[-1]
    assert "image/environment option" in lines[-1]
