#!/usr/bin/env bash
# Checks a built pyro-mcp wheel the way a user meets it: installed into a
# fresh virtualenv (`pip install`), and run through `uvx --from WHEEL`.
#   scripts/wheel-check.sh target/wheels/pyro_mcp-VERSION-*.whl
# Fails (non-zero) on the first thing that does not hold.
set -euo pipefail

if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
  echo "wheel-check: give exactly one wheel file (build it with \`make wheel\`)" >&2
  exit 2
fi
wheel="$(realpath "$1")"
cd "$(dirname "$0")/.."
tools="$PWD/target/tools/bin"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
work="$(mktemp -d -t pyro-wheel-check-XXXXXX)"
trap 'rm -rf "$work"' EXIT
export PYRO_HOME="$work/home"
fail() { echo "wheel-check: FAIL: $*" >&2; exit 1; }

case "$(basename "$wheel")" in
  pyro_mcp-"$version"-py3-none-*linux*_x86_64.whl) ;;
  *) fail "unexpected wheel name $(basename "$wheel") (want pyro_mcp-$version-py3-none-<linux tag>_x86_64.whl)" ;;
esac

# 1. pip install into a fresh virtualenv (offline: the wheel has no dependencies).
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --no-index "$wheel"
bin="$work/venv/bin"
got="$("$bin/pyro" --version)"
[ "$got" = "pyro $version" ] || fail "pyro --version printed '$got', not 'pyro $version'"
[ -x "$bin/pyro-agent" ] || fail "the wheel did not install pyro-agent beside pyro"
# The agent runs inside guests of any distribution: an ELF with no program
# interpreter (statically linked).
python3 - "$bin/pyro-agent" <<'PY' || fail "pyro-agent is not a static x86_64 ELF program"
import struct, sys
d = open(sys.argv[1], "rb").read()
assert d[:4] == b"\x7fELF" and d[4] == 2 and struct.unpack_from("<H", d, 18)[0] == 62
phoff, = struct.unpack_from("<Q", d, 32)
phentsize, phnum = struct.unpack_from("<HH", d, 54)
types = [struct.unpack_from("<I", d, phoff + i * phentsize)[0] for i in range(phnum)]
assert 3 not in types, "has a PT_INTERP"
PY

# 2. The MCP server answers tools/list over stdio.
tools_json="$(python3 - "$bin/pyro" <<'PY'
import json, signal, subprocess, sys
signal.alarm(60)  # a server that never answers fails the check, not hangs it
p = subprocess.Popen([sys.argv[1], "mcp", "serve"], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
msgs = [
    {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "wheel-check", "version": "1"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
]
for m in msgs:
    p.stdin.write(json.dumps(m) + "\n")
p.stdin.flush()
names = None
for line in p.stdout:
    v = json.loads(line)
    if v.get("id") == 2:
        names = sorted(t["name"] for t in v["result"]["tools"])
        break
p.stdin.close()
p.wait(timeout=30)
print(json.dumps(names))
PY
)"
echo "$tools_json" | grep -q '"workspace_create"' || fail "tools/list from the wheel's pyro: $tools_json"

# 3. Hosts get the installed program's absolute path.
cfg="$(HOME="$work" "$bin/pyro" host print-config claude-code --json)"
echo "$cfg" | grep -q "\"command\": \"$bin/pyro\"" || fail "print-config from the wheel: $cfg"

# 4. uvx --from WHEEL runs it too (offline, private cache), and a host
#    connected from there gets the uvx command, not the ephemeral path.
export UV_CACHE_DIR="$work/uv-cache" UV_OFFLINE=1 UV_NO_PROGRESS=1
got="$("$tools/uvx" --from "$wheel" pyro --version)"
[ "$got" = "pyro $version" ] || fail "uvx --from the wheel printed '$got'"
cfg="$(HOME="$work" "$tools/uvx" --from "$wheel" pyro host print-config codex --json)"
echo "$cfg" | grep -q '"command": "uvx"' || fail "print-config under uvx: $cfg"
echo "$cfg" | grep -q "\"pyro-mcp==$version\"" || fail "print-config under uvx does not pin pyro-mcp==$version: $cfg"

echo "wheel-check: PASS $(basename "$wheel"): pip install, pyro --version, tools/list ($(echo "$tools_json" | tr ',' '\n' | wc -l) tools), pyro-agent beside pyro, uvx --from"
