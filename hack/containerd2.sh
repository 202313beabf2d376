#!/usr/bin/env bash
# Fetches Debian's containerd 2.1.x (unstable suite) into a private
# directory for the containerd 2 tests, never installing it over the
# system's containerd 1.6: a private apt sources list, lists and cache
# (apt-get download), then dpkg -x. Idempotent: does nothing when the
# binaries are already there.
#
#   DEST (default /var/cache/moat/containerd-2.1)/usr/bin/containerd
#   integration/src/containerd.rs runs it when MOAT_CONTAINERD_BIN names it.
set -euo pipefail

DEST=${DEST:-/var/cache/moat/containerd-2.1}
BIN="$DEST/usr/bin/containerd"
if [[ -x $BIN ]] && "$BIN" --version 2>/dev/null | grep -q ' v\?2\.1\.'; then
    echo "containerd 2.1 already at $BIN"
    exit 0
fi

APT=$(mktemp -d /tmp/moat-apt-unstable.XXXXXX)
trap 'rm -rf "$APT"' EXIT
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/etc/preferences.d" "$APT/etc/sources.list.d"
cat >"$APT/etc/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian unstable main
SRC
opts=(
    -o "Dir::Etc::SourceList=$APT/etc/sources.list"
    -o "Dir::Etc::SourceParts=$APT/etc/sources.list.d"
    -o "Dir::Etc::Preferences=$APT/etc/preferences"
    -o "Dir::Etc::PreferencesParts=$APT/etc/preferences.d"
    -o "Dir::State::Lists=$APT/lists"
    -o "Dir::State::Status=/dev/null"
    -o "Dir::Cache=$APT/cache"
    -o "APT::Get::List-Cleanup=0"
)
apt-get "${opts[@]}" update -qq
version=$(apt-cache "${opts[@]}" policy containerd | awk '/Candidate:/ {print $2}')
case "$version" in
2.1.*) ;;
*) echo "containerd2.sh: unstable offers containerd $version, not 2.1.x" >&2; exit 1 ;;
esac
(cd "$APT" && apt-get "${opts[@]}" download "containerd=$version")
rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
dpkg -x "$APT"/containerd_*.deb "$DEST.tmp"
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
"$BIN" --version
