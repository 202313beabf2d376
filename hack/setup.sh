#!/usr/bin/env bash
# hack/setup.sh — install the host packages moat needs (Debian apt) and make
# sure containerd and dockerd are running. No systemd here: the daemons are
# started in the background with setsid; pid files go to /run/moat-hack/,
# logs to /var/log/moat-{containerd,dockerd}.log. Idempotent: a second run
# does no apt work and leaves running daemons alone.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root

PACKAGES=(containerd docker.io runc busybox-static libseccomp-dev nftables pkg-config jq iproute2 containernetworking-plugins)
CONTAINERD_SOCK=/run/containerd/containerd.sock
START_TIMEOUT=30

# --- packages ---------------------------------------------------------------
pkg_installed() {
    # Same information as `dpkg -s`, but only "install ok installed" counts
    # (dpkg -s also succeeds for removed packages with leftover config files).
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for p in "${PACKAGES[@]}"; do
    pkg_installed "$p" || missing+=("$p")
done

# MOAT_SETUP_FORCE_APT=1 runs the apt step even if everything is installed.
if ((${#missing[@]})) || [[ ${MOAT_SETUP_FORCE_APT:-0} == 1 ]]; then
    log "missing packages: ${missing[*]:-(none, forced)}; installing"
    # Keep package maintainer scripts (docker.io's postinst) from starting
    # daemons themselves; we start them below with known pid/log files.
    # Only install a policy-rc.d if there is none, and remove only our own.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, written by moat hack/setup.sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${PACKAGES[@]}"
    if [[ -e $policy ]] && grep -q 'moat hack/setup.sh' "$policy"; then
        rm -f "$policy"
    fi
    trap - EXIT
else
    log "packages already installed"
fi

# --- daemons ----------------------------------------------------------------
mkdir -p "$MOAT_RUN_DIR"

containerd_ok() { timeout 5 ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }

# pid_alive PIDFILE COMM: the pid file names a live process called COMM.
pid_alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid="$(<"$1")"
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]]
}

# start_daemon NAME PIDFILE LOGFILE CHECKFN CMD...
start_daemon() {
    local name="$1" pidfile="$2" logfile="$3" check="$4"
    shift 4
    if "$check"; then
        log "$name already running"
        return 0
    fi
    if pid_alive "$pidfile" "$name"; then
        log "$name (pid $(<"$pidfile")) started earlier but not answering yet; waiting"
    else
        rm -f "$pidfile"
        log "starting $name (log: $logfile)"
        printf '\n==== %s: starting %s ====\n' "$(date -Is)" "$*" >>"$logfile"
        # The inner bash writes its own pid and execs the daemon, so the pid
        # file holds the daemon's pid whether or not setsid had to fork.
        # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
        setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' moat-start "$pidfile" "$@" \
            </dev/null >>"$logfile" 2>&1 &
        wait_until 5 "$name pid file" test -s "$pidfile" || true
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until "$check"; do
        if ! pid_alive "$pidfile" "$name"; then
            # Give it a moment: the pid file can briefly point at the bash
            # wrapper before exec.
            sleep 1
            if ! pid_alive "$pidfile" "$name" && ! "$check"; then
                log "$name exited; last lines of $logfile:"
                tail -n 20 "$logfile" >&2 || true
                return 1
            fi
        fi
        if ((SECONDS >= deadline)); then
            log "$name did not answer within ${START_TIMEOUT}s; last lines of $logfile:"
            tail -n 20 "$logfile" >&2 || true
            return 1
        fi
        sleep 0.5
    done
    log "$name is up (pid $(<"$pidfile"))"
}

start_daemon containerd "$MOAT_RUN_DIR/containerd.pid" /var/log/moat-containerd.log \
    containerd_ok containerd

start_daemon dockerd "$MOAT_RUN_DIR/dockerd.pid" /var/log/moat-dockerd.log \
    docker_ok dockerd --containerd="$CONTAINERD_SOCK"

# containerd 2.1 for the containerd 2 tests (MOAT_CONTAINERD_BIN), in its own directory.
bash "$(dirname "$0")/containerd2.sh" || log "containerd 2.1 was not fetched: the containerd 2 tests cannot run"

log "ready: $("$DOCKER" version --format 'docker client {{.Client.Version}}, server {{.Server.Version}}')"
