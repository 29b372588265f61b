"""The demo's service configuration: a small example of everything an operator sets.

``hubgate demo`` and the test suite load it through their generated
``hubgate_config.py``; it is also a worked example for a university hub (see the README).
"""

from __future__ import annotations

from typing import Any

from hubgate.options import (
    Integer,
    OptionSet,
    environment_variables_field,
    idle_timeout_field,
    profile_field,
    standard_handler,
    worker_cores_field,
    worker_memory_field,
    worker_setup_field,
)

GIB = 2**30

# QHub-style profiles: a name that stands for a worker size.
PROFILES = [
    ("small", {"worker_cores": 1, "worker_memory": 1 * GIB}),
    ("medium", {"worker_cores": 2, "worker_memory": 2 * GIB}),
]


def demo_options(user: Any) -> OptionSet:
    """Everyone gets worker size, environment and idle timeout; the 'staff' group also
    gets the profile choice and a larger maximum."""
    staff = "staff" in getattr(user, "groups", ())
    fields = [
        worker_cores_field(default=1, max=4 if staff else 2),
        worker_memory_field(default=1, max=8 if staff else 4),
        environment_variables_field(),
        worker_setup_field(),
        idle_timeout_field(default=30, min=0, max=24 * 60),
    ]
    if staff:
        fields.insert(
            0, profile_field([name for name, _ in PROFILES] + ["custom"], default="custom")
        )
    return OptionSet(*fields, handler=_handler)


def _handler(options: Any) -> dict[str, Any]:
    chosen = dict(options)
    profile = chosen.pop("profile", "custom")
    config = standard_handler(chosen)
    config.update(dict(PROFILES).get(profile, {}))
    return config


def configure_demo(c: Any) -> None:
    c.HubgateService.cluster_options = demo_options
    # The demo's users have no system accounts: each gets a uid of their own (kept in
    # the service's database), so nobody's clusters run as root, the service or another
    # user. A hub whose users have system accounts keeps the default, "system".
    c.LocalBackend.account_mode = "uid-range"
    c.LocalBackend.uid_range = (2_000_000_000, 2_000_999_999)
    # per cluster: no more than 8 workers
    c.HubgateService.cluster_config = {"max_workers": 8, "scheduler_memory": "1G"}
    # per user, across all their clusters
    c.HubgateService.user_limits = {"max_clusters": 3, "max_cores": 12, "max_memory": "24G"}
    c.HubgateService.group_limits = {"staff": {"max_clusters": 10, "max_cores": 32}}
    # admins: the hub's role "hubgate-admin" (hubgate.tooling.hubrunner) gives the admin and the
    # staff group the scope custom:hubgate:admin


__all__ = ["Integer", "configure_demo", "demo_options"]
