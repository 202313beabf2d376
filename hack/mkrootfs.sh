#!/usr/bin/env bash
# hack/mkrootfs.sh OUTDIR — build a minimal busybox root filesystem in OUTDIR
# from Debian's static /bin/busybox (package busybox-static): bin/busybox, a
# bin/ symlink per applet, the usual top-level dirs, and a tiny /etc.
# Idempotent: does nothing if OUTDIR/bin/busybox is identical to /bin/busybox.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 1 ]] || die "usage: $0 OUTDIR"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
out="$1"

[[ -x $BUSYBOX ]] || die "$BUSYBOX not found (apt-get install busybox-static, or run hack/setup.sh)"
if ! file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' \
    && ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked; need the busybox-static package"
fi

mkdir -p "$out"
out="$(cd "$out" && pwd -P)"
[[ $out != / ]] || die "refusing to build a rootfs in /"

if cmp -s "$BUSYBOX" "$out/bin/busybox"; then
    log "$out is up to date"
    exit 0
fi
log "building busybox rootfs in $out"

# Directories (mode matters for /tmp and /root).
for d in bin etc run proc sys dev home var usr usr/bin usr/sbin sbin; do
    install -d -m 0755 "$out/$d"
done
install -d -m 1777 "$out/tmp"
install -d -m 0700 "$out/root"

# /etc
printf '%s\n' \
    'root:x:0:0:root:/root:/bin/sh' \
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$out/etc/passwd"
printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$out/etc/group"
chmod 0644 "$out/etc/passwd" "$out/etc/group"
for f in hostname hosts resolv.conf; do
    : >"$out/etc/$f"
    chmod 0644 "$out/etc/$f"
done

# Applet symlinks, all in /bin (relative, so they work inside the container).
"$BUSYBOX" --list | while read -r applet; do
    [[ -n $applet && $applet != busybox && $applet != */* ]] || continue
    ln -sfn busybox "$out/bin/$applet"
done

# The binary goes in last: its presence marks a complete rootfs.
install -m 0755 "$BUSYBOX" "$out/bin/.busybox.tmp"
mv -f "$out/bin/.busybox.tmp" "$out/bin/busybox"

chown -hR 0:0 "$out"
log "done: $(find "$out/bin" -type l | wc -l) applets"
