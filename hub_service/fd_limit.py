"""The process's open-files limit: raised at start-up, and what the proxy may use of it."""

from __future__ import annotations

import resource

__all__ = ["descriptors_for_connections", "raise_open_files_limit"]


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; ``(before, after)``.

    Login shells and systemd units start processes with a soft limit of 1,024 while the
    hard limit is far higher: a service holding thousands of connections must ask.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            # An unlimited hard limit cannot always be the soft one (macOS): leave it.
            return soft, soft
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def descriptors_for_connections() -> int | None:
    """How many descriptors the scheduler proxy may take: three quarters of the soft
    limit, so the service keeps the rest for its database, the hub and its web clients;
    ``None`` when there is no limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return soft - max(soft // 4, 256)
