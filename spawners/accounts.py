"""The accounts that users' processes run under, and the checks that keep them apart.

A backend maps each hub user to an :class:`Account`: a system account (``pwd``), or a
uid of the user's own from a range the service hands out (:class:`UidAllocator`, kept in
the service's database). Accounts that belong to the system (below ``min_uid``) or to the
service itself are refused with :class:`AccountRefused`, a message for the user that the
service turns into a 403 when the cluster is created.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .base import BackendError

__all__ = [
    "Account",
    "AccountRefused",
    "UidAllocator",
    "check_uid",
    "lookup_system_account",
    "missing_privileges",
    "untraversable_ancestor",
]

# Capability bits (linux/capability.h) the local backend needs to run processes as
# other accounts, give them their folders and stop them.
_CAPABILITIES = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
}


class AccountRefused(BackendError):
    """The hub user may not run processes here: no account, or one of the system's or
    the service's own. The text is for the user."""


@dataclass(frozen=True)
class Account:
    """Who a user's processes run as. ``home`` is empty for uids without a system
    account (their cluster folder is their home then). ``groups`` are all its group
    ids (the primary one included), as its login gets them from the group database;
    none for uids without a system account."""

    name: str
    uid: int
    gid: int
    home: str = ""
    groups: tuple[int, ...] = ()


class UidAllocator(Protocol):
    """Hands each hub user a uid of their own from ``first..last`` (inclusive), the same
    one every time, never the same for two users (the service's database)."""

    async def uid_for(self, username: str, first: int, last: int) -> int: ...


def lookup_system_account(name: str) -> Account | None:
    """The system account ``name`` (``pwd`` may ask LDAP: call it in a thread)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    # The account's groups are the user's own (shared project data, say): its processes
    # get them, as its login and JupyterHub's LocalProcessSpawner do.
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    return Account(
        name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir, groups=groups
    )


def check_uid(
    uid: int,
    min_uid: int,
    username: str,
    account: str,
    system_ranges: Sequence[Sequence[int]] = (),
) -> None:
    """Refuse system accounts (below ``min_uid`` or in one of ``system_ranges``, first
    and last uid inclusive) and the service's own account for ``username``."""
    if uid == os.getuid() or uid == os.geteuid():
        raise AccountRefused(
            f"The hub user {username!r} maps to the account {account!r}, which is the "
            "service's own account: clusters never run as the service. Ask an "
            "administrator to map this user to an account of their own."
        )
    if uid < min_uid:
        raise AccountRefused(
            f"The hub user {username!r} maps to the account {account!r} (uid {uid}), a "
            f"system account (uids below {min_uid} are refused): clusters never run as "
            "one. Ask an administrator to map this user to an account of their own."
        )
    for first, last in system_ranges:
        if first <= uid <= last:
            raise AccountRefused(
                f"The hub user {username!r} maps to the account {account!r} (uid {uid}), "
                f"a system account (uids {first}..{last} are the system's): clusters never "
                "run as one. Ask an administrator to map this user to an account of their "
                "own."
            )


def missing_privileges() -> list[str]:
    """The capabilities this process lacks to run processes as other accounts."""
    effective = _effective_capabilities()
    if effective is None:  # no /proc: trust the effective uid
        return [] if os.geteuid() == 0 else list(_CAPABILITIES)
    return [name for name, bit in _CAPABILITIES.items() if not effective >> bit & 1]


def _effective_capabilities() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return None


def untraversable_ancestor(path: str) -> str | None:
    """The first folder on the way to ``path`` (itself included) that other accounts
    cannot pass through (no search bit for others), or None."""
    current = "/"
    for part in [p for p in os.path.abspath(path).split("/") if p]:
        current = os.path.join(current, part)
        try:
            info = os.stat(current)
        except FileNotFoundError:
            return None  # what does not exist yet is created by us, traversable
        if stat.S_ISDIR(info.st_mode) and not info.st_mode & stat.S_IXOTH:
            return current
    return None
