#!/usr/bin/env bash
# Runs every fuzz target (crates/pyro-fuzz) under libFuzzer for a bounded
# time, starting from its seed corpus in fuzz/corpus/<target>/. Usage:
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Built on the stable toolchain: the sanitizer-coverage pass and its LLVM
# options are stable rustc flags, and libfuzzer-sys compiles libFuzzer
# itself (it needs a C++ compiler). New inputs the fuzzer finds go to a
# scratch directory, never into the repository's corpus; a crash saves its
# input under target/fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
case "$secs" in
    ''|*[!0-9]*) echo "fuzz: the first argument is the seconds per target (a number), got '$secs'; usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "fuzz_\(.*\)"$/\1/p' fuzz/Cargo.toml)
fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz: no targets found in fuzz/Cargo.toml" >&2
    exit 1
fi
triple="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="$PWD/target/fuzz"
flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    --cfg fuzzing
)
# An explicit --target keeps the flags off build scripts and proc macros.
RUSTFLAGS="${flags[*]}" cargo build --release \
    --manifest-path fuzz/Cargo.toml --target "$triple"
bin="$CARGO_TARGET_DIR/$triple/release"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
    if [ ! -x "$bin/fuzz_$t" ] || [ ! -d "fuzz/corpus/$t" ]; then
        echo "fuzz $t: no such target (a fuzz_$t binary and fuzz/corpus/$t/ are both needed)" >&2
        failed+=("$t")
        continue
    fi
    mkdir -p "$scratch/$t" "target/fuzz/artifacts/$t"
    log="$scratch/$t.log"
    if "$bin/fuzz_$t" "$scratch/$t" "fuzz/corpus/$t" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
        -artifact_prefix="target/fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" || true)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
        echo "fuzz $t: ${runs:-?} inputs in ${secs} s, ${cov:-cov: ?}, no crash"
    else
        echo "fuzz $t: FAILED; the input is under target/fuzz/artifacts/$t/:" >&2
        tail -n 40 "$log" >&2
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${failed[*]} crashed; reproduce with $bin/fuzz_<target> <artifact>" >&2
    exit 1
fi
