#!/usr/bin/env bash
# A stand-in "corral" binary that is really Apache ZooKeeper: validates the
# TARGET=corral plumbing (CORRAL_BIN, `corral server zoo.cfg`, the kazoo java
# shim) before Corral exists:
#   TARGET=corral CORRAL_BIN=tests/clients/fake-corral-zookeeper.sh tests/clients/run.sh
# Usage (same as corral): fake-corral-zookeeper.sh server PATH/zoo.cfg
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
[ "${1:-}" = server ] && [ -n "${2:-}" ] || { echo "usage: $0 server zoo.cfg" >&2; exit 2; }
PY="$REPO/.venv/bin/python"; [ -x "$PY" ] || PY=python3
# Bypass the kazoo java shim (which would exec us again).
export REAL_JAVA="${REAL_JAVA:-/usr/bin/java}"
exec "$PY" "$HERE/servers.py" exec-zk "$2"
