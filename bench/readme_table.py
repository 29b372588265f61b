"""Regenerate the README's benchmark table from a ``run.py`` result.

    .venv/bin/python bench/readme_table.py [bench/results/latest.json] [--readme README.md]

Replaces the lines between ``<!-- bench:run.py -->`` and ``<!-- /bench:run.py -->`` in
the README with the markdown table of the result and a line that says when, where and
with which versions it was measured, so the README never shows figures that no run
produced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import format_markdown  # noqa: E402

BEGIN, END = "<!-- bench:run.py -->", "<!-- /bench:run.py -->"


def provenance(result: dict[str, Any]) -> str:
    machine, versions = result["machine"], result["versions"]
    return (
        f"`{result['command']}`, {result['started']}, {machine['nproc']} cores, "
        f"{machine['memory_gib']} GiB, load average {machine['load_average_at_start'][0]:.2f} "
        f"at the start; medians of {result['repeats']} rounds. hubgate {versions['hubgate']}, "
        f"dask-gateway(-server) {versions['dask-gateway-server']}, distributed "
        f"{versions['distributed']}, jupyterhub {versions['jupyterhub']}. Raw samples: "
        "`bench/results/latest.json`."
    )


def replace_block(text: str, block: str) -> str:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"the README has no {BEGIN} ... {END} block to replace")
    return text[: start + len(BEGIN)] + "\n" + block + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", nargs="?", default=str(HERE / "results" / "latest.json"))
    parser.add_argument("--readme", default=str(HERE.parent / "README.md"))
    args = parser.parse_args(argv)
    result = json.loads(Path(args.result).read_text())
    readme = Path(args.readme)
    block = provenance(result) + "\n\n" + format_markdown(result)
    readme.write_text(replace_block(readme.read_text(), block))
    print(f"{readme}: table replaced from {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
