#!/usr/bin/env bash
# hack/critest.sh [HANDLER...] — Kubernetes' CRI conformance suite (critest,
# cri-tools v1.32.0) against a PRIVATE containerd, once per runtime handler
# (default: runc moat moat-shim), as a cluster operator adopting moat as a
# RuntimeClass would run it:
#   runc       containerd's runc shim + runc (the control)
#   moat       containerd's runc shim with BinaryName = this build's moat
#   moat-shim  moat's own shim, this build's
#              target/release/containerd-shim-moat-v2 by absolute path
#              (runtime_path), which runs the moat beside it; type
#              io.containerd.moat.v2 on containerd 1.x, io.containerd.runc.v2
#              on 2.x (moat install containerd --shim)
# The containerd has its own root, state, socket, CNI bridge and subnet and
# moat state roots, all under one temporary directory; the images critest
# pulls are built offline and served on 127.0.0.1 (hack/critest-registry.py,
# registry mirrors for registry.k8s.io and gcr.io). Everything it started is
# ended by PID and everything it made is removed on exit, also on failure.
#
# A handler's failure is intended only when hack/critest-expected-failures.txt
# lists it for that handler and containerd release (test name, reason, threat
# id). Any other failure, or a leak after the run (pods, shims, mounts, netns,
# moat state), fails the script.
# Results: $MOAT_CRITEST_OUT (default target/critest/containerd-<major.minor>)
# /<handler>.json and summary.md (the table docs/kubernetes.md shows).
# Environment: MOAT_CRITEST_FOCUS (a ginkgo focus regexp, for quick runs);
# MOAT_CRITEST_CONTAINERD (the containerd binary to test against, default
# PATH's, Debian's 1.6; hack/containerd2.sh fetches 2.1 into
# /var/cache/moat/containerd-2.1/usr/bin/containerd). containerd 2.x gets a
# version 3 config (registry mirrors as hosts.toml files under `config_path`)
# and runs its own containerd-shim-runc-v2, from beside the binary.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root

cd "$REPO_ROOT"
HANDLERS=("$@")
((${#HANDLERS[@]})) || HANDLERS=(runc moat moat-shim)
EXPECTED="$HACK_DIR/critest-expected-failures.txt"
MOAT="$REPO_ROOT/target/release/moat"
SHIM="$REPO_ROOT/target/release/containerd-shim-moat-v2"

# critest and crictl from PATH; the tested build (v1.32.0) beside the
# repository for CI (../shared/tools/cri-tools, see its README).
if ! command -v critest >/dev/null || ! command -v crictl >/dev/null; then
    for d in "$REPO_ROOT/../shared/tools/cri-tools" /work/shared/tools/cri-tools; do
        if [[ -x $d/critest && -x $d/crictl ]]; then PATH="$d:$PATH"; break; fi
    done
fi
command -v critest >/dev/null || die "critest not on PATH (cri-tools v1.32.0)"
command -v crictl >/dev/null || die "crictl not on PATH (cri-tools v1.32.0)"
CONTAINERD="$(command -v "${MOAT_CRITEST_CONTAINERD:-containerd}")" ||
    die "containerd not found: ${MOAT_CRITEST_CONTAINERD:-containerd on PATH (make setup)}"
[[ -x $MOAT && -x $SHIM ]] || die "build first: cargo build --release"
# "containerd <url> v2.1.9 <commit>" or Debian's "containerd <url> 1.6.20~ds1 <commit>".
cd_version="$("$CONTAINERD" --version | awk '{print $3}')"
cd_version="${cd_version#v}"
cd_major="${cd_version%%.*}"
cd_minor="${cd_version#*.}"
cd_minor="${cd_minor%%[!0-9]*}"
[[ $cd_major =~ ^[0-9]+$ && $cd_minor =~ ^[0-9]+$ ]] || die "cannot read the version of $CONTAINERD"
CD_RELEASE="$cd_major.$cd_minor"
OUT="${MOAT_CRITEST_OUT:-$REPO_ROOT/target/critest/containerd-$CD_RELEASE}"
mkdir -p "$OUT"
log "containerd $cd_version ($CONTAINERD)"
BUILD_MOAT="$MOAT" BUILD_SHIM="$SHIM"

dir="$(mktemp -d /tmp/moat-critest.XXXXXX)"
sock="$dir/containerd.sock"
pids=()
bridge="mcri$$"
bridge="${bridge:0:15}"
cleanup() {
    local rc=$?
    set +e
    if [[ -S $sock ]]; then
        # Pods critest left behind (a test that failed before its clean-up).
        for p in $(crictl --runtime-endpoint "unix://$sock" pods -q 2>/dev/null); do
            crictl --runtime-endpoint "unix://$sock" stopp "$p" >/dev/null 2>&1
            crictl --runtime-endpoint "unix://$sock" rmp -f "$p" >/dev/null 2>&1
        done
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null
    done
    # Shims of this containerd (they name its socket in their arguments).
    for pid in $(shim_pids); do kill -9 "$pid" 2>/dev/null; done
    grep -F " $dir/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    ip link del "$bridge" 2>/dev/null
    # containerd's log, for failures (OUT is set once the version is known).
    [[ -z ${OUT:-} ]] || cp "$dir/containerd.log" "$OUT/containerd.log" 2>/dev/null
    rm -rf "$dir"
    exit "$rc"
}
trap cleanup EXIT INT TERM

shim_pids() {
    local p
    for p in /proc/[0-9]*; do
        { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "-address $sock " && echo "${p#/proc/}"
    done
    return 0
}

# moat state entries below a state root (its private @moat directory may
# stay, empty).
state_left() {
    local d="$1"
    [[ -d $d ]] || return 0
    find "$d" -mindepth 1 -maxdepth 1 ! -name @moat -printf '%f '
    [[ ! -d $d/@moat ]] || find "$d/@moat" -mindepth 1 -maxdepth 1 -printf '@moat/%f '
}

# A /24 under 10.214.0.0/16 that no address or route uses.
subnet=""
for i in $(seq 0 239); do
    cand="10.214.$(((${$} + i) % 240 + 10))"
    if ! ip -4 route show table all | grep -qF "$cand." && ! ip -4 -o addr show | grep -qF "$cand."; then
        subnet="$cand"; break
    fi
done
[[ -n $subnet ]] || die "no free /24 in 10.214.0.0/16"

# A copy of this build, so a rebuild during the run does not mix versions;
# the shim runs the moat beside it.
install -D -m 755 "$BUILD_MOAT" "$dir/bin/moat"
install -D -m 755 "$BUILD_SHIM" "$dir/bin/containerd-shim-moat-v2"
MOAT="$dir/bin/moat" SHIM="$dir/bin/containerd-shim-moat-v2"

# The setuid program of critest's no_new_privs test (nonewprivs image).
printf '%s\n' '#include <stdio.h>' '#include <unistd.h>' \
    'int main(void) { printf("Effective uid: %d\n", (int)geteuid()); return 0; }' >"$dir/nnp.c"
gcc -static -O2 -o "$dir/nnp" "$dir/nnp.c"

# The busybox rootfs every image starts from (hack/mkrootfs.sh), as a tar.
bash "$HACK_DIR/mkrootfs.sh" "$MOAT_CACHE/busybox-rootfs" >/dev/null
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
    -C "$MOAT_CACHE/busybox-rootfs" -cf "$dir/rootfs.tar" .
port=""
for cand in $(seq 15000 15100); do
    if ! ss -ltnH "sport = :$cand" | grep -q .; then port="$cand"; break; fi
done
[[ -n $port ]] || die "no free port for the image registry"
python3 "$HACK_DIR/critest-registry.py" "$dir/rootfs.tar" "$dir/nnp" "$port" "$dir/registry.ready" \
    2>"$dir/registry.log" &
pids+=($!)
wait_until 30 "the image registry" test -s "$dir/registry.ready"

mkdir -p "$dir/cni" "$dir/pods"
cat >"$dir/cni/10-critest.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "$bridge-net", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet.0/24"}]], "dataDir": "$dir/cni-ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
if ((cd_major >= 2)); then
    # containerd 2.x: config version 3, registry mirrors as hosts.toml files
    # below one `config_path` directory (2.x pulls for the CRI through its
    # transfer service, which reads hosts.toml, not 1.x's registry.mirrors).
    for reg in registry.k8s.io gcr.io; do
        mkdir -p "$dir/certs.d/$reg"
        printf '%s\n' "server = \"https://$reg\"" "[host.\"http://127.0.0.1:$port\"]" \
            '  capabilities = ["pull", "resolve"]' >"$dir/certs.d/$reg/hosts.toml"
    done
    private_containerd_config "$dir" "$sock" --version 3 >"$dir/config.toml"
    cat >>"$dir/config.toml" <<EOF

[plugins."io.containerd.cri.v1.images"]
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$dir/certs.d"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
EOF
else
    private_containerd_config "$dir" "$sock" >"$dir/config.toml"
    cat >>"$dir/config.toml" <<EOF

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."registry.k8s.io"]
    endpoint = ["http://127.0.0.1:$port"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."gcr.io"]
    endpoint = ["http://127.0.0.1:$port"]
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
EOF
fi
# The moat handlers as `moat install containerd` writes them.
"$MOAT" install containerd --config "$dir/config.toml" --handler moat \
    --binary "$MOAT" --root "$dir/moat-root" >/dev/null
# moat's shim by absolute path (never the one in /usr/local/bin). On
# containerd 2.x as `moat install --shim` writes it: type
# io.containerd.runc.v2 with runtime_path, the only form whose features
# (user namespaces, recursive read-only mounts) containerd 2's CRI reports.
if ((cd_major >= 2)); then
    "$MOAT" install containerd --config "$dir/config.toml" --handler moat-shim \
        --shim "$SHIM" >/dev/null
else
    "$MOAT" install containerd --config "$dir/config.toml" --handler moat-shim \
        --runtime-type io.containerd.moat.v2 >/dev/null
    sed -i "/^ *\[plugins\.\"io\.containerd\.[a-z0-9.]*\"\.containerd\.runtimes\.moat-shim\]\$/a\\      runtime_path = \"$SHIM\"" "$dir/config.toml"
fi
grep -qF "runtime_path = \"$SHIM\"" "$dir/config.toml" || die "could not set the moat-shim runtime_path"

# moat joins the CRI plugin's pod netns (under this containerd's state) only
# when its policy lists them (T10). critest puts pods under the systemd
# slice test.slice (its default when the runtime does not answer
# RuntimeConfig, as containerd 1.6 does not): the cgroup parent an operator
# lists for this cluster (T22), as kubelet's kubepods is by default.
cat >"$dir/moat-policy.toml" <<EOF
[namespaces]
joinable_netns = ["/run/netns/cni-*", "/run/docker/netns/*", "$dir/state/io.containerd.grpc.v1.cri/netns/cni-*"]

[cgroups]
parents = ["/docker", "system.slice:docker", "/default", "/k8s.io", "/moby", "/kubepods", "kubepods.slice:cri-containerd", "test.slice:cri-containerd"]

# This containerd's root and state (private_containerd_config): its state
# roots, where moat recognises its sandboxes' /dev/shm (R7-5).
[engines]
containerd_roots = ["$dir/root", "$dir/state"]
EOF

# runtime_path is not honoured by containerd 1.6's CRI for sandboxes: the
# copy in $dir/bin also comes first on containerd's PATH, where it looks
# shims up (never /usr/local/bin's).
# containerd 2.x runs its own containerd-shim-runc-v2, from beside it (the
# runc and moat handlers), never the system 1.6's.
PATH="$dir/bin:$(dirname "$CONTAINERD"):$PATH" MOAT_POLICY="$dir/moat-policy.toml" \
    "$CONTAINERD" --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
pids+=($!)
wait_until 30 "containerd's CRI API" crictl --runtime-endpoint "unix://$sock" version

# What containerd reports per handler (features: user namespaces, recursive
# read-only mounts), which decides the tests critest runs.
crictl --runtime-endpoint "unix://$sock" info >"$OUT/runtime-info.json" 2>/dev/null || true

# The shim's default state root (shared with other users of moat's shim on
# this host): what this run leaves there is told apart by a before/after list.
SHIM_ROOT=/run/containerd/moat/k8s.io
shim_state_before="$(state_left "$SHIM_ROOT")"

# Not tests of a runtime: registry behaviour no local registry reproduces.
SKIP='should be able to pull image with digest|public image with digest'
failed=0
for h in "${HANDLERS[@]}"; do
    log "critest, handler $h"
    report="$OUT/$h.json"
    rm -f "$report"
    args=(--runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --runtime-handler "$h"
        --ginkgo.skip "$SKIP" --ginkgo.json-report "$report" --ginkgo.no-color)
    [[ -z ${MOAT_CRITEST_FOCUS:-} ]] || args+=(--ginkgo.focus "$MOAT_CRITEST_FOCUS")
    (cd "$dir" && critest "${args[@]}") >"$OUT/$h.log" 2>&1 || true
    [[ -s $report ]] || { log "critest wrote no report for $h (see $OUT/$h.log)"; failed=1; continue; }
    # Pods a failed test left would hold resources into the next handler.
    for p in $(crictl --runtime-endpoint "unix://$sock" pods -q 2>/dev/null); do
        crictl --runtime-endpoint "unix://$sock" stopp "$p" >/dev/null 2>&1 || true
        crictl --runtime-endpoint "unix://$sock" rmp -f "$p" >/dev/null 2>&1 || true
    done
done

python3 "$HACK_DIR/critest-summary.py" "$EXPECTED" "$CD_RELEASE" "$OUT" "${HANDLERS[@]}" || failed=1

# Leaks: pods, containers, shims, moat state, netns, mounts below $dir.
leaks=()
[[ -z $(crictl --runtime-endpoint "unix://$sock" ps -aq 2>/dev/null) ]] || leaks+=("containers left in containerd")
[[ -z $(crictl --runtime-endpoint "unix://$sock" pods -q 2>/dev/null) ]] || leaks+=("pods left in containerd")
sleep 2
[[ -z $(shim_pids) ]] || leaks+=("shims still running: $(shim_pids | tr '\n' ' ')")
# moat's state of both moat handlers: this run's root, and the shim's
# default root for this run's containers.
left="$(state_left "$dir/moat-root/k8s.io")"
[[ -z $left ]] || leaks+=("moat state left: $left")
shim_left="$(comm -13 <(tr ' ' '\n' <<<"$shim_state_before" | sort) <(state_left "$SHIM_ROOT" | tr ' ' '\n' | sort) | tr '\n' ' ')"
[[ -z ${shim_left// /} ]] || leaks+=("moat-shim state left in $SHIM_ROOT: $shim_left")
netns_dir="$dir/state/io.containerd.grpc.v1.cri/netns"
if [[ -d $netns_dir ]] && [[ -n $(ls -A "$netns_dir") ]]; then
    leaks+=("pod netns left: $(ls "$netns_dir" | tr '\n' ' ')")
fi
if grep -F " $dir/" /proc/self/mountinfo | grep -vF " $dir/root/" | grep -q .; then
    leaks+=("mounts left below $dir")
fi
if ((${#leaks[@]})); then
    for l in "${leaks[@]}"; do log "leak: $l"; done
    failed=1
fi
((failed == 0)) || die "critest: unexpected failures or leaks (results in $OUT)"
log "critest: every failure is an intended one; no leaks (results in $OUT)"
