#!/usr/bin/env bash
# Installs the peers the benches compare against, from Debian's and PyPI's registries.
# Benches whose peer is still missing skip with a reason; they never pass silently.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic borgbackup b3sum pgbackrest postgresql >/dev/null
fi
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[test]' 'apscheduler<4'
