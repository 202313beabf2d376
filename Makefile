# Makefile for moat. Recipes only call cargo or hack/ scripts; the logic lives
# in the scripts.
#   make build   - cargo build --release (target/release/moat and
#                  target/release/containerd-shim-moat-v2)
#   make setup   - install host packages, start containerd + dockerd
#   make demo    - register moat with docker, import moat-busybox, run demo
#   make test    - same preparation, then the whole cargo test suite
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

.PHONY: all build probe setup register image demo test bench lint clean

all: build

build:
	$(CARGO) build --release

# The probe program of `moat selftest`, static so it runs in any rootfs.
probe:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p moat-probe --target-dir target/probe
	install -D -m 755 target/probe/release/moat-probe /usr/local/lib/moat/moat-probe

setup:
	bash hack/setup.sh

# Helpers for the targets below (also usable directly).
register: setup build
	bash hack/docker-register.sh

image: setup
	bash hack/docker-image.sh

demo: setup build probe
	bash hack/docker-register.sh
	bash hack/docker-image.sh
	bash hack/demo.sh

test: setup build probe
	bash hack/docker-register.sh
	bash hack/docker-image.sh
	bash hack/test.sh

# Benchmarks against runc (not a test: numbers go to docs/benchmarks.md).
bench: setup build
	bash hack/docker-register.sh
	bash hack/docker-image.sh
	bash hack/bench

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf "$(MOAT_CACHE)/busybox-rootfs" "$(MOAT_CACHE)/busybox-rootfs.tar" "$(MOAT_CACHE)/moat-busybox.stamp"
