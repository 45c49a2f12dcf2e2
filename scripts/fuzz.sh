#!/bin/sh
# Build the libFuzzer targets in t/fuzz with clang, ASan and UBSan, replay
# each target's regression inputs (t/fuzz/regress/NAME), then fuzz each for
# FUZZ_SECONDS (default 15) from its seed corpus (t/fuzz/corpus/NAME) with
# its dictionary (t/fuzz/NAME.dict). Fails on any crash, leak or timeout;
# the input is saved as build-fuzz/artifacts/NAME-crash-* (or leak-, timeout-).
#
#   scripts/fuzz.sh                          short pass, about a minute
#   FUZZ_SECONDS=600 scripts/fuzz.sh         the long run: 10 minutes each,
#                                            one after the other
#   FUZZ_TARGETS="request chunked" FUZZ_SECONDS=600 nice scripts/fuzz.sh
#
# Inputs found while fuzzing go to build-fuzz/corpus/NAME, never into the
# tree; the next run starts from them too. To keep them, minimise into the
# seeds: build-fuzz/fuzz_NAME -merge=1 t/fuzz/corpus/NAME build-fuzz/corpus/NAME
# A finding gets a reproducer in t/fuzz/regress/NAME/ with its fix. While
# a reported finding is unfixed, FUZZ_KNOWN (e.g. certificate)
# lets the targets step around it and look further (t/fuzz/README.md).
# scripts/deps.sh installs clang and libclang-rt-14-dev.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
seconds=${FUZZ_SECONDS:-15}
targets=${FUZZ_TARGETS:-"request response chunked config"}
build="build-fuzz"

./scripts/deps.sh
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPORTICO_FUZZ=ON -DPORTICO_SANITIZE=ON >/dev/null
for t in $targets; do
    cmake --build "$build" -j"$(nproc)" --target "fuzz_$t" >/dev/null
done

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
mkdir -p "$build/artifacts" "$build/logs"
status=0
for t in $targets; do
    bin="$top/$build/fuzz_$t"
    log="$top/$build/logs/$t.log"
    # Inputs larger than the harness buffers reach the body and trailer paths.
    case $t in config) max_len=8192 ;; chunked) max_len=4096 ;; *) max_len=8192 ;; esac

    if [ -d "t/fuzz/regress/$t" ] && [ -n "$(ls "t/fuzz/regress/$t")" ]; then
        if ! "$bin" -runs=1 "t/fuzz/regress/$t"/* >"$build/logs/$t.regress.log" 2>&1; then
            echo "fuzz_$t: a regression input fails again:" >&2
            grep -E 'invariant failed|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|^Running:' \
                "$build/logs/$t.regress.log" | tail -n 6 >&2
            echo "  log: $build/logs/$t.regress.log" >&2
            status=1
            continue
        fi
    fi

    mkdir -p "$build/corpus/$t"
    if "$bin" "$build/corpus/$t" "t/fuzz/corpus/$t" -dict="t/fuzz/$t.dict" \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$build/artifacts/$t-" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        last=$(grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -n 1)
        cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
        ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
        corp=$(echo "$last" | sed -n 's/.*corp: \([^ ]*\).*/\1/p')
        echo "fuzz_$t: ok, ${seconds}s, $runs runs, $speed exec/s, cov $cov ft $ft, corpus $corp"
    else
        echo "fuzz_$t: FAILED" >&2
        grep -E 'invariant failed|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY|Test unit written' \
            "$log" | head -n 8 >&2
        echo "  log: $build/logs/$t.log" >&2
        status=1
    fi
done
exit $status
