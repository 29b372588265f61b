"""Encryption at rest of the secrets kept in the database (cluster tokens, TLS keys).

Keys are Fernet keys (32 url-safe base64 bytes). Several keys rotate: the first
encrypts, all decrypt. They come from configuration or ``HUBGATE_ENCRYPTION_KEYS``
(``;``-separated); with neither, a key is generated on first run into a file readable
only by the service's user.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger("hubgate.secrets")

ENV_VAR = "HUBGATE_ENCRYPTION_KEYS"


class SecretsError(Exception):
    """A key is missing or does not decrypt what is stored."""


def load_or_create_keys(configured: list[str], key_file: Path) -> list[bytes]:
    """The encryption keys, in order of preference: configured, environment, key file
    (created with mode 0600 if it does not exist)."""
    keys = configured_keys(configured)
    if keys:
        return keys
    if key_file.exists():
        mode = key_file.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("Key file %s is readable by others (mode %o); fixing it", key_file, mode)
            key_file.chmod(0o600)
        return [_check_key(key_file.read_bytes().strip())]
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    log.info("Generated a new encryption key in %s", key_file)
    return [key]


def configured_keys(configured: list[str]) -> list[bytes]:
    """The keys given in the configuration or in $HUBGATE_ENCRYPTION_KEYS, checked (the
    service checks them at start, before it touches the database)."""
    keys = [k for k in configured if k]
    source = "HubgateService.encryption_keys"
    if not keys and os.environ.get(ENV_VAR):
        keys = [k.strip() for k in os.environ[ENV_VAR].split(";") if k.strip()]
        source = f"${ENV_VAR}"
    checked = []
    for number, key in enumerate(keys, 1):
        try:
            checked.append(_check_key(key.encode() if isinstance(key, str) else key))
        except SecretsError as exc:
            raise SecretsError(f"{source}: key {number} of {len(keys)}: {exc}") from None
    return checked


def _check_key(key: bytes) -> bytes:
    try:
        Fernet(key)
    except ValueError as exc:
        raise SecretsError(
            "An encryption key is not a valid Fernet key (32 url-safe base64-encoded "
            "bytes); make one with `hubgate generate-key`"
        ) from exc
    return key


class SecretBox:
    """Encrypts and decrypts small secrets with rotating Fernet keys."""

    def __init__(self, keys: list[bytes]):
        if not keys:
            raise SecretsError("At least one encryption key is required")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise SecretsError(
                "Stored secrets cannot be decrypted with the configured keys; keep the "
                "old key in the list when rotating"
            ) from exc
