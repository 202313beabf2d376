#!/usr/bin/env bash
# hack/docker-register.sh [PATH_TO_MOAT] — install the moat binary as
# /usr/local/bin/moat (default source: target/release/moat in the repo) and
# register it as docker runtime "moat" in /etc/docker/daemon.json, merging
# with whatever is there (backup: daemon.json.moat-bak, made once). If the
# config changed or dockerd doesn't list the runtime yet, SIGHUP dockerd and
# wait until `docker info` shows it. Starts the daemons (hack/setup.sh) if
# dockerd isn't running.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root

[[ $# -le 1 ]] || die "usage: $0 [PATH_TO_MOAT]"
src="${1:-$REPO_ROOT/target/release/moat}"
DEST="${MOAT_INSTALL_PATH:-/usr/local/bin/moat}"
DAEMON_JSON="${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}"
# Overridable so a second entry (e.g. `moat-learn` with runtimeArgs, or a
# developer's work tree) can be registered beside the default one.
RUNTIME_NAME="${MOAT_RUNTIME_NAME:-moat}"
# Optional JSON array of extra arguments docker passes before the command.
RUNTIME_ARGS="${MOAT_RUNTIME_ARGS:-}"

[[ -f $src && -x $src ]] || die "moat binary not found or not executable: $src (run 'make build' first)"

# --- 1. install the binary ----------------------------------------------------
# Copy to a temp file in the same directory, then rename over the old one: a
# running /usr/local/bin/moat keeps its (now unlinked) inode, nothing is
# rewritten in place ("text file busy").
if cmp -s "$src" "$DEST"; then
    log "$DEST is up to date"
else
    mkdir -p "$(dirname "$DEST")"
    tmp="$(mktemp "$(dirname "$DEST")/.moat.XXXXXX")"
    trap 'rm -f "$tmp"' EXIT
    cp "$src" "$tmp"
    chmod 0755 "$tmp"
    mv -f "$tmp" "$DEST"
    trap - EXIT
    log "installed $src -> $DEST"
fi

# --- 2. make sure dockerd is running ----------------------------------------
if ! docker_ok; then
    log "dockerd is not answering; running hack/setup.sh"
    bash "$HACK_DIR/setup.sh"
fi

# --- 3. merge the runtime into daemon.json ------------------------------------
mkdir -p "$(dirname "$DAEMON_JSON")"
changed=0
if [[ -s $DAEMON_JSON ]]; then
    jq -e 'type == "object"' "$DAEMON_JSON" >/dev/null 2>&1 \
        || die "$DAEMON_JSON is not a JSON object; fix it by hand (not touching it)"
fi
if [[ -n $RUNTIME_ARGS ]]; then
    jq -e 'type == "array" and all(type == "string")' <<<"$RUNTIME_ARGS" >/dev/null 2>&1 \
        || die "MOAT_RUNTIME_ARGS must be a JSON array of strings: $RUNTIME_ARGS"
fi
want_args="${RUNTIME_ARGS:-null}"
if [[ -s $DAEMON_JSON ]] && jq -e --arg n "$RUNTIME_NAME" --arg p "$DEST" --argjson a "$want_args" \
    '.runtimes[$n].path == $p and ($a == null or .runtimes[$n].runtimeArgs == $a)' "$DAEMON_JSON" >/dev/null; then
    log "$DAEMON_JSON already registers runtime $RUNTIME_NAME -> $DEST"
else
    if [[ -e $DAEMON_JSON && ! -e $DAEMON_JSON.moat-bak ]]; then
        cp -p "$DAEMON_JSON" "$DAEMON_JSON.moat-bak"
        log "backed up $DAEMON_JSON to $DAEMON_JSON.moat-bak"
    fi
    tmp="$(mktemp "$DAEMON_JSON.XXXXXX")"
    trap 'rm -f "$tmp"' EXIT
    # Only .runtimes.<name>.path (and runtimeArgs when given) is set; other
    # keys are kept.
    if [[ -s $DAEMON_JSON ]]; then cat "$DAEMON_JSON"; else echo '{}'; fi \
        | jq --arg n "$RUNTIME_NAME" --arg p "$DEST" --argjson a "$want_args" \
            '.runtimes[$n].path = $p | if $a == null then . else .runtimes[$n].runtimeArgs = $a end' >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$DAEMON_JSON"
    trap - EXIT
    changed=1
    log "registered runtime $RUNTIME_NAME -> $DEST in $DAEMON_JSON"
fi

# --- 4. reload dockerd --------------------------------------------------------
runtime_listed() {
    timeout 10 "$DOCKER" info --format '{{json .Runtimes}}' 2>/dev/null \
        | jq -e --arg n "$RUNTIME_NAME" 'has($n)' >/dev/null
}

dockerd_pid() {
    local pidfile="$MOAT_RUN_DIR/dockerd.pid" pid pids
    if [[ -s $pidfile ]]; then
        pid="$(<"$pidfile")"
        if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]]; then
            echo "$pid"
            return
        fi
    fi
    pids="$(pidof dockerd || true)"
    [[ -n $pids ]] || die "dockerd is not running"
    [[ $pids != *" "* ]] || die "several dockerd processes ($pids); don't know which to reload"
    echo "$pids"
}

if ((changed)) || ! runtime_listed; then
    pid="$(dockerd_pid)"
    log "reloading dockerd (SIGHUP to pid $pid)"
    kill -HUP "$pid"
    if ! wait_until 30 "dockerd to list runtime $RUNTIME_NAME" runtime_listed; then
        log "dockerd did not pick up the runtime; check $DAEMON_JSON and /var/log/moat-dockerd.log:"
        tail -n 10 /var/log/moat-dockerd.log >&2 2>/dev/null || true
        exit 1
    fi
fi
log "docker runtimes: $("$DOCKER" info --format '{{json .Runtimes}}' | jq -c 'keys')"
