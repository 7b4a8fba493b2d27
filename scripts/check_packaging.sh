#!/usr/bin/env bash
# Packaging checks (issue 8). Slow (two release builds), so NOT part of scripts/test.sh.
#
#   PYTHON=/path/to/python3.11 bash scripts/check_packaging.sh
#
# 1. the version lives in Cargo.toml only (pyproject says dynamic = ["version"]);
# 2. `maturin build --release` gives one CPython wheel (no abi3: the datetime C API needs
#    the full API) that installs into a fresh venv WITHOUT system site packages, imports,
#    reports the Cargo.toml version, and runs `rustybackup cron next` and `python -m rustybackup`;
# 3. `maturin sdist` holds what a build needs and nothing built (no target/, no .so, no caches),
#    and `pip install` of it compiles and works the same way.
# Everything happens in a temp dir, run from there so the source tree is never on sys.path.
# RB_TESTS=1 also runs the pytest suite against the installed wheel (its test extras come
# from the package index): the suite then imports the wheel, not the source tree.
# RB_KEEP=1 keeps the temp dir; CARGO_TARGET_DIR is honoured by both builds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rustybackup-packaging.XXXXXX")
if [[ -z "${RB_KEEP:-}" ]]; then trap 'rm -rf "$WORK"' EXIT; else echo "keeping $WORK"; fi

step() { printf '\n== %s ==\n' "$*"; STEP_START=$SECONDS; }
took() { printf '   took %d s\n' $((SECONDS - STEP_START)); }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

step "version has one source (Cargo.toml)"
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[[ -n "$VERSION" ]] || fail "no version in Cargo.toml [package]"
grep -Eq '^dynamic = \[.*"version".*\]' pyproject.toml || fail 'pyproject.toml must say dynamic = ["version"]'
! grep -Eq '^version *=' pyproject.toml || fail "pyproject.toml has its own version line"
echo "   version $VERSION"

# A fresh venv without system site packages; installs $1 and runs the smoke checks in $WORK.
smoke() {
  local name=$1 artifact=$2 venv="$WORK/venv-$1"
  "$PYTHON" -m venv "$venv"
  grep -q 'include-system-site-packages = false' "$venv/pyvenv.cfg" || fail "$name venv sees system site packages"
  (cd "$WORK" && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$artifact") \
    || fail "pip install of the $name failed"
  (cd "$WORK" && "$venv/bin/python" - "$VERSION" <<'EOF') || fail "$name: import/version check failed"
import importlib.metadata, pathlib, sys
import rustybackup, rustybackup._core
want = sys.argv[1]
assert rustybackup.__version__ == want, (rustybackup.__version__, want)
assert importlib.metadata.version("rustybackup") == want
# installed copy, not the source tree
assert "site-packages" in pathlib.Path(rustybackup.__file__).parts, rustybackup.__file__
print(f"   import ok: rustybackup {want} from {pathlib.Path(rustybackup.__file__).parent}")
EOF
  local out1 out2
  out1=$(cd "$WORK" && "$venv/bin/rustybackup" cron next '0 2 * * *' -n 2) || fail "$name: rustybackup cron next failed"
  out2=$(cd "$WORK" && "$venv/bin/python" -m rustybackup cron next '0 2 * * *' -n 2) || fail "$name: python -m rustybackup failed"
  printf '%s\n' "$out1" | sed 's/^/   | /'
  [[ $(printf '%s\n' "$out1" | grep -c '02:00') -ge 2 ]] || fail "$name: cron next did not print two 02:00 runs"
  # The two lines are relative to "now"; compare them with the first word of each line only.
  [[ "$(printf '%s' "$out1" | awk '{print $1}')" == "$(printf '%s' "$out2" | awk '{print $1}')" ]] \
    || fail "$name: python -m rustybackup differs from the rustybackup command"
  (cd "$WORK" && "$venv/bin/python" -m rustybackup --help >/dev/null) || fail "$name: python -m rustybackup --help"
}

step "maturin build --release (wheel)"
maturin build --release --quiet -i "$PYTHON" --out "$WORK/wheels" >"$WORK/wheel.log" 2>&1 || { cat "$WORK/wheel.log"; fail "wheel build"; }
WHEELS=("$WORK"/wheels/*.whl)
[[ ${#WHEELS[@]} -eq 1 ]] || fail "expected one wheel, got: ${WHEELS[*]}"
WHEEL=${WHEELS[0]}
PYTAG=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
case $(basename "$WHEEL") in
  *abi3*) fail "abi3 wheel: $(basename "$WHEEL")" ;;
  rustybackup-"$VERSION"-"$PYTAG"-"$PYTAG"-*.whl) ;;
  *) fail "unexpected wheel name $(basename "$WHEEL")" ;;
esac
"$PYTHON" - "$WHEEL" <<'EOF' || fail "wheel contents"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["rustybackup/__init__.py", "rustybackup/_core.pyi", "rustybackup/py.typed", "rustybackup/__main__.py",
        "rustybackup/testing/__init__.py"]
missing = [n for n in need if n not in names]
assert not missing, f"missing from the wheel: {missing}"
# The `rustybackup` command is a data script (it runs archive-push without site processing).
assert any(n.endswith(".data/scripts/rustybackup") for n in names), "no rustybackup command script"
assert [n for n in names if n.startswith("rustybackup/_core") and n.endswith(".so")], "no _core extension"
assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")], "caches or tests in the wheel"
print(f"   {len(names)} files")
EOF
echo "   $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)"
took

step "wheel installs into a fresh venv and runs"
smoke wheel "$WHEEL"
took

if [[ -n "${RB_TESTS:-}" ]]; then
  step "pytest suite against the installed wheel"
  (cd "$WORK" && "$WORK/venv-wheel/bin/python" -m pip install --quiet --disable-pip-version-check "${WHEEL}[test]") \
    || fail "installing the test extras"
  # pyproject.toml only for its [tool.pytest] settings (filterwarnings = error); no source on sys.path.
  cp -r tests "$WORK/tests" && cp pyproject.toml "$WORK/pyproject.toml"
  (cd "$WORK" && "$WORK/venv-wheel/bin/python" -m pytest -q -p no:cacheprovider tests \
    && "$WORK/venv-wheel/bin/python" -c 'import rustybackup, sys; assert "site-packages" in rustybackup.__file__') \
    || fail "the test suite fails against the wheel"
  took
fi

step "maturin sdist"
maturin sdist --out "$WORK/sdist" >"$WORK/sdist.log" 2>&1 || { cat "$WORK/sdist.log"; fail "sdist build"; }
SDIST=$(ls "$WORK"/sdist/*.tar.gz)
"$PYTHON" - "$SDIST" "$VERSION" <<'EOF' || fail "sdist contents"
import sys, tarfile
path, version = sys.argv[1], sys.argv[2]
top = f"rustybackup-{version}/"
names = [n.removeprefix(top) for n in tarfile.open(path).getnames()]
need = ["Cargo.toml", "Cargo.lock", "pyproject.toml", "README.md", "rust/src/lib.rs",
        "python/rustybackup/__init__.py", "python/rustybackup/_core.pyi", "python/rustybackup/py.typed",
        "python/rustybackup/testing/__init__.py"]
missing = [n for n in need if n not in names]
assert not missing, f"missing from the sdist: {missing}"
junk = [n for n in names if n.startswith(("target/", "dist/")) or n.endswith((".so", ".pyc", ".whl"))
        or "__pycache__" in n or ".hypothesis" in n or ".mypy_cache" in n or ".benchmarks" in n]
assert not junk, f"built files or caches in the sdist: {junk[:10]}"
print(f"   {len(names)} entries")
EOF
echo "   $(basename "$SDIST") ($(du -k "$SDIST" | cut -f1) KiB)"
took

step "pip install of the sdist (compiles the Rust core) in a fresh venv, and runs"
smoke sdist "$SDIST"
took

printf '\npackaging checks passed in %d s\n' "$SECONDS"
