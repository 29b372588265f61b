"""Messages for operator settings with keys hubgate does not know.

One shape for every setting, so that an operator who mistyped ``max_cluster`` reads the
setting's name, the bad key, the closest valid key and every valid key in one line.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_key(key: object, valid: Iterable[str]) -> str | None:
    """The valid key that ``key`` most likely misspells, or None."""
    matches = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_keys_message(where: str, unknown: Iterable[object], valid: Iterable[str]) -> str:
    """``"<where>: unknown key 'max_cluster' (did you mean 'max_clusters'?); valid keys:
    max_clusters, max_cores, max_memory"``."""
    valid = list(valid)
    parts = []
    for key in unknown:
        guess = closest_key(key, valid)
        parts.append(f"{key!r} (did you mean {guess!r}?)" if guess else repr(key))
    noun = "key" if len(parts) == 1 else "keys"
    known = ", ".join(valid) if valid else "none"
    return f"{where}: unknown {noun} {', '.join(parts)}; valid keys: {known}"
