"""tests/options_cases.json: option values and the messages every form shows for them,
shared by pytest and jest. ``python -m tests.options_cases`` refreshes its ``form`` (the
schema hubgate.options produces for its fields), which the jest tests read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hubgate.options import Field, OptionSet

CASES_FILE = Path(__file__).with_name("options_cases.json")


def load() -> dict[str, Any]:
    return json.loads(CASES_FILE.read_text())


def option_set(doc: dict[str, Any]) -> OptionSet:
    """The fields the cases are about, built by their type names."""
    fields = []
    for entry in doc["fields"]:
        args = dict(entry["args"])
        fields.append(Field._registry[entry["type"]](args.pop("field"), **args))
    return OptionSet(*fields)


def refresh() -> None:
    doc = load()
    doc["form"] = option_set(doc).form_schema()
    CASES_FILE.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    refresh()
