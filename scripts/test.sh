#!/usr/bin/env bash
# Set up (scripts/bootstrap.sh), then run every check: ruff, the lab extension's lint and
# unit tests (when package.json defines them) and the whole pytest suite, slow tests
# included. Extra arguments go to pytest, e.g. `scripts/test.sh -m "not slow"` or
# `scripts/test.sh tests/slurm -x`. Exits non-zero if any step fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

start=$(date +%s)
bash scripts/bootstrap.sh
echo "test.sh: set-up took $(($(date +%s) - start)) s"

VENV="$ROOT/.venv"
export PATH="$VENV/bin:$PATH"
failed=()

step() {
    local name="$1"
    shift
    echo "test.sh: == $name: $*"
    if ! "$@"; then
        echo "test.sh: FAILED: $name" >&2
        failed+=("$name")
    fi
}

step "ruff check" ruff check .
step "ruff format" ruff format --check .

if [[ -f package.json ]]; then
    lab_script() {
        node -e 'const s = require("./package.json").scripts || {};
                 for (const n of process.argv.slice(1)) if (Object.hasOwn(s, n)) { console.log(n); break; }' "$@"
    }
    # Prefer the non-fixing variant of lint in CI (the extension template's lint:check).
    lint="$(lab_script lint:check lint)"
    if [[ -n "$lint" ]]; then
        step "lab $lint" jlpm run "$lint"
    fi
    if [[ -n "$(lab_script test)" ]]; then
        step "lab test" jlpm run test
    fi
fi

echo "test.sh: == pytest -ra --durations=20 $*"
set +e
pytest -ra --durations=20 "$@"
rc=$?
set -e
if ((rc == 5)); then
    echo "test.sh: FAILED: pytest collected no tests (exit code 5)" >&2
    failed+=("pytest (no tests)")
elif ((rc != 0)); then
    echo "test.sh: FAILED: pytest (exit code $rc)" >&2
    failed+=("pytest")
fi

if ((${#failed[@]})); then
    echo "test.sh: failed steps: $(IFS=,; echo "${failed[*]}") (total $(($(date +%s) - start)) s)" >&2
    exit 1
fi
echo "test.sh: all checks passed in $(($(date +%s) - start)) s"
