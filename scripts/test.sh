#!/usr/bin/env bash
# The one test command: builds the extension, runs the Rust tests, the type checks,
# pytest (hypothesis included) and a smoke run of the benches. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}

# Each step prints the seconds since the start: CI must stay well inside 30 minutes, and
# this is where a slow step shows.
step() { printf '\n== [%ds] %s ==\n' "$SECONDS" "$*"; }

# A stale _core*.so in the source package would shadow the fresh build (pydantic-core's Makefile).
rm -f python/rustybackup/_core*.so

step "PostgreSQL for the postgresql tests (Debian's package, when missing and we are root)"
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
      || echo "apt-get install postgresql failed; the postgresql tests will skip"
  else
    echo "PostgreSQL is not installed and this is not a root Debian shell; the postgresql tests will skip"
  fi
fi

step "restic and borg for the side-by-side fidelity tests (Debian's packages, when missing and we are root)"
if ! command -v restic >/dev/null || ! command -v borg >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic borgbackup >/dev/null \
      || echo "apt-get install restic borgbackup failed; tests/test_tree_peers.py and test_fidelity_peers.py will skip"
  else
    echo "restic/borg are not installed and this is not a root Debian shell; the peer comparisons will skip"
  fi
fi

step "install (builds the Rust extension) with the test extras"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[test]'

step "formatting and lint: cargo fmt --check, ruff check, ruff format --check"
cargo fmt --check
"$PYTHON" -m ruff check python tests benches conftest.py scripts
"$PYTHON" -m ruff format --check python tests benches conftest.py scripts

step "cargo test (pure Rust core, no Python)"
cargo test --locked --quiet

step "cargo clippy (bindings included), warnings are errors"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --locked --quiet --all-targets --all-features -- -D warnings
else
  echo "clippy is not installed in this toolchain (rustup component add clippy); lint step skipped"
fi

step "mypy --strict and stubtest"
"$PYTHON" -m mypy python/rustybackup tests conftest.py
"$PYTHON" -m mypy.stubtest rustybackup._core --allowlist scripts/stubtest-allowlist.txt

step "pytest (profile $HYPOTHESIS_PROFILE)"
"$PYTHON" -m pytest -q -p no:cacheprovider --durations=25

step "benches (smoke run, timings disabled; peers missing here are reported as skips)"
if compgen -G "benches/test_*.py" >/dev/null; then
  "$PYTHON" -m pytest benches -q -p no:cacheprovider --benchmark-disable -rs
else
  echo "no benches yet"
fi
step "done"
