#!/usr/bin/env bash
# Set up (scripts/bootstrap.sh), then start the demo: a real JupyterHub with the hubgate
# service. Arguments go to `hubgate demo` (try `scripts/demo.sh --help`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The set-up report goes to stderr so that the demo's own output stays clean.
bash scripts/bootstrap.sh >&2
exec "$ROOT/.venv/bin/hubgate" demo "$@"
