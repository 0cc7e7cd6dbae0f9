#!/usr/bin/env bash
# Regenerates the seed corpora in fuzz/corpus/ (small, valid inputs the
# fuzzer mutates from); the inputs of bugs found (`found-*`) are kept.
# Run from anywhere; needs python3 and mkfs.ext4.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/{frame,archive,patch,paths,disk,dns,nflog,layers}
find corpus -type f ! -name 'found-*' -delete
python3 - <<'PY'
import struct, json, io, tarfile, os
def frame(kind, payload):
    return struct.pack(">I", len(payload) + 1) + bytes([kind]) + payload
def msg(obj):
    return frame(0, json.dumps(obj).encode())
w = lambda p, b: open(p, "wb").write(b)
hello = {"protocol_version": 2, "agent_version": "4.0.0", "mode": "guest",
         "capabilities": ["exec"], "uptime_ms": 12}
w("corpus/frame/hello", msg(hello))
w("corpus/frame/exec-output", frame(1, b"hello\n") + frame(2, b"warn\n") + msg(
    {"result": "exec", "exit_code": 0, "signal": None, "timed_out": False, "duration_ms": 3,
     "stdout_bytes": 6, "stderr_bytes": 5, "stdout_truncated": False,
     "stderr_truncated": False}))
w("corpus/frame/pong-and-data", msg({"result": "pong", "uptime_ms": 5}) + frame(5, b"\0" * 64)
  + frame(6, b""))
w("corpus/frame/envelope", msg({"protocol_version": 2, "request": {"op": "ping"}}))
w("corpus/frame/cut-short", msg(hello)[:20])
def tar(members):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, data in members:
            i = tarfile.TarInfo(name)
            if kind == "file":
                i.size = len(data); t.addfile(i, io.BytesIO(data))
            elif kind == "dir":
                i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
            elif kind == "sym":
                i.type = tarfile.SYMTYPE; i.linkname = data; t.addfile(i)
            elif kind == "hard":
                i.type = tarfile.LNKTYPE; i.linkname = data; t.addfile(i)
    return b.getvalue()
w("corpus/archive/tree", tar([("src", "dir", None), ("src/main.rs", "file", b"fn main() {}\n"),
                              ("README", "file", b"hi\n"), ("link", "sym", "README")]))
w("corpus/archive/escape", tar([("../evil", "file", b"x"), ("ok", "sym", "/etc/passwd")]))
w("corpus/archive/hardlink", tar([("a", "file", b"data"), ("b", "hard", "a")]))
w("corpus/archive/long-name", tar([("d/" * 60 + "f", "file", b"deep")]))
w("corpus/patch/modify", b"""diff --git a/a.txt b/a.txt
--- a/a.txt
+++ b/a.txt
@@ -1,3 +1,3 @@
 one
-two
+TWO
 three
""")
w("corpus/patch/create-delete-rename", b"""diff --git a/new.txt b/new.txt
new file mode 100644
--- /dev/null
+++ b/new.txt
@@ -0,0 +1 @@
+fresh
diff --git a/bin/run.sh b/bin/run.sh
deleted file mode 100755
--- a/bin/run.sh
+++ /dev/null
@@ -1,2 +0,0 @@
-#!/bin/sh
-echo hi
diff --git a/link b/moved
similarity index 100%
rename from link
rename to moved
""")
w("corpus/patch/unidiff", b"--- a.txt\n+++ a.txt\n@@ -2 +2 @@\n-two\n+2\n")
w("corpus/patch/escape", b"--- /dev/null\n+++ b/../../etc/x\n@@ -0,0 +1 @@\n+x\n")
for name, text in {"plain": "src/main.rs\n../x", "absolute": "/workspace/a/./b\n..",
                   "dots": "a/../../b\nc/d", "empty": "\n"}.items():
    w(f"corpus/paths/{name}", text.encode())
def q(name, qtype=1, extra=b""):
    body = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 1 if extra else 0) + body + \
        struct.pack(">HH", qtype, 1) + extra
opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)
w("corpus/dns/a-query", q("git.test"))
w("corpus/dns/aaaa-edns", q("example.test", 28, opt))
w("corpus/dns/long-name", q(".".join(["label"] * 20)))
def nla(t, v):
    l = 4 + len(v)
    return struct.pack("=HH", l, t) + v + b"\0" * ((4 - l % 4) % 4)
ip = bytes([0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 2, 10, 77, 0, 5]) + \
    struct.pack(">HH", 40000, 443) + b"\0" * 16
attrs = nla(10, b"pyro:rfc1918\0") + nla(9, ip)
body = struct.pack("=BBH", 2, 0, 0) + attrs
hdr = struct.pack("=IHHII", 16 + len(body), (4 << 8) | 0, 0, 1, 0)
w("corpus/nflog/one-packet", hdr + body)
w("corpus/nflog/two-packets", (hdr + body) * 2)
import gzip
w("corpus/layers/tree.tar", tar([("dir", "dir", None), ("dir/gone", "file", b"old\n"),
                                 ("opq", "dir", None), ("opq/old", "file", b"o"),
                                 ("abs", "sym", "/etc"), ("rel", "sym", "../../.."),
                                 ("dir/hard", "hard", "dir/gone")]))
w("corpus/layers/whiteouts.tar.gz", gzip.compress(tar([
    ("dir/.wh.gone", "file", b""), ("opq/.wh..wh..opq", "file", b""),
    ("opq/new", "file", b"n"), ("abs/planted", "file", b"x"), ("rel/up", "file", b"y")]), mtime=0))
w("corpus/layers/escape.tar", tar([("../evil", "file", b"x"), ("h", "hard", "../x")]))
w("corpus/layers/zstd-magic", b"\x28\xb5\x2f\xfd" + b"\0" * 32)
PY
# A small ext4 image with a file, a directory, a symlink and a special
# name; no journal, so it stays 128 KiB.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root/data/dir"
echo hello > "$tmp/root/data/dir/file.txt"
ln -s dir/file.txt "$tmp/root/data/link"
printf 'x' > "$tmp/root/data/name with \"quotes\""
truncate -s 128K "$tmp/img"
mkfs.ext4 -q -F -b 1024 -N 16 -O ^has_journal,^resize_inode -d "$tmp/root" "$tmp/img"
cp "$tmp/img" corpus/disk/small-tree
head -c 2048 "$tmp/img" > corpus/disk/superblock-only
