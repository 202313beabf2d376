#!/usr/bin/env bash
# hack/docker-image.sh — build the busybox rootfs (cached in
# ${MOAT_CACHE:-/var/cache/moat}/busybox-rootfs), tar it reproducibly and
# `docker import` it as moat-busybox:latest. Skips the import when the image
# exists and carries the same content stamp (sha256 of the tar + the import
# options, stored as image label moat.rootfs.sha256). Prints the image name.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root

IMAGE="${MOAT_IMAGE:-moat-busybox:latest}"
LABEL=moat.rootfs.sha256
rootfs="$MOAT_CACHE/busybox-rootfs"
tarball="$MOAT_CACHE/busybox-rootfs.tar"
CHANGES=(
    --change 'CMD ["/bin/sh"]'
    --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin'
)

docker_ok || die "docker is not answering; run hack/setup.sh (or make setup)"

mkdir -p "$MOAT_CACHE"
bash "$HACK_DIR/mkrootfs.sh" "$rootfs"

# Reproducible tar: sorted names, fixed mtime and ownership, no atime/ctime,
# so the same rootfs always hashes the same.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$rootfs" -cf "$tarball.tmp" .
mv -f "$tarball.tmp" "$tarball"
stamp="$({ sha256sum <"$tarball" | cut -d' ' -f1; printf '%s\n' "${CHANGES[@]}"; } | sha256sum | cut -d' ' -f1)"

current="$("$DOCKER" image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$IMAGE" 2>/dev/null || true)"
if [[ $current == "$stamp" ]]; then
    log "$IMAGE is up to date ($LABEL=${stamp:0:12})"
else
    log "importing $IMAGE (${current:+replacing ${current:0:12}, }$LABEL=${stamp:0:12})"
    "$DOCKER" import "${CHANGES[@]}" --change "LABEL $LABEL=$stamp" \
        --message "moat busybox rootfs (hack/docker-image.sh)" "$tarball" "$IMAGE" >/dev/null
    echo "$stamp" >"$MOAT_CACHE/moat-busybox.stamp"
fi
echo "$IMAGE"
