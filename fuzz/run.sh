#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 15: the smoke
# that tests/run-all.sh runs), two at a time on the machine's two cores.
# Fails if any target crashes, panics, times out or runs out of memory; the
# input is left in fuzz/artifacts/TARGET/ and the log in fuzz/logs/TARGET.log.
#
#   fuzz/run.sh              # smoke: ~15 s per target
#   fuzz/run.sh 600          # the long run (docs/security.md)
#   fuzz/run.sh 60 x509 jks  # some targets only
#
# Environment: FUZZ_JOBS (targets at once, default 2), FUZZ_SANITIZER (none
# or address, default none: the code under test is safe Rust, so panics and
# overflow checks are what find bugs, and ASan would double build and run
# time), FUZZ_CODEGEN_UNITS (default 16 for runs under a minute, which
# builds faster; 1 for longer runs, which fuzzes faster, as cargo-fuzz's
# own default). New inputs are kept in fuzz/corpus/TARGET/ between runs;
# the checked-in seeds are fuzz/seeds/TARGET/ (fuzz/make-seeds.py).
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${1:-15}
shift || true
JOBS=${FUZZ_JOBS:-2}
SANITIZER=${FUZZ_SANITIZER:-none}
if [ -z "${FUZZ_CODEGEN_UNITS:-}" ]; then
    if [ "$SECONDS_PER_TARGET" -lt 60 ]; then FUZZ_CODEGEN_UNITS=16; else FUZZ_CODEGEN_UNITS=1; fi
fi
# -a: debug assertions and overflow checks, so arithmetic overflow on input is a crash.
FLAGS=(-s "$SANITIZER" -a --codegen-units "$FUZZ_CODEGEN_UNITS")

TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi

dict_for() {
    case "$1" in
        frame|request|connect|multi|reply) echo "-dict=dict/jute.dict" ;;
        zoocfg) echo "-dict=dict/zoocfg.dict" ;;
    esac
}

echo "== fuzz: building ${#TARGETS[@]} targets (sanitizer $SANITIZER, $FUZZ_CODEGEN_UNITS codegen units)"
build_start=$(date +%s)
if ! cargo +nightly fuzz build "${FLAGS[@]}" 2>&1 | { grep -Ev '^\s+(Compiling|Downloaded|Downloading)' || true; }; then
    echo "fuzz: build failed" >&2
    exit 1
fi
echo "== fuzz: built in $(( $(date +%s) - build_start )) s; running each target for ${SECONDS_PER_TARGET} s"

mkdir -p logs
run_one() {
    local t=$1 log="logs/$1.log"
    mkdir -p "corpus/$t" "seeds/$t"
    # -timeout: one input taking longer is a hang, reported as a crash.
    if cargo +nightly fuzz run "${FLAGS[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 $(dict_for "$t") \
        >"$log" 2>&1; then
        local execs rate
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        echo "fuzz: $t ok: $execs runs, $rate/s, corpus $(ls "corpus/$t" | wc -l) inputs"
    else
        echo "fuzz: $t FAILED (log: fuzz/$log; input in fuzz/artifacts/$t/)"
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written|^Reproduce' "$log" | head -8 | sed 's/^/    /'
        return 1
    fi
}

failed=()
pids=()
names=()
for t in "${TARGETS[@]}"; do
    run_one "$t" &
    pids+=($!)
    names+=("$t")
    if [ ${#pids[@]} -ge "$JOBS" ]; then
        wait "${pids[0]}" || failed+=("${names[0]}")
        pids=("${pids[@]:1}")
        names=("${names[@]:1}")
    fi
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed+=("${names[$i]}")
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all ${#TARGETS[@]} targets ran ${SECONDS_PER_TARGET} s without a crash"
