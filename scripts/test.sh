#!/usr/bin/env bash
# Installs everything the tests need (a venv in .venv, Debian packages when
# root) and runs every check: ruff, mypy, and the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Debian packages the tests use (memcached for the cache middleware's tests).
need=()
command -v memcached >/dev/null || need+=(memcached)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
    else
        echo "missing Debian packages (install them): ${need[*]}" >&2
    fi
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
ruff check .
echo "== mypy"
mypy
echo "== pytest"
# -n 2: the CI machine has two cores; tests pick free ports and own temp dirs.
exec pytest -q -n "${PYTEST_WORKERS:-2}" -p no:cacheprovider "$@"
