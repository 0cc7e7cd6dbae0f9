#!/usr/bin/env bash
# Line coverage of the workspace from an instrumented run (`make test` builds
# everything with `-C instrument-coverage` into target/cov and every process
# it starts — test binaries, `pyro`, the smoke runner, the wheel's pyro,
# the instrumented agent of host-compat sandboxes (`make cov-agent`) —
# adds its counters to target/cov/prof/). This merges them, prints the
# figure per crate and in total, and fails below COVERAGE_MIN percent.
#   scripts/coverage.sh [COVERAGE_MIN]
# Counted: the crates' src/ trees. Not counted: tests/, examples/, benches/,
# the fuzz harnesses (they run under libFuzzer, not here), dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

min="${1:-${COVERAGE_MIN:-90}}"
dir=target/cov
tool() {
  for c in "$1-22" "$1-21" "$1-20" "$1-19" "$1"; do
    if command -v "$c" >/dev/null 2>&1; then echo "$c"; return; fi
  done
  echo "coverage: $1 not found (scripts/setup-host.sh installs llvm-19)" >&2
  exit 1
}
profdata="$(tool llvm-profdata)"
llvmcov="$(tool llvm-cov)"

shopt -s nullglob
raws=("$dir"/prof/*.profraw)
if [ "${#raws[@]}" -eq 0 ]; then
  echo "coverage: no profiles in $dir/prof (run the instrumented \`make test\` first)" >&2
  exit 1
fi
# A process killed while writing leaves a pool unreadable: merge the rest.
"$profdata" merge -sparse --failure-mode=all "${raws[@]}" -o "$dir/merged.profdata"

# This run's programs only (stale test binaries of older builds would count
# code that no longer exists): the suites nextest lists, pyro, the smoke runner.
objects=(-object "$dir/debug/pyro" -object "$dir/debug/examples/smoke")
# Each `pyro` build that ran (the Makefile keeps them: pyro-pull, pyro-suite,
# pyro-wheel); a profile counts only against the binary that wrote it.
for b in "$dir"/pyro-*; do
  if [ -x "$b" ]; then objects+=(-object "$b"); fi
done
# The instrumented static guest agent (host-compat sandboxes and guests run it).
agent=target/cov-agent/x86_64-unknown-linux-gnu/release/pyro-agent
if [ -x "$agent" ]; then objects+=(-object "$agent"); fi
# The flags must be the Makefile's COV_ENV ones, or this rebuilds the suite.
while read -r f; do
  objects+=(-object "$f")
done < <(CARGO_TARGET_DIR="$PWD/$dir" CARGO_INCREMENTAL=0 RUSTFLAGS="-C instrument-coverage --cfg pyro_coverage" \
  LLVM_PROFILE_FILE=/dev/null \
  cargo nextest list --workspace --message-format json 2>/dev/null | python3 -c '
import json, sys
for s in json.load(sys.stdin)["rust-suites"].values():
    print(s["binary-path"])
')
if [ "${#objects[@]}" -lt 20 ]; then
  echo "coverage: could not list the test binaries (run with the instrumented build's environment)" >&2
  exit 1
fi

"$llvmcov" export -summary-only -format=text \
  -instr-profile="$dir/merged.profdata" \
  -ignore-filename-regex='(\.cargo/registry|/rustc/|/tests/|/examples/|/benches/|crates/pyro-fuzz/|/fuzz/)' \
  "${objects[@]}" > "$dir/summary.json"

python3 - "$dir/summary.json" "$min" <<'PY'
import json, sys, collections
data = json.load(open(sys.argv[1]))["data"][0]
minimum = float(sys.argv[2])
import re
per = collections.defaultdict(lambda: [0, 0])
for f in data["files"]:
    m = re.search(r"/crates/([^/]+)/src/", f["filename"])
    # Only the crates' own sources; unit-test files beside them do not count.
    if not m or f["filename"].endswith("/tests.rs"):
        continue
    l = f["summary"]["lines"]
    per[m.group(1)][0] += l["covered"]
    per[m.group(1)][1] += l["count"]
for crate, (c, n) in sorted(per.items()):
    print(f"coverage: {crate:16} {100.0 * c / max(n, 1):5.1f} %  ({c}/{n} lines)")
covered = sum(c for c, _ in per.values())
count = sum(n for _, n in per.values())
if count == 0:
    sys.exit("coverage: no crate sources in the report")
pct = 100.0 * covered / count
print(f"coverage: TOTAL            {pct:5.1f} %  ({covered}/{count} lines); gate {minimum} %")
sys.exit(0 if pct >= minimum else 1)
PY
