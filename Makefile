# pyro: the two commands in the README are `make demo` and `make test`.
# Both set up a fresh Debian 12 host themselves (apt packages, the pinned
# Firecracker, the guest kernel and root filesystem, all cached).

CARGO ?= cargo
AGENT_TARGET := x86_64-unknown-linux-gnu
AGENT := target/$(AGENT_TARGET)/release/pyro-agent
PYRO_RELEASE := target/release/pyro
PYRO_DEBUG := target/debug/pyro
ENV ?= debian:12
# Seconds each fuzz target runs in `make test` (eight targets: under 3 min).
FUZZ_SECONDS ?= 20
TOOLS := target/tools/bin
# The wheel's cargo profile: `release` for publishing (`make wheel`); the
# check in `make test` builds a `dev` wheel, which reuses the test build.
WHEEL_PROFILE ?= release
SMOKE := target/debug/examples/smoke
# The wheel's extra files: the static guest agent, installed beside `pyro`.
WHEEL_STAGE := rm -rf target/wheel-data target/wheels && mkdir -p target/wheel-data/scripts \
	&& cp $(AGENT) target/wheel-data/scripts/pyro-agent
# `make test`'s instrumented build (see there): everything it runs counts
# toward line coverage. Host programs write merge pools; the static guest
# agent (its own build) writes one continuous-mode file per process, so a
# SIGKILLed sandbox keeps its counters; in a guest it keeps them in /run, and
# pyro (built with `--cfg pyro_coverage`) copies them out before the VM ends.
# Not incremental: that cache would double the build's size on disk (about
# 10 GB), and CI builds once.
COV_DIR := $(CURDIR)/target/cov
PYRO_COV := $(COV_DIR)/debug/pyro
SMOKE_COV := $(COV_DIR)/debug/examples/smoke
COV_AGENT := target/cov-agent/$(AGENT_TARGET)/release/pyro-agent
# Percent of lines the gate asks for.
COVERAGE_MIN ?= 90
COV_ENV := CARGO_TARGET_DIR=$(COV_DIR) CARGO_INCREMENTAL=0 RUSTFLAGS="-C instrument-coverage --cfg pyro_coverage" \
	LLVM_PROFILE_FILE="$(COV_DIR)/prof/%4m.profraw" \
	PYRO_AGENT_PROFILE="$(COV_DIR)/prof/agent-%p%c.profraw" PYRO_AGENT_BIN=$(CURDIR)/$(COV_AGENT)

.PHONY: setup agent cov-agent build pull demo test lint bench fuzz wheel wheel-check smoke-use-cases coverage

# apt packages and cargo-nextest (only what is missing).
setup:
	scripts/setup-host.sh

# The guest agent: a static glibc binary (an explicit --target keeps the
# crt-static flag away from proc-macros and from the host build).
agent:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build -p pyro-agent --release --target $(AGENT_TARGET)

# The same agent instrumented for line coverage (`make test`).
cov-agent:
	CARGO_TARGET_DIR=target/cov-agent RUSTFLAGS="-C target-feature=+crt-static -C instrument-coverage \
		-C llvm-args=-runtime-counter-relocation --cfg pyro_coverage" \
		$(CARGO) build -p pyro-agent --release --target $(AGENT_TARGET)

build: agent
	$(CARGO) build --release -p pyro-cli

pull: build
	$(PYRO_RELEASE) env pull $(ENV)

# The zero-to-hero path on this machine, ending in a command run inside a
# real Firecracker guest. The first doctor run may report what is missing;
# after the pull it must pass.
demo: setup build
	-$(PYRO_RELEASE) doctor
	$(PYRO_RELEASE) env list
	$(PYRO_RELEASE) env pull $(ENV)
	$(PYRO_RELEASE) doctor
	$(PYRO_RELEASE) run $(ENV) -- git --version

# The second clippy pass sees the code only `make test`'s instrumented
# builds compile (`--cfg pyro_coverage`).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	CARGO_TARGET_DIR=target/clippy-cov RUSTFLAGS="--cfg pyro_coverage" \
		$(CARGO) clippy -p pyro-agent -p pyro-core -p pyro-vmm --all-targets -- -D warnings

# The whole suite, built once with `-C instrument-coverage` into target/cov:
# formatting, lints, unit tests, end-to-end tests against the built binary
# (host-compat for breadth), the real-VM tests (serial), the docs/help
# expectation tests, the five use-case recipes on real guests through the MCP
# server, the wheel installed and run; then the line-coverage gate
# (scripts/coverage.sh: per crate, fails when the total is below COVERAGE_MIN percent of the
# crates' src/ lines), then every fuzz target for a bounded time.
#
# Each build of `pyro` here may differ (features unify differently for the
# pull's build, nextest's and maturin's), and a profile counts only against
# the very binary that wrote it: each is kept as $(COV_DIR)/pyro-<step> for
# the report.
test: setup cov-agent lint
	rm -rf $(COV_DIR)/prof $(COV_DIR)/pyro-*
	$(COV_ENV) $(CARGO) build -p pyro-cli --bin pyro --example smoke
	cp $(PYRO_COV) $(COV_DIR)/pyro-pull
	$(COV_ENV) $(COV_DIR)/pyro-pull env pull $(ENV)
	$(COV_ENV) $(CARGO) nextest run --workspace --profile ci
	cp $(PYRO_COV) $(COV_DIR)/pyro-suite
	$(COV_ENV) $(SMOKE_COV) --pyro $(COV_DIR)/pyro-suite all
	rm -rf target/wheel-data target/wheels && mkdir -p target/wheel-data/scripts \
		&& cp $(COV_AGENT) target/wheel-data/scripts/pyro-agent
	$(COV_ENV) $(TOOLS)/maturin build --profile dev --out target/wheels
	cp $(PYRO_COV) $(COV_DIR)/pyro-wheel
	$(COV_ENV) scripts/wheel-check.sh target/wheels/*.whl
	$(COV_ENV) scripts/coverage.sh $(COVERAGE_MIN)
	scripts/fuzz.sh $(FUZZ_SECONDS)

# The coverage report again from target/cov/prof (after `make test`).
coverage:
	$(COV_ENV) scripts/coverage.sh $(COVERAGE_MIN)

# The five documented use cases (docs/use-cases/) end to end on real guests
# through `pyro mcp serve` with each recipe's profile: one PASS/FAIL line per
# recipe with its time. `make smoke-NAME` runs one.
smoke-use-cases: agent
	$(CARGO) build -p pyro-cli --bin pyro --example smoke
	$(PYRO_DEBUG) env pull $(ENV)
	$(SMOKE) --pyro $(PYRO_DEBUG) all

smoke-%: agent
	$(CARGO) build -p pyro-cli --bin pyro --example smoke
	$(PYRO_DEBUG) env pull $(ENV)
	$(SMOKE) --pyro $(PYRO_DEBUG) $*

# The pyro-mcp wheel (linux x86_64): `pyro` and the static guest agent, in
# target/wheels/.
wheel: setup agent
	$(WHEEL_STAGE)
	$(TOOLS)/maturin build --profile $(WHEEL_PROFILE) --out target/wheels

# Installs the wheel into a fresh virtualenv and checks `pyro --version`,
# `pyro mcp serve` answering tools/list, the agent beside it, and the same
# through `uvx --from WHEEL`.
wheel-check: wheel
	scripts/wheel-check.sh target/wheels/*.whl

# Every fuzz target under libFuzzer (stable toolchain) from its seed corpus
# in fuzz/corpus/; a crash fails and keeps its input in target/fuzz/artifacts/.
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

# Figures: MCP dispatch overhead (p50/p95 against a ping floor) and server
# start time to the first tools/list answer; real guests: host CPU of 1 and 4
# idle guests, and agent ping vs exec round trips; fast start from templates
# against the raw Firecracker restore floor and cold boots (docs/performance.md).
bench: build
	$(PYRO_RELEASE) env pull $(ENV)
	$(CARGO) bench -p pyro-cli --bench mcp
	$(CARGO) bench -p pyro-cli --bench tree
	$(CARGO) bench -p pyro-cli --bench network
	$(CARGO) bench -p pyro-core --bench guest
	$(CARGO) bench -p pyro-core --bench snapshots
	$(CARGO) bench -p pyro-core --bench shells
	$(CARGO) bench -p pyro-core --bench templates
