#!/usr/bin/env bash
# hack/test.sh — run the whole workspace test suite (unit + integration) in
# release mode, one test at a time (integration tests share docker and the
# host). Integration tests use target/release/moat and the docker image
# moat-busybox (see hack/docker-register.sh, hack/docker-image.sh; `make test`
# prepares both). Exits non-zero if anything fails.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # also puts ~/.cargo/bin on PATH

cd "$REPO_ROOT"
command -v cargo >/dev/null || die "cargo not found (looked in PATH and ~/.cargo/bin)"

log "cargo test --workspace --release --no-fail-fast -- --test-threads=1"
cargo test --workspace --release --no-fail-fast -- --test-threads=1
# containerd 2.1 (fetched into a private directory, never installed over
# the system's 1.6): the CRI pods through both moat handlers, and
# `hostUsers: false` pods (with volumes) in the user namespace containerd
# 2.1 makes itself. (critest on 2.1 runs after this, from the Makefile.)
bash "$HACK_DIR/containerd2.sh"
log "CRI tests on containerd 2.1"
MOAT_CONTAINERD_BIN="${MOAT_CACHE:-/var/cache/moat}/containerd-2.1/usr/bin/containerd" \
    cargo test --release -p moat-integration --test cri -- --test-threads=1 \
    cri_pod_with_runtime_class_moat_is_hardened cri_pod_through_the_native_shim_is_hardened \
    cri_shared_pid_pod cri_host_users_false_pod cri_stopped_container_leaves_no_child_in_a_shared_pid_pod \
    cri_killed_shim_is_reported_and_cleaned_up
log "all tests passed"
