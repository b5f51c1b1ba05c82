#!/usr/bin/env bash
# Installs what the corral-queue integration tests need: Apache ZooKeeper 3.8
# (Debian packages, started by the tests themselves), Java to run it, a JDK
# and Debian's Curator 5.4 recipes (the Curator interop tests compile a small
# DistributedQueue driver with javac), and a Python virtualenv with kazoo.
set -euo pipefail
cd "$(dirname "$0")/../.."   # workspace root

need_apt=()
dpkg -s zookeeper >/dev/null 2>&1 || need_apt+=(zookeeper zookeeper-bin)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
[ -f /usr/share/java/curator-recipes.jar ] || need_apt+=(libcurator-recipes-java)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${need_apt[@]}"
fi

VENV="${CORRAL_QUEUE_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import kazoo' >/dev/null 2>&1; then
    "$VENV/bin/pip" install -q 'kazoo>=2.9'
fi
"$VENV/bin/python" -c 'import kazoo; print("kazoo", kazoo.__version__ if hasattr(kazoo, "__version__") else "ok")'
