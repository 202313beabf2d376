#!/usr/bin/env bash
# hack/docker-register.sh [PATH_TO_MOAT] — install the moat binary as
# /usr/local/bin/moat (default source: target/release/moat in the repo) and
# register it as docker runtime "moat" with `moat install docker` (merged
# into /etc/docker/daemon.json, backup daemon.json.moat-bak made once). If
# the config changed or dockerd doesn't list the runtime yet, SIGHUP dockerd
# and wait until `docker info` shows it. Starts the daemons (hack/setup.sh)
# if dockerd isn't running.
#
# Environment: MOAT_RUNTIME_NAME (default moat), MOAT_INSTALL_PATH (default
# /usr/local/bin/moat), MOAT_RUNTIME_ARGS (a JSON array of arguments docker
# passes before the command), DOCKER_DAEMON_JSON.
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
# The installed binary is made immutable (chattr +i, FS_IMMUTABLE_FL): no one,
# host root included, can then open it for writing until host root clears the
# flag, so moat skips its CVE-2019-5736 re-exec (T14, runtime/src/self_exe.rs).
# An immutable file cannot be renamed over: the flag is cleared first. Where
# the filesystem has no such flag, moat keeps re-executing itself.
if cmp -s "$src" "$DEST"; then
    log "$DEST is up to date"
else
    mkdir -p "$(dirname "$DEST")"
    tmp="$(mktemp "$(dirname "$DEST")/.moat.XXXXXX")"
    trap 'rm -f "$tmp"' EXIT
    cp "$src" "$tmp"
    chmod 0755 "$tmp"
    if [[ -e $DEST ]]; then chattr -i "$DEST" 2>/dev/null || true; fi
    mv -f "$tmp" "$DEST"
    trap - EXIT
    log "installed $src -> $DEST"
fi
chattr +i "$DEST" 2>/dev/null || log "cannot make $DEST immutable: moat re-executes itself from a read-only mount instead"

# --- 2. make sure dockerd is running ----------------------------------------
if ! docker_ok; then
    log "dockerd is not answering; running hack/setup.sh"
    bash "$HACK_DIR/setup.sh"
fi

# --- 3. register the runtime: `moat install docker` -------------------------
# The installed binary merges .runtimes.<name> (path, runtimeArgs) into
# daemon.json, keeping every other key, with a backup made once
# (daemon.json.moat-bak). The script only copies the binary, starts dockerd
# and reloads it, which moat install leaves to the operator.
install_args=(install docker --config "$DAEMON_JSON" --name "$RUNTIME_NAME" --binary "$DEST")
if [[ -n $RUNTIME_ARGS ]]; then
    jq -e 'type == "array" and all(type == "string")' <<<"$RUNTIME_ARGS" >/dev/null 2>&1 \
        || die "MOAT_RUNTIME_ARGS must be a JSON array of strings: $RUNTIME_ARGS"
    while IFS= read -r arg; do
        install_args+=("--runtime-arg=$arg")
    done < <(jq -r '.[]' <<<"$RUNTIME_ARGS")
fi
before="$(cat "$DAEMON_JSON" 2>/dev/null || true)"
"$DEST" "${install_args[@]}" >&2
changed=0
[[ "$(cat "$DAEMON_JSON" 2>/dev/null || true)" == "$before" ]] || changed=1

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
