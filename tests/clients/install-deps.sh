#!/usr/bin/env bash
# Idempotent installer for the stock-client test harness (fresh Debian, as root).
#  - Debian packages: zookeeper (Apache ZooKeeper 3.8 jars + default-jre), zookeeper-bin (C client cli_mt),
#    openssl and a JDK 17 (javac) for the TLS and X.509 tests, libcurator-test-java (Curator's
#    TestingServer/TestingCluster, compared with corral::Server/Cluster by tests/benches/embed_start.rs)
#    when this Debian release has it
#  - $REPO/.venv with tests/clients/requirements.txt (kazoo, pytest, ...)
# Safe to run repeatedly: does nothing (and no network) when all is present.
set -euo pipefail
# The whole body is one compound command: bash parses it before running any
# of it, so editing this file during a run cannot derail that run.
{
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$REPO/.venv"
export DEBIAN_FRONTEND=noninteractive

log() { echo "[install-deps] $*"; }

# Wait (bounded) for any apt/dpkg run already in progress, e.g. one started in the background.
wait_for_apt() {
  local deadline=$(( $(date +%s) + 1200 ))
  while pgrep -x 'apt-get|apt|dpkg|unattended-upgr|aptitude' >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "apt/dpkg still busy after 20 min; giving up"; return 1
    fi
    log "waiting for a running apt/dpkg to finish..."; sleep 3
  done
}

APT_PKGS=(zookeeper zookeeper-bin procps openssl openjdk-17-jdk-headless)  # openssl: the TLS tests make certificates; the JDK (javac): x509.rs tests compare chain validation with Java PKIX
# iproute2 and iptables: the Jepsen harness runs ensembles in network namespaces and
# partitions them with iptables rules inside them (else it falls back to loopback proxies).
APT_PKGS+=(iproute2 iptables)
# Optional: the embed_start bench prints Corral's figures alone without it.
if apt-cache show libcurator-test-java >/dev/null 2>&1; then
  APT_PKGS+=(libcurator-test-java)
fi
# The Jepsen harness's clock-skew nemesis (libfaketime); its test leaves skew
# out, saying so, where the package does not exist.
if apt-cache show faketime >/dev/null 2>&1; then
  APT_PKGS+=(faketime)
fi
pkgs_missing() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  echo "${missing[@]:-}"
}

need_py_venv=0
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need_py_venv=1
fi

missing="$(pkgs_missing "${APT_PKGS[@]}")"
[ "$need_py_venv" = 1 ] && missing="$missing python3 python3-venv"
if [ -n "${missing// /}" ]; then
  command -v pgrep >/dev/null 2>&1 && wait_for_apt
  # Re-check: the background run may have installed them meanwhile.
  missing="$(pkgs_missing "${APT_PKGS[@]}")"
  [ "$need_py_venv" = 1 ] && missing="$missing python3 python3-venv"
fi
if [ -n "${missing// /}" ]; then
  # apt-get update only if the package lists do not know zookeeper yet
  # (lists may be stored compressed, so ask apt-cache rather than ls).
  if ! apt-cache policy zookeeper zookeeper-bin 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    log "apt-get update"
    apt-get -o DPkg::Lock::Timeout=600 update -q
    if [[ " ${APT_PKGS[*]} " != *" libcurator-test-java "* ]] && apt-cache show libcurator-test-java >/dev/null 2>&1; then
      missing="$missing libcurator-test-java"
    fi
    if [[ " ${APT_PKGS[*]} " != *" faketime "* ]] && apt-cache show faketime >/dev/null 2>&1; then
      missing="$missing faketime"
    fi
  fi
  log "apt-get install -y $missing"
  # shellcheck disable=SC2086
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $missing
else
  log "Debian packages present: ${APT_PKGS[*]}"
fi

command -v java >/dev/null || { log "java missing after install"; exit 1; }
[ -f /usr/share/java/zookeeper.jar ] || { log "/usr/share/java/zookeeper.jar missing"; exit 1; }
ls /usr/lib/zookeeper/bin/cli_mt >/dev/null || { log "cli_mt missing"; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  python3 -m venv "$VENV"
fi
# Install only if something is missing or the pins are not satisfied.
if ! "$VENV/bin/python" - "$HERE/requirements.txt" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
import re
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    m = re.match(r"([A-Za-z0-9_.-]+)\s*(==|<|>=)?\s*([0-9.]*)", line)
    name, op, want = m.group(1), m.group(2), m.group(3)
    have = version(name)  # raises if missing
    hv = tuple(int(x) for x in re.findall(r"\d+", have)[:3])
    wv = tuple(int(x) for x in want.split(".")) if want else ()
    if op == "==" and hv[:len(wv)] != wv: sys.exit(1)
    if op == "<" and not hv < wv: sys.exit(1)
    if op == ">=" and not hv >= wv: sys.exit(1)
PY
then
  log "pip install -r requirements.txt into $VENV"
  "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
else
  log "venv $VENV up to date"
fi
log "ok"
exit
}
