# hack/lib.sh — helpers shared by the hack/*.sh scripts (sourced, not run).
# Provides: REPO_ROOT, DOCKER (Debian's /usr/bin/docker client), MOAT_CACHE,
# log/die, wait_until, and PATH fixes (/usr/sbin, ~/.cargo/bin).
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
