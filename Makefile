# Makefile for moat. Recipes only call cargo or hack/ scripts; the logic lives
# in the scripts.
#   make build   - cargo build --release (target/release/moat and
#                  target/release/containerd-shim-moat-v2, linked statically)
#   make setup   - install host packages, start containerd + dockerd
#   make demo    - register moat with docker, import moat-busybox, run demo
#   make test    - same preparation, then the whole cargo test suite
#   make images  - build the workload images (hack/images; cached)
#   make test-workloads - nginx, redis, postgres, python under moat (docker,
#                  and nginx, redis, postgres in pods through containerd's CRI)
#   make test-cri - Kubernetes' CRI conformance suite (critest v1.32.0) through
#                  a private containerd (the system's 1.6, then 2.1 from
#                  hack/containerd2.sh) with handlers runc, moat, moat-shim;
#                  fails on any failure hack/critest-expected-failures.txt
#                  does not list, or a leak (hack/critest.sh)
#   make lint    - rustfmt check + clippy with warnings as errors
#   make clean   - cargo clean + drop the cached busybox rootfs

SHELL := /bin/bash

# Find cargo even when PATH lacks ~/.cargo/bin.
CARGO_HOME ?= $(HOME)/.cargo
ifneq ($(wildcard $(CARGO_HOME)/bin),)
export PATH := $(CARGO_HOME)/bin:$(PATH)
endif
CARGO ?= cargo
MOAT_CACHE ?= /var/cache/moat
# containerd 2.1 for the containerd 2 tests (hack/containerd2.sh fetches it;
# never installed over the system's 1.6).
CONTAINERD2 = $(MOAT_CACHE)/containerd-2.1/usr/bin/containerd

# A second docker runtime, `moat-learn`: the same binary with --learn-dir, so
# `docker run --runtime=moat-learn` learns a seccomp profile (docs/seccomp.md).
REGISTER_LEARN = MOAT_RUNTIME_NAME=moat-learn MOAT_RUNTIME_ARGS='["--learn-dir","/var/lib/moat/learned"]' bash hack/docker-register.sh
# A test-only docker runtime reading the policy file that
# integration/tests/egress_dns.rs writes (egress needs a policy wider than
# the default; a workload can only narrow it).
REGISTER_EGRESS_DNS_TEST = MOAT_RUNTIME_NAME=moat-test-egress-dns MOAT_RUNTIME_ARGS='["--policy","/run/moat-egress-dns-test.toml"]' bash hack/docker-register.sh

.PHONY: all build probe setup register image images demo test test-cri test-workloads bench lint clean

all: build

# Both binaries moat installs are linked statically (glibc and libseccomp;
# `--target` keeps the flag away from build scripts and proc macros) and
# copied over the dynamic ones `cargo build` leaves in target/release:
#  - moat is executed several times per container (create re-executes itself
#    from a read-only mount, then start, state, delete): without the dynamic
#    loader each exec is about 1 ms cheaper here (docs/benchmarks.md).
#  - containerd-shim-moat-v2 runs once per pod (as Go shims are): it then maps
#    only the parts of glibc it uses instead of the whole shared libc, about
#    1 MiB less resident memory per pod (hack/bench-shim).
# Linking is done on the machine that runs moat, from source, so LGPL's
# relinking terms for glibc and libseccomp are met by the source itself.
HOST_TRIPLE = $(shell $(CARGO) -vV 2>/dev/null | sed -n 's/^host: //p')
STATIC = RUSTFLAGS="-C target-feature=+crt-static" LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$(shell pkg-config --variable=libdir libseccomp 2>/dev/null || echo /usr/lib/$(shell gcc -print-multiarch))

build:
	$(CARGO) build --release
	$(STATIC) $(CARGO) build --release -p moat -p containerd-shim-moat --target $(HOST_TRIPLE)
	install -m 755 target/$(HOST_TRIPLE)/release/moat target/release/moat
	install -m 755 target/$(HOST_TRIPLE)/release/containerd-shim-moat-v2 target/release/containerd-shim-moat-v2

# The probe program of `moat selftest`, static so it runs in any rootfs.
probe:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p moat-probe --target-dir target/probe
	install -D -m 755 target/probe/release/moat-probe /usr/local/lib/moat/moat-probe

setup:
	bash hack/setup.sh

# Helpers for the targets below (also usable directly).
register: setup build
	bash hack/docker-register.sh
	$(REGISTER_LEARN)

image: setup
	bash hack/docker-image.sh

# Debian-based nginx, redis, postgres and python images (cached in
# $(MOAT_CACHE)/images; a fresh build takes about 12 minutes here).
images: setup
	bash hack/images

demo: setup build probe
	bash hack/docker-register.sh
	bash hack/docker-image.sh
	bash hack/demo.sh

test: setup build probe
	bash hack/docker-register.sh
	$(REGISTER_LEARN)
	$(REGISTER_EGRESS_DNS_TEST)
	bash hack/docker-image.sh
	MOAT_IMAGES_CONTAINERD=1 bash hack/images
	bash hack/test.sh
	bash hack/critest.sh
	MOAT_CRITEST_CONTAINERD=$(CONTAINERD2) bash hack/critest.sh

# critest from PATH (else ../shared/tools/cri-tools beside the repository);
# its images are built offline from the busybox rootfs. Once against the
# system's containerd 1.6, once against 2.1 (5 minutes for the three
# handlers on a shared 2-core machine, 10 under heavy load: part of
# `make test` too).
test-cri: setup build
	bash hack/critest.sh
	bash hack/containerd2.sh
	MOAT_CRITEST_CONTAINERD=$(CONTAINERD2) bash hack/critest.sh

# Real workloads under moat; MOAT_DOCKER_RUNTIME picks the docker runtime
# name (default moat).
test-workloads: setup build
	bash hack/docker-register.sh
	MOAT_IMAGES_CONTAINERD=1 bash hack/images
	$(CARGO) test --release -p moat-integration --test workloads --test workloads_cri -- --test-threads=1

# Benchmarks against runc, crun, youki and runsc (not a test, never part of
# `make test`: numbers go to docs/benchmarks.md, and only from an idle
# machine; hack/bench refuses to write it otherwise). hack/bench-peers
# installs the peers from Debian and crates.io (youki: once, into
# /var/cache/moat/youki; a while on 2 cores).
bench: setup build probe
	bash hack/docker-register.sh
	bash hack/docker-image.sh
	BENCH_INSTALL_YOUKI=1 bash hack/bench-peers
	bash hack/bench

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf "$(MOAT_CACHE)/busybox-rootfs" "$(MOAT_CACHE)/busybox-rootfs.tar" "$(MOAT_CACHE)/moat-busybox.stamp"
