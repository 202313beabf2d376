#!/usr/bin/env bash
# hack/cri-images.sh OUT.tar — the images the CRI test (integration/tests/cri.rs)
# imports into its own containerd, saved as one `docker save` archive:
#   moat-busybox:latest  the test image (hack/docker-image.sh builds it)
#   moat-pause:latest    the pod sandbox ("pause") image: the same busybox
#                        rootfs whose only process sleeps until it is told
#                        to stop. There is no registry here, so the usual
#                        registry.k8s.io/pause cannot be pulled.
# Idempotent: moat-pause is re-imported only when the rootfs or its command
# changed (label moat.rootfs.sha256, as in docker-image.sh).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root

[[ $# -eq 1 ]] || die "usage: $0 OUT.tar"
out="$1"
PAUSE_IMAGE="${MOAT_PAUSE_IMAGE:-moat-pause:latest}"
LABEL=moat.rootfs.sha256
# The sandbox process: pid 1 of the pod, does nothing, exits on TERM/INT.
# Sleeping in a background job lets the shell run its trap at once.
PAUSE_CMD='trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'
CHANGES=(
    --change "CMD [\"/bin/sh\", \"-c\", \"${PAUSE_CMD//\"/\\\"}\"]"
    --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin'
)

# One at a time: parallel CRI tests would race on the cached rootfs tar.
mkdir -p "$MOAT_CACHE"
exec 9>"$MOAT_CACHE/.cri-images.lock"
flock 9

busybox_image="$(bash "$HACK_DIR/docker-image.sh")"
tarball="$MOAT_CACHE/busybox-rootfs.tar"
[[ -s $tarball ]] || die "$tarball missing after docker-image.sh"

stamp="$({ sha256sum <"$tarball" | cut -d' ' -f1; printf '%s\n' "${CHANGES[@]}"; } | sha256sum | cut -d' ' -f1)"
current="$("$DOCKER" image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$PAUSE_IMAGE" 2>/dev/null || true)"
if [[ $current == "$stamp" ]]; then
    log "$PAUSE_IMAGE is up to date ($LABEL=${stamp:0:12})"
else
    log "importing $PAUSE_IMAGE ($LABEL=${stamp:0:12})"
    "$DOCKER" import "${CHANGES[@]}" --change "LABEL $LABEL=$stamp" \
        --message "moat pod sandbox image (hack/cri-images.sh)" "$tarball" "$PAUSE_IMAGE" >/dev/null
fi

tmp="$(mktemp "$out.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"$DOCKER" save -o "$tmp" "$busybox_image" "$PAUSE_IMAGE"
mv -f "$tmp" "$out"
trap - EXIT
log "saved $busybox_image and $PAUSE_IMAGE to $out"
