#!/usr/bin/env bash
# Set up everything hubgate needs on this machine: Debian packages, the Python venv in
# .venv, configurable-http-proxy and the lab extension's build. Idempotent: each step
# checks first and does nothing (quickly) when it is already done.
#
# Usage: scripts/bootstrap.sh        (scripts/test.sh and scripts/demo.sh call it)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
# Bump when the install recipe below changes, so existing venvs are brought up to date.
RECIPE="extras=test,bench,postgres,widgets,lab,batch,kubernetes;v2"
APT_PACKAGES=(chromium fonts-dejavu-core fonts-liberation postgresql slurm-wlm munge)
CHP_VERSION="5"

say() { printf 'bootstrap: %s\n' "$*"; }
die() {
    printf 'bootstrap: ERROR: %s\n' "$*" >&2
    exit 1
}
# Run a noisy command with its output in a log; show the log's tail only if it fails.
run_logged() {
    local log="$1"
    shift
    if ! "$@" >>"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "'$*' failed (full log: $log)"
    fi
}

# Two bootstraps at once (test.sh and demo.sh) would fight over pip and npm.
LOCK="${TMPDIR:-/tmp}/hubgate-bootstrap-$(printf '%s' "$ROOT" | sha256sum | cut -c1-16).lock"
exec 9>"$LOCK"
flock 9

# --- Debian packages -------------------------------------------------------------------
python_needs_venv_pkg() {
    # Debian's own python3 ships venv/ensurepip in a separate package.
    [[ -x /usr/bin/python3 ]] && ! /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done
if [[ ! -x /usr/bin/python3 && $(id -u) -eq 0 ]]; then
    # Clusters run as other uids, so the venv needs a Python outside root-only folders
    # (pyenv's under /root is not): Debian's.
    missing+=(python3 python3-venv)
elif python_needs_venv_pkg; then
    missing+=(python3-venv)
fi
if ((${#missing[@]} == 0)); then
    say "apt: all packages present"
elif [[ $(id -u) -ne 0 ]]; then
    say "apt: NOT installing ${missing[*]} (not root)."
    say "     Ask an administrator to run: apt-get install -y ${missing[*]}"
else
    say "apt: installing ${missing[*]} ..."
    export DEBIAN_FRONTEND=noninteractive
    mkdir -p "$ROOT/.work"
    : >"$ROOT/.work/apt.log"
    run_logged "$ROOT/.work/apt.log" apt-get update
    run_logged "$ROOT/.work/apt.log" apt-get install -y -q \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
    say "apt: installed ${missing[*]}"
fi

# --- Python venv -----------------------------------------------------------------------
# Users' clusters run as their own unprivileged uids with the venv's interpreter, so it
# must be one every account can run: not one under a root-only folder such as /root.
usable_by_everyone() {
    [[ $(id -u) -ne 0 ]] && return 0 # a venv of a non-root user runs as that user
    # As the service starts them: uid nobody, no groups; its own standard library found.
    "$1" -c 'import subprocess, sys
check = "import os, sys; sys.exit(not os.__file__.startswith(sys.base_prefix))"
sys.exit(subprocess.run([sys.argv[1], "-c", check], user=65534, group=65534,
                        extra_groups=[], cwd="/").returncode)' "$1" >/dev/null 2>&1
}
# hubgate's code (an editable install) and the venv are read from this checkout by
# every cluster account, so each folder above it must let others pass (o+x). A checkout
# in a folder of mktemp's (0700, under /tmp) is opened to passing, nothing more; anywhere
# else (such as /root) we stop and say so rather than open a private folder.
open_checkout_path() {
    [[ $(id -u) -eq 0 ]] || return 0
    local dir="$ROOT" mode parent
    while [[ "$dir" != "/" ]]; do
        mode=$(stat -c %a "$dir")
        if (((8#$mode & 1) == 0)); then
            parent="$(dirname "$dir")"
            if [[ "$parent" == /tmp || "$parent" == /var/tmp || "$parent" == "${TMPDIR:-/tmp}" ]] &&
                [[ "$(stat -c %u "$dir")" == 0 ]]; then
                chmod o+x "$dir"
                say "checkout: $dir is a temporary folder; let other accounts pass through it (o+x)"
            else
                die "users' clusters run as their own accounts and read hubgate from this checkout, but $dir (mode $mode) does not let other accounts pass. Clone hubgate somewhere they can (e.g. /opt/hubgate or /srv/hubgate)."
            fi
        fi
        dir="$(dirname "$dir")"
    done
}
open_checkout_path

PYTHON=""
for candidate in "$(command -v python3 || true)" /usr/bin/python3 /usr/local/bin/python3; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || continue
    if usable_by_everyone "$candidate"; then
        PYTHON="$candidate"
        break
    fi
done
[[ -n "$PYTHON" ]] ||
    die "hubgate needs a Python >= 3.11 that every account can run (python3 is $(python3 --version 2>&1) at $(command -v python3); install Debian's python3)"

if [[ -x "$VENV/bin/python" ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    # The interpreter the venv was made from is gone: start again.
    say "venv: $VENV is broken, recreating it"
    rm -rf "$VENV"
fi
if [[ -x "$VENV/bin/python" ]] && ! usable_by_everyone "$VENV/bin/python"; then
    say "venv: $VENV runs a Python other accounts cannot reach, recreating it from $PYTHON"
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
    say "venv: created $VENV with $PYTHON"
fi

STAMP="$VENV/.hubgate-install.sha256"
want_hash="$( (
    cat pyproject.toml
    echo "$RECIPE"
    "$VENV/bin/python" -c 'import sys; print(sys.version)'
) | sha256sum | cut -d' ' -f1)"
have_hash="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want_hash" != "$have_hash" ]] || ! "$VENV/bin/python" -c 'import hubgate' >/dev/null 2>&1; then
    say "pip: installing hubgate and its dependencies into .venv (log: .venv/pip.log) ..."
    : >"$VENV/pip.log"
    run_logged "$VENV/pip.log" "$VENV/bin/python" -m pip install --upgrade pip setuptools wheel
    run_logged "$VENV/pip.log" "$VENV/bin/python" -m pip install \
        -e ".[test,bench,postgres,widgets,lab,batch,kubernetes]"
    echo "$want_hash" >"$STAMP"
    say "pip: installed"
else
    say "pip: up to date (pyproject.toml unchanged)"
fi

# --- configurable-http-proxy (JupyterHub's proxy) ------------------------------------------
CHP="$VENV/node/node_modules/.bin/configurable-http-proxy"
command -v npm >/dev/null 2>&1 || die "npm not found: install node >= 20 and npm"
if [[ -x "$CHP" ]]; then
    say "npm: configurable-http-proxy present"
else
    say "npm: installing configurable-http-proxy@$CHP_VERSION into .venv/node ..."
    mkdir -p "$VENV/node"
    : >"$VENV/node/npm.log"
    run_logged "$VENV/node/npm.log" npm install --no-audit --no-fund --prefix "$VENV/node" \
        "configurable-http-proxy@$CHP_VERSION"
    [[ -x "$CHP" ]] || die "npm ran but $CHP is missing"
    say "npm: installed $CHP"
fi

# --- JupyterLab extension (root package.json) ------------------------------------------
if [[ ! -f package.json ]]; then
    say "lab: no package.json yet, skipping the lab extension build"
else
    # jlpm comes with jupyterlab in the venv; the build runs the venv's jupyter tools.
    export PATH="$VENV/bin:$PATH"
    lab_script_defined() {
        node -e 'const s = require("./package.json").scripts || {};
                 process.exit(Object.hasOwn(s, process.argv[1]) ? 0 : 1)' "$1"
    }
    LAB_STAMP="$VENV/.hubgate-lab.sha256"
    lab_inputs() {
        find package.json yarn.lock .yarnrc.yml tsconfig*.json src style schema labextension \
            -type f 2>/dev/null | grep -vE '/(node_modules|lib)/|tsbuildinfo' | LC_ALL=C sort || true
    }
    lab_hash="$(lab_inputs | xargs -r sha256sum | sha256sum | cut -d' ' -f1)"
    if [[ -d node_modules && "$lab_hash" == "$(cat "$LAB_STAMP" 2>/dev/null || true)" ]]; then
        say "lab: extension build up to date"
    else
        say "lab: jlpm install (log: .venv/lab.log) ..."
        : >"$VENV/lab.log"
        run_logged "$VENV/lab.log" jlpm install
        if lab_script_defined build; then
            say "lab: jlpm run build ..."
            run_logged "$VENV/lab.log" jlpm run build
        else
            say "lab: package.json defines no 'build' script, nothing to build"
        fi
        # Hash again: the build may have written into the folders hashed above.
        lab_inputs | xargs -r sha256sum | sha256sum | cut -d' ' -f1 >"$LAB_STAMP"
        say "lab: built"
    fi
    # A wheel installs the built extension and the server extension's enable file as data
    # files; an editable install does not, so link them into the venv the same way.
    LABEXT_DIR="$VENV/share/jupyter/labextensions/hubgate-labextension"
    mkdir -p "$(dirname "$LABEXT_DIR")" "$VENV/etc/jupyter/jupyter_server_config.d"
    ln -sfn "$ROOT/hubgate/labextension_static" "$LABEXT_DIR"
    cp jupyter-config/jupyter_server_config.d/hubgate.json "$VENV/etc/jupyter/jupyter_server_config.d/"
    "$VENV/bin/jupyter" labextension list 2>&1 | grep -q "hubgate-labextension.*enabled" \
        || die "the lab extension is not enabled in .venv after its build; see .venv/lab.log"
fi

say "ready (venv: .venv, proxy: .venv/node/node_modules/.bin/configurable-http-proxy)"
