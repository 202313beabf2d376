#!/usr/bin/env bash
# hack/demo.sh — show moat at work: `moat explain` on a fresh busybox OCI
# bundle, then a container run through docker with --runtime=moat that prints
# its capabilities, no_new_privs, seccomp mode, uid map and whether the rootfs
# is writable. Expects `make setup build`, hack/docker-register.sh and
# hack/docker-image.sh to have run (`make demo` does all of that).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -n ${MOAT:-} ]]; then
    :
elif [[ -x $REPO_ROOT/target/release/moat ]]; then
    MOAT="$REPO_ROOT/target/release/moat"
else
    MOAT="$(command -v moat)" || die "no moat binary; run 'make build'"
fi
IMAGE="${MOAT_IMAGE:-moat-busybox}"

banner() {
    local line="=================================================================="
    printf '\n%s\n  %s\n%s\n' "$line" "$*" "$line"
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

version="$("$MOAT" --version 2>/dev/null | head -n1 || true)"
banner "moat demo: sandboxed OCI runtime (${version:-$MOAT})"

banner "1. moat explain: what moat will do to a plain 'runc spec' bundle"
bash "$HACK_DIR/mkbundle.sh" "$work/bundle" 2>/dev/null
"$MOAT" explain "$work/bundle"

banner "2. docker run --runtime=moat $IMAGE"
"$DOCKER" run --rm --runtime=moat "$IMAGE" sh -c \
    'cat /proc/self/status | grep -E "^(Cap|NoNewPrivs|Seccomp)"; cat /proc/self/uid_map; touch /x || echo rootfs is read-only'

banner "demo done"
