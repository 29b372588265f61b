"""Regenerate the README's benchmark tables from the runs' JSON.

    .venv/bin/python bench/readme_table.py [--run bench/results/latest.json]
                                           [--scale bench/results/scale.json]
                                           [--readme README.md]

Replaces the lines between ``<!-- bench:run.py -->`` and ``<!-- /bench:run.py -->`` (and
``<!-- bench:scale.py -->`` ... ``<!-- /bench:scale.py -->``) in the README with the
markdown table of that result and a line that says when, where and with which versions
it was measured, so the README never shows figures that no run produced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale  # noqa: E402
from run import format_markdown  # noqa: E402


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


def scale_block(result: dict[str, Any]) -> str:
    rows = scale.table_rows(result)
    lines = [
        f"`{result['command']}`, {result['started']}. Raw figures: `bench/results/scale.json`."
    ]
    lines.append("")
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("| --- |" + " ---: |" * (len(rows[0]) - 1))
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def replace_block(text: str, name: str, block: str) -> str:
    begin, end_mark = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    start, end = text.find(begin), text.find(end_mark)
    if start < 0 or end < start:
        raise SystemExit(f"the README has no {begin} ... {end_mark} block to replace")
    return text[: start + len(begin)] + "\n" + block + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(HERE / "results" / "latest.json"))
    parser.add_argument("--scale", default=str(HERE / "results" / "scale.json"))
    parser.add_argument("--readme", default=str(HERE.parent / "README.md"))
    args = parser.parse_args(argv)
    readme = Path(args.readme)
    text = readme.read_text()
    run_result = json.loads(Path(args.run).read_text())
    text = replace_block(
        text, "run.py", provenance(run_result) + "\n\n" + format_markdown(run_result)
    )
    text = replace_block(text, "scale.py", scale_block(json.loads(Path(args.scale).read_text())))
    readme.write_text(text)
    print(f"{readme}: tables replaced from {args.run} and {args.scale}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
