#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and reports crashes.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Default: 60 s per target, every target. Needs a nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`). Each target runs with a 2 GiB RSS
# limit (a parser allocating beyond its input's bound is a finding) and a
# per-input timeout. Corpora accumulate in fuzz/corpus/<target>; crashes land
# in fuzz/artifacts/<target>/ and are listed at the end. Exit status 1 when a
# target crashed.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/fuzz}"
rss_mb="${FUZZ_RSS_LIMIT_MB:-2048}"
# FUZZ_JOBS > 1 runs that many processes per target (libFuzzer then writes
# fuzz-<n>.log files in the current directory).
jobs="${FUZZ_JOBS:-1}"
parallel=()
if [ "$jobs" -gt 1 ]; then
    parallel=(-jobs="$jobs" -workers="$jobs")
fi

cargo +nightly fuzz build --fuzz-dir fuzz

failed=()
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    log="fuzz/artifacts/$target/last-run.log"
    echo "== $target: ${seconds}s"
    if cargo +nightly fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb" \
        -timeout=10 "${parallel[@]}" -print_final_stats=1 >"$log" 2>&1; then
        grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$log" | tr '\n' ' ' || true
        echo
    else
        echo "!! $target FAILED, see $log"
        grep -E "SUMMARY|panicked|Test unit written" "$log" | head -5 || true
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)"
    exit 1
fi
echo "no crashes in ${#targets[@]} targets (${seconds}s each)"
