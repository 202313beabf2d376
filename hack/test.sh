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
log "all tests passed"
