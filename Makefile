# seta — top-level commands. Everything that needs root expects to run as root.
SHELL := /bin/bash
CARGO ?= cargo
# System packages: compiler for the C datapath, the tools tests and the demo use.
APT_PKGS := clang-19 llvm-19 libbpf-dev iproute2 iputils-ping iperf3 sockperf nftables iptables \
            containernetworking-plugins jq procps podman runc busybox-static etcd-server protobuf-compiler
REL := target/release

.PHONY: all deps build test demo bench fmt clippy lab-down clean

all: build

# Install only what is missing (needs root and apt; a no-op when all is present).
deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "==> installing: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(CARGO) build --release --workspace

# Unit tests, BPF packet tests (root), CNI and end-to-end lab tests (root).
# Under CI=true a privileged test that cannot run fails instead of skipping.
test: deps
	$(CARGO) build --workspace
	$(CARGO) test --workspace -- --test-threads=2

demo: build
	./scripts/demo.sh

bench: build
	$(CARGO) build --release -p seta-bench
	$(REL)/seta-bench $(BENCH_ARGS)

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets

# Remove every lab on this machine (also after a crash).
lab-down:
	-$(REL)/seta lab down --all || target/debug/seta lab down --all

clean: lab-down
	$(CARGO) clean
