#!/usr/bin/env bash
# Single entry point for the stock-client harness.
#   TARGET=zookeeper (default)            -> Apache ZooKeeper 3.8 from Debian packages
#   TARGET=corral CORRAL_BIN=/path/corral -> Corral (`corral server zoo.cfg`)
# Steps: install deps (idempotent; SKIP_INSTALL=1 to skip), then
#   1. pytest tests/clients (python/ kazoo+raw protocol, zkcli/ Java CLI, cclient/ C cli_mt)
#   2. kazoo's own test suite (run-kazoo-suite.sh; SKIP_KAZOO=1 to skip)
# Prints a final "N passed, M failed, K skipped" line; exits non-zero on any failure.
# Extra args are passed to step 1's pytest (e.g. -k watches -x).
set -uo pipefail
# The whole body is one compound command: bash parses it before running any
# of it, so editing this file during a run cannot derail that run.
{
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export TARGET="${TARGET:-zookeeper}"
if [ -n "${CORRAL_BIN:-}" ]; then   # absolute, since the runners change directory
  CORRAL_BIN="$(cd "$(dirname "$CORRAL_BIN")" && pwd)/$(basename "$CORRAL_BIN")"
  export CORRAL_BIN
fi
t0=$(date +%s)

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  bash "$HERE/install-deps.sh" || { echo "install-deps failed"; echo "0 passed, 1 failed"; exit 1; }
fi
PY="$REPO/.venv/bin/python"
OUT="$(mktemp -d /tmp/clients-run.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT

echo "== stock-client tests against TARGET=$TARGET ${CORRAL_BIN:+(CORRAL_BIN=$CORRAL_BIN)}"
(cd "$HERE" && "$PY" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" \
   --junitxml="$OUT/clients.xml" "$@")
rc_clients=$?
t1=$(date +%s)

rc_kazoo=0
if [ "${SKIP_KAZOO:-0}" != 1 ]; then
  echo "== kazoo's own test suite against TARGET=$TARGET"
  KAZOO_JUNIT="$OUT/kazoo.xml" bash "$HERE/run-kazoo-suite.sh"
  rc_kazoo=$?
fi
t2=$(date +%s)

"$PY" - "$OUT" "$rc_clients" "$rc_kazoo" "$((t1 - t0))" "$((t2 - t1))" "${SKIP_KAZOO:-0}" <<'PY'
import os, sys
import xml.etree.ElementTree as ET
out, rc_c, rc_k, sec_c, sec_k, skip_k = sys.argv[1:]
tot = {"passed": 0, "failed": 0, "skipped": 0}
def count(name, rc, secs):
    path = os.path.join(out, name + ".xml")
    p = f = s = 0
    if os.path.exists(path):
        root = ET.parse(path).getroot()
        suites = [root] if root.tag == "testsuite" else list(root)
        for ts in suites:
            n = int(ts.get("tests", 0)); fl = int(ts.get("failures", 0)) + int(ts.get("errors", 0))
            sk = int(ts.get("skipped", 0))
            p += n - fl - sk; f += fl; s += sk
    if int(rc) != 0 and f == 0:
        f = 1  # the runner failed without reporting a failing test (crash, timeout, no tests)
    flaky = 0
    if int(rc) == 0 and f > 0:
        # The runner passed them on a re-run (run-kazoo-suite.sh): flaky, reported, not failed.
        flaky, p, f = f, p + f, 0
    print("%-8s %d passed, %d failed, %d skipped%s (exit %s, %ss)" % (name + ":", p, f, s, ", %d flaky" % flaky if flaky else "", rc, secs))
    tot["passed"] += p; tot["failed"] += f; tot["skipped"] += s
count("clients", rc_c, sec_c)
if skip_k != "1":
    count("kazoo", rc_k, sec_k)
print("%d passed, %d failed, %d skipped" % (tot["passed"], tot["failed"], tot["skipped"]))
sys.exit(1 if tot["failed"] else 0)
PY
exit
}
