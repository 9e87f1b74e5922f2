#!/usr/bin/env bash
# The README's test command, and what CI runs: on a fresh Debian machine it
# sets up everything the default test suite needs, then runs it.
#   bash scripts/test.sh             # lint + the default (fast) suite
#   bash scripts/test.sh -m slow -n 0  # the slow checks instead, in one process (extra args go to pytest)
# Uses the active virtual environment, else creates/uses .venv in the
# repository; installs the package with the tested versions of
# constraints.txt, and the sample-data sources (scripts/install_sample_sources.sh:
# Debian packages, so root or sudo the first time).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  . .venv/bin/activate
fi
python -m pip install -q -c constraints.txt -e '.[test]'
bash scripts/install_sample_sources.sh
ruff check .
ruff format --check .
# Two worker processes (pytest-xdist), faster even on a 2-core machine
# (README, "Tests"). PERCEIVER_TEST_WORKERS=0 runs it in one process; a
# later -n in the arguments wins (the slow checks: -n 0; they start several
# processes of their own).
python -m pytest -q -n "${PERCEIVER_TEST_WORKERS:-2}" -m "not slow" tests "$@"
