# hack/lib.sh — helpers shared by the hack/*.sh scripts (sourced, not run).
# Provides: REPO_ROOT, DOCKER (Debian's /usr/bin/docker client), MOAT_CACHE,
# log/die, wait_until, private_containerd_config, and PATH fixes
# (/usr/sbin, ~/.cargo/bin).
# shellcheck disable=SC2034  # variables are used by the sourcing scripts

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HACK_DIR="$REPO_ROOT/hack"
# Use Debian's docker client explicitly: /usr/local/bin/docker may be a newer
# client than the Debian daemon.
DOCKER="${DOCKER:-/usr/bin/docker}"
MOAT_CACHE="${MOAT_CACHE:-/var/cache/moat}"
MOAT_RUN_DIR="/run/moat-hack"

case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac
if [[ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ]]; then
    case ":$PATH:" in
        *":${CARGO_HOME:-$HOME/.cargo}/bin:"*) ;;
        *) PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH" ;;
    esac
fi
export PATH

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_until SECONDS DESCRIPTION CMD...: poll CMD (quietly) every 0.5 s until
# it succeeds; fail after SECONDS.
wait_until() {
    local timeout="$1" what="$2"; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "timed out after ${timeout}s waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}

require_root() { [[ $EUID -eq 0 ]] || die "must run as root"; }

docker_ok() { timeout 10 "$DOCKER" info >/dev/null 2>&1; }

# private_containerd_config DIR SOCK [--no-cri] [--version 3]: the start of
# the config.toml of a containerd a script runs for itself: root, state,
# plugin directory and sockets under DIR, never the host's. Version 2 (the
# default) is containerd 1.x's format, version 3 containerd 2.x's; the
# tables written here are spelled the same in both. The caller appends its
# CRI tables, or passes --no-cri (1.x) to turn the CRI plugin off. (The
# integration tests render theirs, for 1.x and 2.x, in
# integration/src/containerd/config.rs.)
private_containerd_config() {
    local dir="$1" sock="$2" no_cri="" version=2
    shift 2
    while (($#)); do
        case "$1" in
            --no-cri) no_cri=1; shift ;;
            --version) version="$2"; shift 2 ;;
            *) die "private_containerd_config: unknown argument $1" ;;
        esac
    done
    [[ $version == 2 || $version == 3 ]] || die "private_containerd_config: no config version $version"
    printf '# A private containerd (%s).\nversion = %s\nroot = "%s/root"\nstate = "%s/state"\n' \
        "$(basename "$0")" "$version" "$dir" "$dir"
    if [[ -n $no_cri ]]; then
        printf 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
    fi
    printf '\n[grpc]\n  address = "%s"\n\n[ttrpc]\n  address = "%s.ttrpc"\n' "$sock" "$sock"
    printf '\n[plugins."io.containerd.internal.v1.opt"]\n  path = "%s/opt"\n' "$dir"
}
