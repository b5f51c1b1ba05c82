#!/usr/bin/env bash
# Start/stop the server under test (TARGET=zookeeper|corral, CORRAL_BIN=...).
#   zk.sh run   [--port 2181] [--dir D]   foreground until Ctrl-C / SIGTERM
#   zk.sh start --port P --dir D          background, pid in D/server.pid, waits for ruok->imok
#   zk.sh stop  --dir D                   stops the recorded PID (SIGTERM, then SIGKILL after 15s)
#   zk.sh 4lw   [--port P] WORD           print a four-letter-word reply
# All logic lives in servers.py (also used by the pytest fixtures).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="$REPO/.venv/bin/python"
[ -x "$PY" ] || PY=python3
exec "$PY" "$HERE/servers.py" "$@"
