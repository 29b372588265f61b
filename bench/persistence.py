"""What persisting clusters costs: database statements and CPU time per scale step.

    .venv/bin/python bench/persistence.py [--workers 200] [--histories 0,200,1000]
        [--db-url URL] [--output bench/results/persistence.json]

The service's cluster manager and store (the real ones, on a real database: a SQLite
file by default, as deployed, or ``--db-url``) with a stand-in backend that starts
nothing (tests/fixtures/standin.py). For each history h, a fresh cluster first starts
and stops workers (scale to --workers and back to 0) until h workers have come and
gone; then the steps below are measured. A listener on the engine
(``before_cursor_execute``) counts statements (an executemany counts once) and rows
(its parameter sets); CPU is this process's (event loop and store thread) over the
step. "Writes per scale step independent of the cluster's history" means the columns
of one step stay the same down the table.

To measure other code (an older commit), put it first on the path; see bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

# Appended, not prepended: code put first on PYTHONPATH is the code measured.
sys.path.append(str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet
from sqlalchemy import event

import hubgate.hub_service.store as store_module
from hubgate.hub_service.model import Cluster
from hubgate.hub_service.secrets import SecretBox
from tests.fixtures.standin import StandInService, standin_service


@dataclass
class Cost:
    statements: int = 0
    rows: int = 0
    cpu_s: float = 0.0


class StatementCounter:
    def __init__(self) -> None:
        self.cost = Cost()

    def __call__(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        self.cost.statements += 1
        self.cost.rows += len(parameters) if executemany else 1

    async def measure(self, step: Callable[[], Awaitable[None]]) -> Cost:
        self.cost = Cost()
        cpu = time.process_time()
        await step()
        cpu = time.process_time() - cpu
        return Cost(self.cost.statements, self.cost.rows, cpu)


STEPS = [
    ("up_burst", "0 -> N, joins at once"),
    ("down", "N -> 0"),
    ("up_one_by_one", "0 -> N, one join at a time"),
    ("plus_one", "N -> N+1"),
]


async def measure_history(
    service: StandInService, counter: StatementCounter, history: int, workers: int
) -> dict[str, Any]:
    cluster: Cluster = await service.running_cluster()
    while cluster.worker_counter < history:
        await service.scale(cluster, workers)
        await service.scale(cluster, 0)
    before = cluster.worker_counter
    result: dict[str, Any] = {"history": before}
    result["up_burst"] = await counter.measure(lambda: service.scale(cluster, workers))
    result["down"] = await counter.measure(lambda: service.scale(cluster, 0))
    result["up_one_by_one"] = await counter.measure(
        lambda: service.scale(cluster, workers, joins_one_by_one=True)
    )
    result["plus_one"] = await counter.measure(lambda: service.scale(cluster, workers + 1))
    await service.scale(cluster, 0)
    result["workers_in_memory"] = len(cluster.workers)
    await service.manager.stop_cluster(cluster, "benchmark done")
    await service.settled()
    return {k: asdict(v) if isinstance(v, Cost) else v for k, v in result.items()}


async def measure(args: argparse.Namespace, db_url: str) -> list[dict[str, Any]]:
    box = SecretBox([Fernet.generate_key()])
    async with standin_service(db_url, box) as service:
        counter = StatementCounter()
        event.listen(service.store.engine, "before_cursor_execute", counter)
        rows = []
        for history in args.histories:
            print(f"[{time.strftime('%H:%M:%S')}] history {history}", flush=True)
            rows.append(await measure_history(service, counter, history, args.workers))
        return rows


def code_measured() -> dict[str, str]:
    """Which hubgate the run imported: its folder and commit (and whether it had
    uncommitted changes)."""
    folder = Path(store_module.__file__).resolve().parent.parent
    git = ["git", "-C", str(folder)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "hub_service"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"folder": str(folder), "commit": "unknown"}
    return {"folder": str(folder), "commit": commit + (" + changes" if dirty else "")}


def format_table(rows: list[dict[str, Any]], workers: int) -> str:
    header = ["history"] + [title.replace("N", str(workers)) for _, title in STEPS]
    lines = [header]
    for row in rows:
        cells = [str(row["history"])]
        for key, _ in STEPS:
            cost = row[key]
            cells.append(f"{cost['statements']} st / {cost['rows']} rows / {cost['cpu_s']:.3f} s")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append(" | ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
        if n == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=200, help="N, the cluster's size")
    parser.add_argument(
        "--histories",
        type=lambda text: [int(h) for h in text.split(",")],
        default=[0, 200, 1000],
        help="workers started and stopped before the measured steps, comma-separated",
    )
    parser.add_argument(
        "--db-url", default="", help="database URL (default: a SQLite file in a temp folder)"
    )
    parser.add_argument(
        "--output",
        default=str(Path(__file__).resolve().parent / "results" / "persistence.json"),
        help="where to write the JSON results",
    )
    args = parser.parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="hubgate-bench-db-") as folder:
        db_url = args.db_url or f"sqlite:///{folder}/hubgate.sqlite"
        rows = asyncio.run(measure(args, db_url))
    result = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "command": " ".join([".venv/bin/python", "bench/persistence.py", *sys.argv[1:]]),
        "code": code_measured(),
        "database": args.db_url.split("@")[-1] if args.db_url else "SQLite file (WAL)",
        "workers": args.workers,
        "machine": {
            "nproc": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {name: version(name) for name in ("sqlalchemy", "hubgate")},
        "steps": dict(STEPS),
        "rows": rows,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(format_table(rows, args.workers))
    print(
        "\nst: statements executed (an executemany counts once), rows: rows they carried, "
        f"s: CPU time of this process\nraw results in {output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
