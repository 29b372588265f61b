"""Compare the client's package versions with the cluster's, in words people can act on.

Mismatched dask/distributed/cloudpickle/msgpack/Python between a notebook and its
workers is the most common source of obscure errors (struct unpack failures,
deserialisation errors). ``VersionReport`` turns ``Client.get_versions()`` into a
small table and a line on how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CHECKED_PACKAGES", "VersionReport", "VersionRow"]

CHECKED_PACKAGES = ("python", "dask", "distributed", "cloudpickle", "msgpack", "hubgate")
# Packages a cluster may legitimately lack (a plain dask-gateway cluster has no hubgate).
_OPTIONAL = frozenset({"hubgate"})


def _normalise(package: str, version: Any) -> str | None:
    if version is None:
        return None
    version = str(version)
    if package == "python":
        # "3.11.7.final.0": patch releases do not change pickling or the wire format.
        return ".".join(version.split(".")[:2])
    return version


@dataclass(frozen=True)
class VersionRow:
    package: str
    client: str | None
    scheduler: str | None
    workers: tuple[str | None, ...]

    @property
    def ok(self) -> bool:
        values = [self.client, self.scheduler, *self.workers]
        if self.package in _OPTIONAL:
            values = [v for v in values if v is not None]
        return len(set(values)) <= 1


class VersionReport:
    """The versions of the checked packages on the client, scheduler and workers.

    ``ok`` is true when they all match; ``rows`` holds every package;
    ``str(report)`` is a table and, when something differs, how to fix it.
    """

    def __init__(self, rows: list[VersionRow]) -> None:
        self.rows = rows

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def mismatches(self) -> list[VersionRow]:
        return [row for row in self.rows if not row.ok]

    @classmethod
    def from_versions(cls, versions: dict[str, Any]) -> VersionReport:
        """Build from ``distributed.Client.get_versions(check=False)``'s result."""

        def packages(entry: Any) -> dict[str, Any]:
            return (entry or {}).get("packages") or {} if isinstance(entry, dict) else {}

        client = packages(versions.get("client"))
        scheduler = packages(versions.get("scheduler"))
        workers = [packages(w) for w in (versions.get("workers") or {}).values()]
        rows = []
        for name in CHECKED_PACKAGES:
            worker_versions = tuple(sorted({_normalise(name, w.get(name)) or "" for w in workers}))
            rows.append(
                VersionRow(
                    package=name,
                    client=_normalise(name, client.get(name)),
                    scheduler=_normalise(name, scheduler.get(name)),
                    workers=tuple(v or None for v in worker_versions),
                )
            )
        return cls(rows)

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"{len(self.mismatches)} mismatched"
        return f"<VersionReport {state}>"

    def __str__(self) -> str:
        header = ("package", "client", "scheduler", "workers")
        table = [header] + [
            (
                ("  " if row.ok else "! ") + row.package,
                row.client or "-",
                row.scheduler or "-",
                ", ".join(v or "-" for v in row.workers) or "(no workers)",
            )
            for row in self.rows
        ]
        widths = [max(len(line[i]) for line in table) for i in range(4)]
        lines = [
            " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
            for line in table
        ]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        if self.ok:
            return "All checked packages match:\n" + "\n".join(lines)
        wanted = " ".join(
            f"{row.package}=={row.scheduler}"
            for row in self.mismatches
            if row.scheduler and row.package != "python"
        )
        fix = (
            "To fix it, make both sides match: install the cluster's versions here"
            + (f" (pip install {wanted})" if wanted else "")
            + ", or choose an image/environment option whose versions match this client."
        )
        return (
            "The cluster's package versions differ from this client's (marked !); "
            "this causes errors such as failed deserialisation:\n" + "\n".join(lines) + "\n" + fix
        )
