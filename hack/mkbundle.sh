#!/usr/bin/env bash
# hack/mkbundle.sh OUTDIR [ARGS...] — make an OCI bundle: OUTDIR/rootfs (busybox,
# via hack/mkrootfs.sh) and OUTDIR/config.json from `runc spec`, patched with
# jq so process.args = ARGS (default: /bin/sh -c 'echo hello from moat') and
# process.terminal = false. Re-running regenerates config.json (cheap) and
# leaves an up-to-date rootfs alone.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 1 ]] || die "usage: $0 OUTDIR [ARGS...]"
out="$1"
shift
if (($# == 0)); then
    set -- /bin/sh -c 'echo hello from moat'
fi
command -v runc >/dev/null || die "runc not found (run hack/setup.sh)"

mkdir -p "$out"
bash "$HACK_DIR/mkrootfs.sh" "$out/rootfs"

# `runc spec` refuses to overwrite config.json, so generate it in a scratch
# dir and move the patched result into place.
spec_dir="$(mktemp -d)"
trap 'rm -rf "$spec_dir"' EXIT
(cd "$spec_dir" && runc spec)
# Build the args array one --arg at a time: `jq --args` would still parse
# things like "-c" as jq options (jq 1.6).
args_json="$(for a in "$@"; do jq -n --arg a "$a" '$a'; done | jq -cs .)"
jq --argjson args "$args_json" '.process.args = $args | .process.terminal = false' \
    <"$spec_dir/config.json" >"$spec_dir/config.json.new"
mv -f "$spec_dir/config.json.new" "$out/config.json"
log "bundle ready: $out (args: $(jq -c .process.args "$out/config.json"))"
