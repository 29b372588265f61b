"""Per-cluster TLS material: one small CA per cluster and three leaf certificates.

dask-gateway hands every client the one self-signed keypair that is also the CA, the
scheduler's and the workers' identity, so anyone holding a client's credentials can
impersonate the scheduler or a worker. hubgate gives each cluster its own CA instead:

- the CA (``CA:TRUE, pathlen:0``, ``keyCertSign``) signs three leaves and never leaves the
  service;
- the scheduler and the workers get leaves usable as TLS server and client;
- clients get a leaf whose extended key usage is ``clientAuth`` only, so a peer that
  verifies the chain rejects it as a server certificate, and whose ``CA:FALSE`` keeps
  anything it signs from being accepted.

The official client loads the one PEM in the cluster JSON's ``tls_cert`` both as its CA
file and as its certificate chain, so that PEM is the client certificate followed by the
CA certificate (see :meth:`ClusterCredentials.client_tls_cert`).

Keys are ECDSA P-256: generating four takes a few milliseconds (an RSA-2048 key takes
about 50 ms), and OpenSSL, Python's ``ssl`` and ``distributed`` all accept them.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import secrets
from dataclasses import asdict, dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "ROLES",
    "ClusterCredentials",
    "agenerate_cluster_credentials",
    "generate_cluster_credentials",
    "sni_for_cluster",
]

#: The roles that get a credentials folder (see ``docs/internals.md``).
ROLES = ("scheduler", "worker")

SNI_PREFIX = "daskgateway-"

# Certificates start a little in the past so a clock that lags the service's by a few
# minutes still accepts them.
_CLOCK_SKEW = datetime.timedelta(minutes=5)
# X.509 limits a common name to 64 characters.
_MAX_CN = 64


def sni_for_cluster(cluster_name: str) -> str:
    """The TLS server name a client sends to reach ``cluster_name`` through the proxy."""
    return SNI_PREFIX + cluster_name


@dataclass(frozen=True)
class ClusterCredentials:
    """A cluster's TLS material, every field a PEM (``bytes``).

    The whole object is a secret (it holds the CA key): store it encrypted and give out
    only what :meth:`client_tls_cert`, :meth:`client_tls_key` and
    :meth:`credentials_files` return.
    """

    ca_cert: bytes
    ca_key: bytes
    scheduler_cert: bytes
    scheduler_key: bytes
    worker_cert: bytes
    worker_key: bytes
    client_cert: bytes
    client_key: bytes

    def __repr__(self) -> str:
        # Never print keys into a log by accident.
        return "ClusterCredentials<...>"

    def client_tls_cert(self) -> str:
        """The cluster JSON's ``tls_cert``: the client certificate, then the CA
        certificate. The official client uses this PEM as its trust store and as its
        certificate chain."""
        return (self.client_cert + self.ca_cert).decode("ascii")

    def client_tls_key(self) -> str:
        """The cluster JSON's ``tls_key``: the client's private key."""
        return self.client_key.decode("ascii")

    def credentials_files(self, role: str) -> dict[str, bytes]:
        """The TLS files of a ``role``'s credentials folder (``scheduler`` or ``worker``).

        The caller adds the scheduler's ``token`` file.
        """
        if role == "scheduler":
            cert, key = self.scheduler_cert, self.scheduler_key
        elif role == "worker":
            cert, key = self.worker_cert, self.worker_key
        else:
            raise ValueError(f"unknown role {role!r}: expected one of {ROLES}")
        return {"ca.crt": self.ca_cert, f"{role}.crt": cert, f"{role}.key": key}

    def to_json(self) -> str:
        """Serialise for storage (the caller encrypts the result)."""
        return json.dumps({k: v.decode("ascii") for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str | bytes) -> ClusterCredentials:
        """The inverse of :meth:`to_json`."""
        data = json.loads(text)
        return cls(**{k: v.encode("ascii") for k, v in data.items()})


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hubgate"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:_MAX_CN]),
        ]
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime.datetime,
    valid_days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def generate_cluster_credentials(cluster_name: str, valid_days: int = 365) -> ClusterCredentials:
    """Create a new CA for ``cluster_name`` and its scheduler, worker and client leaves.

    Pure and CPU-only (a few milliseconds); from the event loop call
    :func:`agenerate_cluster_credentials` instead.
    """
    if not cluster_name:
        raise ValueError("cluster_name must not be empty")
    if valid_days < 1:
        raise ValueError(f"valid_days must be >= 1, got {valid_days}")
    now = datetime.datetime.now(datetime.UTC)

    ca_key = _new_key()
    # A random suffix keeps two CAs of same-named clusters (one after the other) apart.
    ca_name = _name(f"hubgate-ca {secrets.token_hex(4)} {cluster_name}")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now, valid_days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)

    def leaf(
        role: str, usages: list[x509.ObjectIdentifier], dns_names: list[str]
    ) -> tuple[bytes, bytes]:
        key = _new_key()
        builder = (
            _builder(_name(f"{role} {cluster_name}"), ca_name, key.public_key(), now, valid_days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(authority_key_id, critical=False)
        )
        if dns_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]),
                critical=False,
            )
        return _cert_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key)

    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    scheduler_cert, scheduler_key = leaf(
        "scheduler", both, [sni_for_cluster(cluster_name), "dask-scheduler"]
    )
    worker_cert, worker_key = leaf("worker", both, [])
    client_cert, client_key = leaf("client", [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    return ClusterCredentials(
        ca_cert=_cert_pem(ca_cert),
        ca_key=_key_pem(ca_key),
        scheduler_cert=scheduler_cert,
        scheduler_key=scheduler_key,
        worker_cert=worker_cert,
        worker_key=worker_key,
        client_cert=client_cert,
        client_key=client_key,
    )


async def agenerate_cluster_credentials(
    cluster_name: str, valid_days: int = 365
) -> ClusterCredentials:
    """:func:`generate_cluster_credentials` in a worker thread, so the loop never waits."""
    return await asyncio.to_thread(generate_cluster_credentials, cluster_name, valid_days)
