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
bash "$HACK_DIR/mkbundle.sh" "$work/bundle" /bin/sh -c \
    'grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status; echo "uid_map: $(cat /proc/self/uid_map)"; touch /x 2>/dev/null || echo "rootfs: read-only"' \
    >/dev/null 2>&1
"$MOAT" explain "$work/bundle"

banner "2. moat run of that bundle: the sandbox seen from inside"
"$MOAT" --root "$work/state" run --bundle "$work/bundle" "moat-demo-$$"

banner "3. docker run --runtime=moat $IMAGE, and its hardening report"
name="moat-demo-$$"
cleanup() { "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
"$DOCKER" run -d --name "$name" --runtime=moat "$IMAGE" sleep 300 >/dev/null
id="$("$DOCKER" inspect -f '{{.Id}}' "$name")"
"$MOAT" --root /var/run/docker/runtime-runc/moby report "$id"
echo
echo "--- inside, through docker exec (also sandboxed):"
"$DOCKER" exec "$name" sh -c \
    'grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status; echo "uid_map: $(cat /proc/self/uid_map)"; touch /x 2>/dev/null || echo "rootfs: read-only"; cat /proc/kcore 2>/dev/null | head -c1 | wc -c | sed "s/^/bytes readable from \/proc\/kcore: /"'
"$DOCKER" rm -f "$name" >/dev/null

banner "4. what moat refuses: docker run --privileged"
if "$DOCKER" run --rm --runtime=moat --privileged "$IMAGE" true 2>"$work/err"; then
    die "moat accepted a privileged container"
fi
sed 's/^/  /' "$work/err"

banner "5. moat selftest: escape and abuse probes under moat and runc"
"$MOAT" selftest --probe /usr/local/lib/moat/moat-probe || die "moat selftest failed"

banner "demo done"
