#!/usr/bin/env bash
# Line coverage of the workspace from an instrumented run (`make test` builds
# everything with `-C instrument-coverage` into target/cov and every process
# it starts — test binaries, `pyro`, the smoke runner, the wheel's pyro —
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
  for c in "$1" "$1-19" "$1-20" "$1-21" "$1-22"; do
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
"$profdata" merge -sparse "${raws[@]}" -o "$dir/merged.profdata"

objects=()
for f in "$dir"/debug/deps/* "$dir"/debug/pyro "$dir"/debug/examples/*; do
  name="$(basename "$f")"
  if [ -f "$f" ] && [ -x "$f" ] && [[ "$name" != *.* ]]; then
    objects+=(-object "$f")
  fi
done

"$llvmcov" export -summary-only -format=text \
  -instr-profile="$dir/merged.profdata" \
  -ignore-filename-regex='(\.cargo/registry|/rustc/|/tests/|/examples/|/benches/|crates/pyro-fuzz/|/fuzz/)' \
  "${objects[@]}" > "$dir/summary.json"

python3 - "$dir/summary.json" "$min" <<'PY'
import json, sys, collections
data = json.load(open(sys.argv[1]))["data"][0]
minimum = float(sys.argv[2])
per = collections.defaultdict(lambda: [0, 0])
for f in data["files"]:
    name = f["filename"]
    crate = name.split("/crates/")[-1].split("/")[0] if "/crates/" in name else name
    l = f["summary"]["lines"]
    per[crate][0] += l["covered"]
    per[crate][1] += l["count"]
for crate, (c, n) in sorted(per.items()):
    print(f"coverage: {crate:16} {100.0 * c / max(n, 1):5.1f} %  ({c}/{n} lines)")
t = data["totals"]["lines"]
pct = t["percent"]
print(f"coverage: TOTAL            {pct:5.1f} %  ({t['covered']}/{t['count']} lines); gate {minimum} %")
sys.exit(0 if pct >= minimum else 1)
PY
