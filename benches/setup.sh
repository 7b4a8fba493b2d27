#!/usr/bin/env bash
# Installs the non-Python peer of the hashing benches (b3sum). Run by hand, never from tests.
set -euo pipefail
if ! command -v b3sum >/dev/null; then
  sudo apt-get update && sudo apt-get install -y b3sum
fi
b3sum --version
