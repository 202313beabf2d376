#!/usr/bin/env python3
"""hack/bench.py — statistics, tables, plot and report for hack/bench.

    python3 hack/bench.py report WORKDIR OUT_MD OUT_PNG

reads what hack/bench measured (WORKDIR/data.tsv, WORKDIR/meta.tsv and the
JSON debug logs named in data.tsv), writes the markdown report OUT_MD and,
with gnuplot, the plot OUT_PNG. Standard library only.

data.tsv: one measurement per line, tab-separated, first field the kind:
    lat NAME US                    lifecycle (`run` of /bin/true), microseconds
    startup NAME US                small commands (--version, explain, create)
    docker NAME US                 `docker run --rm`
    sys NAME MIX GETPPID READ OPENCLOSE FUTEX   ns, from hack/bench-syscalls
    maxrss NAME KB                 /usr/bin/time %M of `create`
    initmem NAME RSS_KB PSS_KB SHMEM_KB  created-not-started init process
    shmemcreated NAME KB           meminfo Shmem growth per created container
    shim NAME RSS_KB PSS_KB        containerd-shim-runc-v2 of one container
    ctrmem NAME RSS_KB PSS_KB      the workload (sleep) of one docker container
    fill NAME INDEX CREATE_US START_US   density fill: INDEX containers exist
    probe NAME LEVEL CREATE_US DELETE_US extra create+delete at LEVEL existing
    dens NAME KEY VALUE            density totals (wall time, meminfo deltas)
    bd NAME LAUNCH_US EXIT_US LOGFILE    one debug-logged `moat create`
    bdd NAME LAUNCH_US EXIT_US LOGFILE   one debug-logged `moat delete` (stopped)
    bdp LEVEL LAUNCH_US EXIT_US LOGFILE  debug-logged moat create with LEVEL existing
    trace NAME RUN FILE            `perf trace --duration 2` output of one `run`
    fsyncs NAME COUNT              fsync/fdatasync calls in one `moat create` (strace)
    dexec NAME COUNT               runtime executions in one `docker run --rm`
    skip SECTION REASON
meta.tsv: KEY VALUE lines (machine, versions, settings).
"""

import collections
import datetime
import os
import shutil
import statistics
import subprocess
import sys


# --------------------------------------------------------------------------
# loading and statistics
# --------------------------------------------------------------------------

def load(workdir):
    data = collections.defaultdict(lambda: collections.defaultdict(list))
    skips = {}
    with open(os.path.join(workdir, "data.tsv")) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                continue
            kind, name, rest = parts[0], parts[1], parts[2:]
            if kind == "skip":
                skips[name] = rest[0] if rest else ""
            else:
                data[kind][name].append(rest)
    meta = {}
    with open(os.path.join(workdir, "meta.tsv")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v
    return data, meta, skips


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(xs, p):
    """Percentile p (0..100) with linear interpolation."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def col(rows, i, scale=1.0):
    out = []
    for r in rows:
        try:
            out.append(float(r[i]) * scale)
        except (IndexError, ValueError):
            pass
    return out


def fmt(x, nd=1):
    if x != x:  # NaN
        return "n/a"
    return f"{x:.{nd}f}"


def ratio(a, b, nd=2):
    if a != a or b != b or b == 0:
        return "n/a"
    return f"{a / b:.{nd}f}×"


def spread(xs, nd=1):
    """'median (p25–p75)'"""
    if not xs:
        return "n/a"
    return f"{fmt(med(xs), nd)} ({fmt(pct(xs, 25), nd)}–{fmt(pct(xs, 75), nd)})"


def verdict(value, target):
    if value != value:
        return "not measured"
    return "**met**" if value <= target else "**missed**"


# --------------------------------------------------------------------------
# debug-log breakdown of one `moat create`
# --------------------------------------------------------------------------

def log_time_us(ts):
    """'2026-11-23T14:37:49.224227294Z' -> epoch microseconds (float)."""
    ts = ts.rstrip("Z")
    base, _, frac = ts.partition(".")
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    return dt.timestamp() * 1e6 + float("0." + (frac or "0")) * 1e6


# (marker: first log message starting with this text, label of the phase
# that ENDS at this marker). Order matters; missing markers merge phases.
MARKERS = [
    ("moat started",
     "start-up: exec moat, re-exec from a read-only detached mount of the binary (CVE-2019-5736), parse args"),
    ("joined namespace before handing off to libcontainer",
     "moat set-up: policy + bundle load, id-range lease, hardening, idmapped rootfs mount, first state save, network namespace + egress table (one nfnetlink batch)"),
    ("container with new user namespace should be created",
     "moat hand-off: private sysfs mount, bind-mount staging, config.json + state save, report logged"),
    ("affinity:",
     "libcontainer: validate, state dir, notify socket, fork intermediate process"),
    ("unshare or setns: LinuxNamespace { typ: User",
     "cgroups v1: create the container's cgroup in each hierarchy, attach, apply limits"),
    ("identifier mapping written",
     "user namespace: unshare, parent writes uid/gid maps"),
    ("prepare rootfs",
     "pid/uts/ipc/mount namespaces, fork of the init process"),
    ("reset all caps",
     "rootfs mounts: /proc /dev, /sys, cgroup binds, tmpfs, devices, masked/read-only paths, pivot_root"),
    ("dropping ambient capabilities",
     "capabilities: dropped"),
    ("found executable in executor",
     "seccomp: moat loads the filter it compiled on the host side (cached under /run/moat/seccomp-cache); moat self-check"),
    ("init pid is",
     "ready: init reports to the parent"),
    ("Save container status",  # the LAST such message (Created) is used
     "state: saved as created"),
]


def read_log(path):
    import json
    msgs = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if "time" in j and "msg" in j:
                    msgs.append((log_time_us(j["time"]), j["msg"]))
    except OSError:
        pass
    return msgs


DELETE_PHASES = [
    "start-up: exec moat, parse args (delete does not enter a container, so no re-exec)",
    "libcontainer delete: cgroups removed, state dir removed (first to last log message)",
    "moat teardown: unmount idmapped rootfs, network namespace, sysfs; release id range; exit",
]


def delete_breakdown(rows):
    per = collections.defaultdict(list)
    totals = []
    for launch, exit_, path in rows:
        launch, exit_ = float(launch), float(exit_)
        msgs = read_log(path)
        if not msgs:
            continue
        first, last = msgs[0][0], msgs[-1][0]
        for lb, v in zip(DELETE_PHASES, (first - launch, last - first, exit_ - last)):
            per[lb].append(v / 1000.0)
        totals.append((exit_ - launch) / 1000.0)
    return per, totals


WAITS = {"wait4", "waitid", "poll", "ppoll", "epoll_wait", "epoll_pwait",
         "epoll_pwait2", "futex", "read", "pread64", "recvmsg", "recvfrom",
         "rt_sigtimedwait", "nanosleep", "clock_nanosleep", "select", "pselect6",
         "accept4", "accept", "sched_yield", "rt_sigsuspend", "pause", "exit_group"}


def trace_rows(rows):
    """perf trace files -> {runtime: {key: [per-run total ms]}}; blocking waits dropped."""
    import re
    line_re = re.compile(r"^\s*[\d.]+ \(\s*([\d.]+) ms\): (.+?)/(\d+) (\w+)\((.*)$")
    out = collections.defaultdict(lambda: collections.defaultdict(list))
    runs = collections.defaultdict(int)
    for name, rows_ in rows.items():
        for r in rows_:
            path = r[1]
            per = collections.defaultdict(float)
            try:
                text = open(path).read().splitlines()
            except OSError:
                continue
            runs[name] += 1
            for ln in text:
                mm = line_re.match(ln)
                if not mm:
                    continue
                dur, comm, _pid, sc, args = mm.groups()
                if sc in WAITS:
                    continue
                t = re.search(r"<([^>]*)>", args)
                target = ""
                if t:
                    tp = t.group(1)
                    if "cgroup.procs" in tp:
                        target = "cgroup.procs"
                    elif tp.startswith("memfd:"):
                        target = "memfd"
                    elif tp.startswith("socket:") or tp.startswith("pipe:"):
                        target = tp.split(":")[0]
                    else:
                        target = os.path.basename(tp.rstrip("/")) or tp
                key = f"{sc}({target})" if target else sc
                if comm == "nft":
                    key = "nft process: " + key
                per[key] += float(dur)
            for k, v in per.items():
                out[name][k].append(v)
    return out, runs


def moat_facts(data):
    """What the measured moat binary does, from its own debug logs and strace:
    the architectures of the seccomp filter it hands to libcontainer, and the
    number of fsync calls in one `moat create`."""
    import re
    archs = None
    for rows in (data["bd"].get("moat", []),):
        for r in rows:
            try:
                text = open(r[2]).read()
            except OSError:
                continue
            mm = re.search(r"architectures: Some\(\[([^\]]*)\]", text)
            if mm:
                archs = [a.strip().replace("ScmpArch", "").upper() for a in mm.group(1).split(",")]
                break
    fs = [int(r[0]) for r in data["fsyncs"].get("moat", []) if r and r[0].isdigit()]
    return archs, (fs[0] if fs else None)


def breakdown(rows):
    """rows: [launch_us, exit_us, logfile] -> (labels, list of per-run phase lists, totals)."""
    labels = [m[1] for m in MARKERS] + ["exit: cgroupfs remounted read-only (from a thread in the container's mount namespace), moat returns"]
    per_phase = collections.defaultdict(list)
    totals = []
    for launch, exit_, path in rows:
        launch, exit_ = float(launch), float(exit_)
        msgs = read_log(path)
        if not msgs:
            continue
        points = []
        for marker, _label in MARKERS:
            hits = [t for t, m in msgs if m.startswith(marker)]
            if marker == "Save container status":
                points.append(hits[-1] if hits else None)
            else:
                points.append(hits[0] if hits else None)
        prev = launch
        for (marker, label), t in zip(MARKERS, points):
            if t is None:
                continue
            per_phase[label].append((t - prev) / 1000.0)
            prev = t
        per_phase[labels[-1]].append((exit_ - prev) / 1000.0)
        totals.append((exit_ - launch) / 1000.0)
    return labels, per_phase, totals


# --------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------

def plot(workdir, data, png):
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot not found: plot not drawn"
    files = {}
    for name in ("moat", "runc"):
        rows = data["fill"].get(name, [])
        if not rows:
            continue
        p = os.path.join(workdir, f"fill-{name}.dat")
        with open(p, "w") as f:
            for r in rows:
                f.write(f"{r[0]} {float(r[1]) / 1000.0:.3f}\n")
        q = os.path.join(workdir, f"probe-{name}.dat")
        levels = collections.defaultdict(list)
        for r in data["probe"].get(name, []):
            levels[int(r[0])].append(float(r[1]) / 1000.0)
        with open(q, "w") as f:
            for lv in sorted(levels):
                xs = levels[lv]
                f.write(f"{lv} {med(xs):.3f} {pct(xs, 25):.3f} {pct(xs, 75):.3f}\n")
        files[name] = (p, q)
    if not files:
        return "no density data: plot not drawn"
    colors = {"moat": "#1f77b4", "runc": "#d62728"}
    plots = []
    for name, (p, q) in files.items():
        c = colors[name]
        plots.append(f"'{p}' using 1:2 with points pt 7 ps 0.5 lc rgb '{c}' "
                     f"title '{name} create, while filling (one per container)'")
        plots.append(f"'{q}' using 1:2:3:4 with yerrorlines lw 2 pt 5 lc rgb '{c}' "
                     f"title '{name} create, median of probes (p25-p75)'")
    script = "\n".join([
        "set terminal pngcairo size 1000,600 font 'sans,10'",
        f"set output '{png}'",
        "set title 'Create latency vs number of containers already existing (hack/bench)'",
        "set xlabel 'containers already existing (created + started, sleep 3600)'",
        "set ylabel 'create latency (ms)'",
        "set key outside below horizontal maxrows 2",
        "set grid",
        "set yrange [0:*]",
        "set xrange [-2:*]",
        "plot " + ", \\\n     ".join(plots),
    ])
    sp = os.path.join(workdir, "plot.gp")
    with open(sp, "w") as f:
        f.write(script + "\n")
    r = subprocess.run([gp, sp], capture_output=True, text=True)
    if r.returncode != 0:
        return "gnuplot failed: " + r.stderr.strip()[:300]
    return None


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

def report(workdir, out_md, out_png):
    data, meta, skips = load(workdir)
    L = []
    w = L.append

    def ms(kind, name):
        return col(data[kind].get(name, []), 0, 1 / 1000.0)

    lat = {n: ms("lat", n) for n in data["lat"]}
    m_moat, m_runc = med(lat.get("moat", [])), med(lat.get("runc", []))
    life_ratio = m_moat / m_runc if m_runc == m_runc and m_runc else float("nan")

    dk = {n: ms("docker", n) for n in data["docker"]}
    d_ratio = (med(dk["moat"]) / med(dk["runc"])) if dk.get("moat") and dk.get("runc") else float("nan")
    dn_ratio = (med(dk["moat-netnone"]) / med(dk["runc-netnone"])) \
        if dk.get("moat-netnone") and dk.get("runc-netnone") else float("nan")

    sysd = data["sys"]
    sys_fields = ["mix", "getppid", "read", "openclose", "futex", "zeroopenclose"]
    nsys = len(sys_fields)

    def sysmed(name, i):
        return med(col(sysd.get(name, []), i))
    s_ratio = (sysmed("moat", 0) / sysmed("runc-noseccomp", 0)) \
        if sysd.get("moat") and sysd.get("runc-noseccomp") else float("nan")

    runs = meta.get("runs", "?")
    w("# Benchmarks: what moat's hardening costs")
    w("")
    w("Generated by `hack/bench` (this file and `docs/benchmarks-latency.png` are "
      "rewritten by every run). All numbers below come from one run of")
    w("")
    w("```sh")
    w(meta.get("command", "hack/bench"))
    w("```")
    w("")
    w(f"on {meta.get('date', '?')}. Medians of {runs} repetitions after "
      f"{meta.get('warmup', '?')} warm-up runs, variants interleaved round-robin "
      "so drift hits every variant alike; `(a–b)` is the inter-quartile range.")
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    for k, label in [("cpu", "CPU"), ("nproc", "nproc"), ("mem", "memory"),
                     ("kernel", "kernel"), ("cgroups", "cgroups"), ("os", "OS"),
                     ("runc", "runc --version"), ("libseccomp", "libseccomp"),
                     ("docker", "docker / containerd"),
                     ("moat_commit", "moat commit (git rev-parse --short HEAD)"),
                     ("moat_binary", "moat binary measured"),
                     ("docker_moat", "docker's moat runtime"),
                     ("youki", "youki"),
                     ("load_start", "load average at start"),
                     ("load_end", "load average at end"),
                     ("duration", "hack/bench wall time")]:
        if k in meta:
            w(f"| {label} | {meta[k]} |")
    w("")
    if meta.get("load_note"):
        w(meta["load_note"])
        w("")

    # -- summary ----------------------------------------------------------
    w("## Summary against the targets")
    w("")
    w("| target | measured | verdict |")
    w("|---|---|---|")
    w(f"| lifecycle `moat run` ≤ 1.0× `runc run` (stretch ≤ 0.6×) | "
      f"{fmt(m_moat)} ms vs {fmt(m_runc)} ms = {ratio(m_moat, m_runc)} | "
      f"{verdict(life_ratio, 1.0)} (stretch: {verdict(life_ratio, 0.6).strip('*')}) |")
    if dk.get("moat"):
        w(f"| `docker run --rm` moat ≤ 1.05× runc | "
          f"{fmt(med(dk['moat']))} ms vs {fmt(med(dk['runc']))} ms = {ratio(med(dk['moat']), med(dk['runc']))} | "
          f"{verdict(d_ratio, 1.05)} |")
    else:
        w(f"| `docker run --rm` moat ≤ 1.05× runc | skipped: {skips.get('docker', '?')} | not measured |")
    if sysd.get("moat"):
        w(f"| seccomp: syscall loop in moat ≤ 1.05× runc without seccomp | "
          f"{fmt(sysmed('moat', 0))} ns vs {fmt(sysmed('runc-noseccomp', 0))} ns per iteration = "
          f"{ratio(sysmed('moat', 0), sysmed('runc-noseccomp', 0), 3)} | {verdict(s_ratio, 1.05)} |")
        if sysd.get("runc-allowall"):
            w(f"| (not an issue target) what moat's rules add: syscall loop in moat vs runc with an allow-all filter | "
              f"{fmt(sysmed('moat', 0))} ns vs {fmt(sysmed('runc-allowall', 0))} ns = "
              f"{ratio(sysmed('moat', 0), sysmed('runc-allowall', 0), 3)}; getppid "
              f"{ratio(sysmed('moat', 1), sysmed('runc-allowall', 1), 3)} | |")
    shim_m = col(data["shim"].get("moat", []), 0)
    shim_r = col(data["shim"].get("runc", []), 0)
    nshim_m = col(data["nshim"].get("moat", []), 0)
    nshim_r = col(data["nshim"].get("runc", []), 0)
    stack_ratio = float("nan")
    if nshim_m and nshim_r:
        # moat's native shim vs containerd-shim-runc-v2, same idle container
        stack_ratio = med(nshim_m) / med(nshim_r)
        w(f"| runtime + shim RSS per idle container ≤ 0.3× runc + Go shim | "
          f"0 + {fmt(med(nshim_m) / 1024)} MiB (containerd-shim-moat-v2) vs 0 + "
          f"{fmt(med(nshim_r) / 1024)} MiB (containerd-shim-runc-v2) = "
          f"{ratio(med(nshim_m), med(nshim_r))} | {verdict(stack_ratio, 0.3)} |")
    elif shim_m and shim_r:
        # per-container resident stack after start: runtime (0: both exit) + shim
        stack_ratio = med(shim_m) / med(shim_r)
        w(f"| runtime + shim RSS per idle container ≤ 0.3× runc + Go shim | "
          f"0 + {fmt(med(shim_m) / 1024)} MiB vs 0 + {fmt(med(shim_r) / 1024)} MiB = "
          f"{ratio(med(shim_m), med(shim_r))} | {verdict(stack_ratio, 0.3)} |")
    else:
        w(f"| runtime + shim RSS ≤ 0.3× runc + Go shim | skipped: {skips.get('docker', '?')} | not measured |")
    w("")

    # -- 1. lifecycle -----------------------------------------------------
    w("## 1. Lifecycle latency: create + start + wait + delete of `/bin/true`")
    w("")
    w("Same busybox bundle (`hack/mkbundle.sh`, i.e. `runc spec` with `/bin/true`), "
      "each runtime with its own `--root` under a temp dir. `moat run` applies "
      "the full hardening; `runc run` uses runc's defaults for that spec (no user "
      "namespace, no seccomp profile: `runc spec` has none). The floor is the "
      "kernel work alone: `unshare --user --map-root-user --mount --pid --fork "
      "--net --uts --ipc ROOTFS/bin/true`.")
    w("")
    w(f"| variant | median ms (p25–p75) | vs runc |")
    w("|---|---|---|")
    names = [("moat", "`moat run` (full hardening)"),
             ("runc", "`runc run` (runc defaults)"),
             ("youki", "`youki run`"),
             ("floor", "floor: `unshare … bin/true`")]
    for n, label in names:
        if n in lat:
            w(f"| {label} | {spread(lat[n])} | {ratio(med(lat[n]), m_runc)} |")
    if "youki" not in lat:
        w(f"| `youki run` | skipped: {skips.get('youki', 'youki is not installed')} | |")
    w("")
    w("**Where moat's extra time is (ablations, same run, same interleaving).** "
      "Each row changes one thing; the difference to the row it is compared with is "
      "what that thing costs.")
    w("")
    w("| variant | median ms (p25–p75) | vs runc | what it shows |")
    w("|---|---|---|---|")
    archs, nfsync = moat_facts(data)
    foreign = archs is not None and any(a not in ("X86_64", "X86", "X32") for a in archs)
    arch_what = ("cost of the two foreign architectures (AARCH64, ARM) in "
                 "`configs/seccomp/default.json`: {d} ms")
    if archs is not None and not foreign:
        arch_what = (f"none expected: this moat already builds its filter for "
                     f"{', '.join(archs)} only (from its debug log); this row − `moat run`: {{dd}} ms")
    fsync_what = "cost of fsync()ing moat's state files on the state root's filesystem ({fs}): {d} ms"
    if nfsync == 0:
        fsync_what = ("none expected: this moat makes no fsync call in `create` (strace); "
                      "this row − `moat run`: {dd} ms")
    abl = [
        ("moat", "`moat run`", "reference"),
        ("moat-noegress", "`moat run`, policy `egress.enabled = false`",
         "cost of the per-container network namespace + egress table: {d} ms"),
        ("moat-x86arch", "`moat run`, bundle carries moat's own profile but with "
         "`architectures` = x86_64, x86, x32 only (docker's list on amd64)", arch_what),
        ("moat-tmpfsroot", "`moat run`, `--root` on a tmpfs", fsync_what),
        ("moat-lean", "`moat run`, all three of the above",
         "what is left: {d} ms above runc"),
        ("runc-tmpfsroot", "`runc run`, `--root` on a tmpfs",
         "runc does not fsync; difference to plain runc: {d} ms"),
        ("runc-moatseccomp", "`runc run` + `configs/seccomp/default.json` (5 architectures) as the bundle's profile",
         "what building that filter costs runc: {d} ms (libseccomp, not moat code)"),
        ("runc-moatseccomp-x86", "`runc run` + that profile with x86 architectures only",
         "runc with the 3-architecture profile: {d} ms above plain runc"),
    ]
    for n, label, what in abl:
        if n not in lat:
            continue
        m = med(lat[n])
        if n == "moat":
            d = ""
        elif n == "moat-lean":
            d = fmt(m - m_runc)
        elif n.startswith("runc-"):
            d = fmt(m - m_runc)
            if n == "runc-tmpfsroot":
                d = f"{m - m_runc:+.1f}"
        else:
            d = fmt(m_moat - m)
        w(f"| {label} | {spread(lat[n])} | {ratio(m, m_runc)} | "
          f"{what.format(d=d, dd=f'{m - m_moat:+.1f}', fs=meta.get('state_fs', '?'))} |")
    w("")

    st = {n: ms("startup", n) for n in data["startup"]}
    if st:
        w("**Start-up and policy cost.**")
        w("")
        w("| command | median ms (p25–p75) |")
        w("|---|---|")
        labels = {
            "exec-true": "`/bin/true` (fork+exec floor of the shell loop)",
            "moat-version": f"`moat --version` (exec of the {meta.get('moat_size', '?')} binary; only create, run and exec re-execute, from a read-only mount of it)",
            "runc-version": "`runc --version`",
            "moat-explain": "`moat explain BUNDLE` (policy + hardening, no side effects)",
            "moat-create": "`moat create` (no debug log)",
            "runc-create": "`runc create`",
            "moat-start": "`moat start`",
            "runc-start": "`runc start`",
            "moat-delete": "`moat delete` (stopped container)",
            "runc-delete": "`runc delete` (stopped container)",
        }
        for n in ["exec-true", "moat-version", "runc-version", "moat-explain",
                  "moat-create", "runc-create", "moat-start", "runc-start",
                  "moat-delete", "runc-delete"]:
            if n in st:
                w(f"| {labels[n]} | {spread(st[n])} |")
        w("")

    # -- 6. breakdown (placed here, it explains section 1) -----------------
    labels, per_phase, totals = breakdown(data["bd"].get("moat", []))
    if totals:
        w("## 6. Where the time goes in one `moat create`")
        w("")
        w(f"`moat --debug --log FILE --log-format json create …`, {len(totals)} times; "
          "each phase ends at a log message (moat's and libcontainer's, written by "
          "the moat, intermediate and init processes to one file); the first phase "
          "starts when hack/bench launches the command (bash `$EPOCHREALTIME`, same "
          "clock as the log). Debug logging itself adds some time (the spec is "
          f"dumped several times): total here {fmt(med(totals))} ms, plain `moat "
          f"create` above {fmt(med(st.get('moat-create', [])))} ms.")
        w("")
        w("| phase (ends at log message) | median ms | share |")
        w("|---|---|---|")
        tot = sum(med(per_phase[lb]) for lb in labels if per_phase.get(lb))
        for lb in labels:
            xs = per_phase.get(lb)
            if not xs:
                continue
            w(f"| {lb} | {fmt(med(xs), 2)} | {fmt(100 * med(xs) / tot, 0)}% |")
        w(f"| **total (sum of medians)** | **{fmt(tot, 2)}** | |")
        w("")
    dper, dtot = delete_breakdown(data["bdd"].get("moat", []))
    if dtot:
        w(f"And `moat delete` of a stopped container (debug log, {len(dtot)} times; "
          f"total {fmt(med(dtot))} ms):")
        w("")
        w("| phase | median ms |")
        w("|---|---|")
        for lb in DELETE_PHASES:
            if dper.get(lb):
                w(f"| {lb} | {fmt(med(dper[lb]), 2)} |")
        w("")

    tr, truns = trace_rows(data["trace"])
    if tr:
        w("Evidence from the kernel side: syscalls that took ≥ 2 ms in a "
          f"`perf trace -f --duration 2` of `run` ({min(truns.values())} runs per runtime; "
          "blocking waits such as wait4/poll/read/futex left out; tracing slows "
          "everything down, so durations are inflated, but what blocks shows). Total "
          "ms per run, median over runs (0 where a run had none):")
        w("")
        w("| syscall(target) | moat ms/run | runc ms/run |")
        w("|---|---|---|")
        keys = set(tr.get("moat", {})) | set(tr.get("runc", {}))

        def tmed(name, k):
            xs = list(tr.get(name, {}).get(k, []))
            xs += [0.0] * (truns.get(name, 0) - len(xs))
            return med(xs) if xs else 0.0
        ranked = sorted(keys, key=lambda k: -max(tmed("moat", k), tmed("runc", k)))
        for k in ranked:
            a, b = tmed("moat", k), tmed("runc", k)
            if max(a, b) < 2.0:
                continue
            w(f"| {k} | {fmt(a)} | {fmt(b)} |")
        w("")

    # -- 2. docker --------------------------------------------------------
    w("## 2. `docker run --rm moat-busybox true`")
    w("")
    if dk.get("moat"):
        w("dockerd → containerd → containerd-shim-runc-v2 → runtime; only `--runtime` "
          "differs. Default (bridge) network unless noted; no traffic leaves the host.")
        w("")
        w("| variant | moat ms (p25–p75) | runc ms (p25–p75) | moat/runc | moat − runc ms |")
        w("|---|---|---|---|---|")
        for suffix, label in [("", "`docker run --rm moat-busybox true`"),
                              ("-netnone", "same with `--network none`")]:
            a, b = dk.get("moat" + suffix), dk.get("runc" + suffix)
            if a and b:
                w(f"| {label} | {spread(a)} | {spread(b)} | {ratio(med(a), med(b))} | "
                  f"{fmt(med(a) - med(b))} |")
        w("")
    else:
        w(f"Skipped: {skips.get('docker', '?')}")
        w("")

    # -- 3. syscalls ------------------------------------------------------
    w("## 3. Syscall overhead of moat's seccomp filter")
    w("")
    if sysd.get("moat"):
        w(f"`hack/bench-syscalls.c` (gcc -static -O2), {meta.get('sys_iters', '?')} iterations; one iteration "
          "= getppid + read(1 byte of /dev/zero) + open+close(/dev/null) + futex wake "
          "(5 syscalls); then each call alone, and last open+close of /dev/zero (a "
          "control for /dev/null, see below). The program times itself "
          "(CLOCK_MONOTONIC, vDSO) and prints ns per iteration / per call. "
          "Medians over runs; one container per run.")
        w("")
        hdr = "| where | " + " | ".join(
            ["mix ns/iter (p25–p75)", "getppid ns", "read ns", "open+close /dev/null ns",
             "futex ns", "open+close /dev/zero ns"]) + " |"
        w(hdr)
        w("|---" * (nsys + 1) + "|")
        rows = [("host", "host, no container"),
                ("runc-noseccomp", "runc container, no seccomp (bundle without linux.seccomp)"),
                ("runc-allowall", "runc container + an allow-all filter (defaultAction SCMP_ACT_ALLOW, no rules)"),
                ("moat", "moat container (full hardening, moat's filter)"),
                ("moat-learned", "moat container enforcing the program's own learned profile (`moat learn`)"),
                ("runc-moatseccomp", "runc container + moat's default profile")]
        for n, label in rows:
            if n in sysd:
                w(f"| {label} | {spread(col(sysd[n], 0))} | "
                  + " | ".join(fmt(sysmed(n, i)) for i in range(1, nsys)) + " |")
        for a, b, label in [("moat", "runc-noseccomp", "**moat / runc-no-seccomp**"),
                            ("runc-allowall", "runc-noseccomp", "runc+allow-all / runc-no-seccomp: the price of any filter"),
                            ("moat", "runc-allowall", "moat / runc+allow-all: what moat's rules and sandbox add"),
                            ("moat-learned", "moat", "moat learned profile / moat default profile"),
                            ("runc-moatseccomp", "runc-noseccomp", "runc+moat profile / runc-no-seccomp")]:
            if a in sysd and b in sysd:
                w(f"| {label} | " + " | ".join(
                    ratio(sysmed(a, i), sysmed(b, i), 3) for i in range(nsys)) + " |")
        w("")
        nl = meta.get("null_locks", "?")
        who = meta.get("null_lockers", "") or "no process"
        w(f"File locks on the host's /dev/null inode at the time of this section: {nl} "
          f"(held through a descriptor of: {who}). A container under a user namespace "
          "cannot mknod, so its /dev/null is a bind mount of the host's inode (libcontainer, "
          "like runc in a user namespace), while runc without one mknods a private node. "
          "Once an inode has a lock context, every close() of it walks the lock list "
          "(`locks_remove_posix`, `posix_lock_inode` in a perf profile), so the /dev/null "
          "column of moat and of the host pays for locks held elsewhere on the host; the "
          "/dev/zero column, a bind of an inode nobody locks, is the like-for-like comparison.")
        w("")
    else:
        w(f"Skipped: {skips.get('sys', '?')}")
        w("")

    # -- 4. memory --------------------------------------------------------
    w("## 4. Memory")
    w("")
    mr = {n: col(data["maxrss"].get(n, []), 0) for n in data["maxrss"]}
    if mr:
        w("Peak RSS of the runtime command: `/usr/bin/time -f %M` (the largest "
          "single process among the command and the children it reaped, in KiB; "
          "the container's init is not reaped by `create`, so it is measured "
          "separately below).")
        w("")
        w("| | moat | runc | moat/runc |")
        w("|---|---|---|---|")
        a, b = mr.get("moat-create", []), mr.get("runc-create", [])
        w(f"| peak RSS of `create`, KiB | {spread(a, 0)} | {spread(b, 0)} | {ratio(med(a), med(b))} |")
        im = data["initmem"]
        if im.get("moat") and im.get("runc"):
            for i, lb in [(0, "RSS"), (1, "PSS"), (2, "PSS from shmem")]:
                a, b = col(im["moat"], i), col(im["runc"], i)
                w(f"| init process of a created, not yet started container: {lb}, KiB | "
                  f"{spread(a, 0)} | {spread(b, 0)} | {ratio(med(a), med(b))} |")
        shd = {n: col(rows, 0) for n, rows in data["shmemcreated"].items()}
        if shd.get("moat") and shd.get("runc"):
            a, b = shd["moat"], shd["runc"]
            w(f"| Shmem growth per created, not yet started container (meminfo), KiB | "
              f"{spread(a, 0)} | {spread(b, 0)} | {ratio(med(a), med(b))} |")
        w("")
        w("After `start` neither runtime leaves a process behind (both exit after "
          "`create`/`start`; the init execs the workload), so when driven directly "
          "the per-container runtime RSS of an idle container is 0 for both.")
        w("")
    if shim_m and shim_r:
        w(f"Docker, {meta.get('shims', '?')} idle `sleep 3600` containers per runtime: "
          "the per-container stack is containerd-shim-runc-v2 (Go) plus the workload. "
          "docker 20.10 always uses containerd's runc shim, so **the shim row is the "
          "same Go binary for both runtimes**; moat itself is not resident. moat's "
          "native shim is measured below.")
        w("")
        w("| per container, KiB | moat | runc | moat/runc |")
        w("|---|---|---|---|")
        for i, lb in [(0, "shim RSS"), (1, "shim PSS")]:
            a, b = col(data["shim"]["moat"], i), col(data["shim"]["runc"], i)
            w(f"| {lb} | {spread(a, 0)} | {spread(b, 0)} | {ratio(med(a), med(b))} |")
        cm, cr = data["ctrmem"].get("moat", []), data["ctrmem"].get("runc", [])
        if cm and cr:
            for i, lb in [(0, "workload (sleep) RSS"), (1, "workload (sleep) PSS")]:
                a, b = col(cm, i), col(cr, i)
                w(f"| {lb} | {spread(a, 0)} | {spread(b, 0)} | {ratio(med(a), med(b))} |")
        w("| runtime process resident after start | 0 | 0 | |")
        w("")
    if nshim_m and nshim_r:
        w("containerd with moat's native shim (`containerd-shim-moat-v2`, handler "
          "`io.containerd.moat.v2`) vs containerd-shim-runc-v2 running runc, one idle "
          "busybox `sleep` per shim, under a containerd of the benchmark's own "
          "(`hack/bench-shim`, mean of 5 shims each):")
        w("")
        w("| per container, KiB | containerd-shim-moat-v2 | containerd-shim-runc-v2 | ratio |")
        w("|---|---|---|---|")
        for i, lb in [(0, "shim VmRSS"), (1, "shim Private_Dirty")]:
            a, b = col(data["nshim"]["moat"], i), col(data["nshim"]["runc"], i)
            w(f"| {lb} | {fmt(med(a), 0)} | {fmt(med(b), 0)} | {ratio(med(a), med(b))} |")
        w("")

    # -- 5. density -------------------------------------------------------
    w(f"## 5. Density: {meta.get('density', '?')} idle containers")
    w("")
    dens = {n: {r[0]: float(r[1]) for r in rows} for n, rows in data["dens"].items()}
    if dens:
        n_ctr = meta.get("density", "?")
        w(f"Latency: `create` + `start` of {n_ctr} `sleep 3600` containers per runtime, "
          "moat and runc in lockstep (moat's container i, then runc's) so that load "
          "from elsewhere hits both alike; probes alternate too; then `delete --force` "
          "of all, one runtime after the other. Memory: a second fill, one runtime at "
          "a time, with the growth of /proc/meminfo counters and of the host mount "
          "table between before and after (system-wide, so other activity on the "
          "machine adds noise); workload PSS and memory-cgroup usage come from the "
          "containers themselves.")
        w("")
        w("| | moat | runc | moat/runc |")
        w("|---|---|---|---|")
        rows = [("fill_s", f"wall time to create+start {n_ctr}, s", 2),
                ("create_med_ms", "create, median ms", 1),
                ("start_med_ms", "start, median ms", 1),
                ("delete_all_s", f"wall time to delete {n_ctr}, s", 2),
                ("slab_kb_per", "Slab growth per container, KiB", 0),
                ("percpu_kb_per", "Percpu growth per container, KiB", 0),
                ("pss_kb_per", "workload PSS per container, KiB", 0),
                ("mounts_per", "host mount table entries added per container", 2),
                ("cgmem_kb_per", "container memory cgroup usage per container, KiB", 0)]
        dm, dr = dens.get("moat", {}), dens.get("runc", {})
        for k, label, nd in rows:
            a, b = dm.get(k, float("nan")), dr.get(k, float("nan"))
            rt_ = ratio(a, b) if k != "mounts_per" and a > 0 and b > 0 else ""
            w(f"| {label} | {fmt(a, nd)} | {fmt(b, nd)} | {rt_} |")
        w("")
        w("**Create latency vs containers already existing** (probes: extra "
          f"create + delete while N containers exist, {meta.get('probes', '?')} each):")
        w("")
        w("| existing | moat create ms | runc create ms | moat/runc | moat delete ms | runc delete ms |")
        w("|---|---|---|---|---|---|")
        lv = collections.defaultdict(dict)
        for n in ("moat", "runc"):
            for r in data["probe"].get(n, []):
                lv[int(r[0])].setdefault(n, []).append((float(r[1]) / 1000, float(r[2]) / 1000))
        for level in sorted(lv):
            a = [x[0] for x in lv[level].get("moat", [])]
            b = [x[0] for x in lv[level].get("runc", [])]
            ad = [x[1] for x in lv[level].get("moat", [])]
            bd = [x[1] for x in lv[level].get("runc", [])]
            w(f"| {level} | {spread(a)} | {spread(b)} | {ratio(med(a), med(b))} | "
              f"{fmt(med(ad))} | {fmt(med(bd))} |")
        w("")
        bdp = collections.defaultdict(list)
        for level, rows in data["bdp"].items():
            bdp[int(level)] = rows
        if len(bdp) >= 2:
            lvls = sorted(bdp)
            res = {lv: breakdown([(r[0], r[1], r[2]) for r in bdp[lv]]) for lv in lvls}
            labels0 = res[lvls[0]][0]
            w(f"Which phase of `moat create` grows (debug-logged probes, "
              f"{meta.get('dbg_probes', '?')} per level, medians in ms; phases that "
              "change by less than 0.5 ms are left out):")
            w("")
            w("| phase | " + " | ".join(f"{lv} existing" for lv in lvls) + " |")
            w("|---|" + "---|" * len(lvls))
            for lb in labels0:
                vals = [med(res[lv][1].get(lb, [])) for lv in lvls]
                if any(v != v for v in vals) or max(vals) - min(vals) < 0.5:
                    continue
                w(f"| {lb} | " + " | ".join(fmt(v, 2) for v in vals) + " |")
            w("| total (debug logging on) | " + " | ".join(fmt(med(res[lv][2]), 2) for lv in lvls) + " |")
            w("")
        err = plot(workdir, data, out_png)
        if err:
            w(f"(Plot: {err}.)")
        else:
            w(f"![create latency vs existing containers]({os.path.basename(out_png)})")
        w("")
    else:
        w(f"Skipped: {skips.get('density', '?')}")
        w("")

    # -- analysis ---------------------------------------------------------
    w("## Analysis")
    w("")
    analysis(w, meta, lat, m_moat, m_runc, life_ratio, dk, d_ratio, dn_ratio,
             sysd, sysmed, s_ratio, st, labels, per_phase, totals, stack_ratio,
             dens, data)

    with open(out_md, "w") as f:
        f.write("\n".join(L).rstrip() + "\n")


def analysis(w, meta, lat, m_moat, m_runc, life_ratio, dk, d_ratio, dn_ratio,
             sysd, sysmed, s_ratio, st, labels, per_phase, totals, stack_ratio,
             dens, data):
    def m(n):
        return med(lat.get(n, []))

    def stm(n):
        return med(st.get(n, []))

    # 1. lifecycle
    w(f"**Lifecycle: {verdict(life_ratio, 1.0).strip('*')} "
      f"({fmt(m_moat)} ms vs {fmt(m_runc)} ms, {ratio(m_moat, m_runc)}; stretch "
      f"≤ 0.6×: {verdict(life_ratio, 0.6).strip('*')}).** The ablations above say "
      "where the difference is:")
    w("")
    archs, nfsync = moat_facts(data)
    foreign = archs is not None and any(a not in ("X86_64", "X86", "X32") for a in archs)
    if "moat-x86arch" in lat:
        sc = [lb for lb in labels if lb.startswith("seccomp")]
        scm = med(per_phase.get(sc[0], [])) if sc and per_phase.get(sc[0]) else float("nan")
        w(f"- **Seccomp filter: compiled once, loaded in {fmt(scm)} ms** (section 6, "
          "load + self-check). moat builds the BPF program on the host side, caches it "
          "under /run/moat/seccomp-cache and loads it itself, so the architecture list "
          "no longer costs moat anything per create: the x86-only ablation row − "
          f"`moat run` is {m('moat-x86arch') - m_moat:+.1f} ms (noise). What building "
          "the filter per container costs shows on runc, which still does it: "
          + (f"{fmt(m('runc-moatseccomp') - m('runc-moatseccomp-x86'))} ms for the two "
             "foreign architectures alone (runc + moat's profile, 5 vs 3 architectures)."
             if "runc-moatseccomp-x86" in lat and "runc-moatseccomp" in lat else "n/a."))
    if "runc-moatseccomp" in lat:
        w(f"- The build itself is libseccomp's, not moat's: runc given moat's profile "
          f"file (5 architectures) goes from {fmt(m_runc)} to "
          f"{fmt(m('runc-moatseccomp'))} ms"
          + (f", and to {fmt(m('runc-moatseccomp-x86'))} ms with the x86 list"
             if "runc-moatseccomp-x86" in lat else "")
          + ". `runc run`'s default spec has no seccomp profile at all, so part "
          "of the headline ratio is moat installing a filter that plain runc does "
          "not. moat no longer pays this build per container: it compiles its "
          "profile once on the host side, caches the BPF program under "
          "/run/moat/seccomp-cache and loads it with seccomp(2) in the init "
          "(runtime/src/seccomp_bpf.rs); the `seccomp` phase in section 6 is "
          "that load plus the self-check.")
    if "moat-noegress" in lat:
        w(f"- **Egress network namespace + table: {fmt(m_moat - m('moat-noegress'))} ms** "
          "(policy `egress.enabled = false` ablation): moat unshares the network "
          "namespace in its own thread (no child), brings lo up, sends its table "
          "as one nfnetlink batch (runtime/src/nft.rs; no `nft` process), pins the "
          "namespace with a bind mount and returns to its own; libcontainer then "
          "joins it by path, and delete unpins it.")
    if "moat-tmpfsroot" in lat and nfsync == 0:
        w(f"- **fsync: none.** This moat makes no fsync call in `create` (counted with "
          f"strace), so the state root's filesystem ({meta.get('state_fs', '?')} here) no longer "
          f"matters for fsync (tmpfs row − `moat run`: {m('moat-tmpfsroot') - m_moat:+.1f} ms: "
          "other metadata work on the state root, or noise).")
    elif "moat-tmpfsroot" in lat:
        w(f"- **fsync of state files: {fmt(m_moat - m('moat-tmpfsroot'))} ms.** moat writes "
          "its state with `write_atomic` (runtime/src/rootfs.rs: temp file, "
          "`sync_all`, rename): one fsync per state-file write, config.json and "
          "moat.json, three per create. On this machine the state root is on "
          f"{meta.get('state_fs', '?')} (there is no tmpfs /run here), so each is a "
          "journal commit, and its cost swings with whatever else writes to the disk. "
          "runc writes state.json without fsync "
          + (f"(its tmpfs ablation differs by {m('runc-tmpfsroot') - m_runc:+.1f} ms). "
             if "runc-tmpfsroot" in lat else ". ")
          + "The rename already makes each update atomic; what the fsync adds is "
          "durability across a crash, for state describing processes that a crash "
          "kills anyway.")
    if "moat-version" in st and "runc-version" in st:
        w(f"- **Start-up of a moat command: {fmt(stm('moat-version'))} ms** "
          f"(`moat --version`; `runc --version` {fmt(stm('runc-version'))} ms, "
          f"`/bin/true` {fmt(stm('exec-true'))} ms). Only `create`, `run` and "
          f"`exec` re-execute the {meta.get('moat_size', '?')} binary, "
          "which `make build` links statically (no dynamic loader pass: about 1 ms "
          "less per exec here than the dynamically linked build), from a "
          "read-only detached bind mount of itself (the CVE-2019-5736 defence, "
          "runtime/src/self_exe.rs; nothing is copied): the other commands never "
          "let a container process near the runtime binary. `moat start` "
          f"{fmt(stm('moat-start'))} ms vs `runc start` {fmt(stm('runc-start'))} ms.")
    dper, dtot = delete_breakdown(data["bdd"].get("moat", []))
    if "moat-delete" in st and "runc-delete" in st:
        txt = (f"- **`delete` of a stopped container: moat {fmt(stm('moat-delete'))} ms vs "
               f"runc {fmt(stm('runc-delete'))} ms.**")
        if dtot:
            su, lc, td = (med(dper[DELETE_PHASES[i]]) for i in range(3))
            txt += (f" Its debug log splits it into start-up {fmt(su)} ms, "
                    f"libcontainer's delete {fmt(lc)} ms and moat's own teardown + exit "
                    f"{fmt(td)} ms.")
            if td >= su:
                tr, truns = trace_rows(data["trace"])
                n_moat = truns.get("moat", 0)
                meta_ops = sum(med(list(v) + [0.0] * (n_moat - len(v)))
                               for k, v in tr.get("moat", {}).items()
                               if k.split("(")[0] in ("rmdir", "unlinkat", "umount2", "unlink"))
                txt += (" The teardown (unmounting and removing the idmapped rootfs, netns, "
                        "sysfs and staging dirs, the state dir and the id-range lease) is "
                        "filesystem metadata work on a disk filesystem here")
                if meta_ops:
                    txt += (f"; in the traced runs above rmdir/unlink/umount2 blocked for "
                            f"{fmt(meta_ops)} ms per `run` in moat and not at all in runc")
                txt += (" — it is sensitive to other disk activity on the machine (journal "
                        "commits).")
            else:
                txt += " delete does not re-execute, so the three parts are small and close to runc's."
        w(txt)
    if "moat-lean" in lat and "runc-moatseccomp-x86" in lat:
        r_lean = m('moat-lean') / m('runc-moatseccomp-x86')
        txt = (f"- **With all three ablations applied** (3-architecture filter, no egress "
               f"namespace, state root on tmpfs) moat takes {fmt(m('moat-lean'))} ms: "
               f"{ratio(m('moat-lean'), m_runc)} plain runc, and "
               f"{ratio(m('moat-lean'), m('runc-moatseccomp-x86'))} runc running the same "
               f"3-architecture filter ({fmt(m('runc-moatseccomp-x86'))} ms). ")
        if r_lean <= 1.1:
            txt += ("So, filter for filter, moat with everything it adds — user namespace, "
                    "idmapped rootfs, extra mounts, the self-check, the start-up re-exec — "
                    "is faster than runc, because moat loads a precompiled filter where "
                    "runc builds one per container; the remaining gap to plain runc "
                    "(which installs no filter) is the egress set-up and the start-up re-exec.")
        else:
            txt += ("The rest is the start-up re-exec, the user namespace + idmapped "
                    "rootfs and moat's extra mounts and set-up steps, which runc's "
                    "default spec does not do.")
        w(txt)
    if totals:
        ranked = sorted(((med(per_phase[lb]), lb) for lb in labels if per_phase.get(lb)),
                        reverse=True)
        tot = sum(v for v, _ in ranked)
        top = "; ".join(f"{lb.split(':')[0]} {fmt(v, 1)} ms" for v, lb in ranked[:4])
        tr, truns = trace_rows(data["trace"])
        cg = ""
        if tr.get("moat", {}).get("write(cgroup.procs)") and tr.get("runc", {}).get("write(cgroup.procs)"):
            cg = (f" The cgroup phase is kernel work both runtimes pay: the traced "
                  f"write to cgroup.procs blocks {fmt(med(tr['moat']['write(cgroup.procs)']))} ms "
                  f"in moat and {fmt(med(tr['runc']['write(cgroup.procs)']))} ms in runc "
                  "(cgroup v1 migration waits for an RCU grace period).")
        w(f"- The debug-log breakdown (section 6) agrees; its largest phases are {top} "
          f"(of {fmt(tot, 1)} ms).{cg}")
    w("")
    if life_ratio == life_ratio and life_ratio > 1.0:
        needs = []
        if nfsync != 0:
            needs.append("no fsync of state files")
        needs.append("a leaner create path (fewer mounts and state writes; a smaller binary to start twice)")
        txt = ("So ≤ 1.0× needs " + ", ".join(needs[:-1]) + (" and " if len(needs) > 1 else "")
               + needs[-1] + " (sizes above and in section 6)")
        if "moat-lean" in lat:
            txt += (f". With the ablations applied moat takes {ratio(m('moat-lean'), m_runc)} "
                    "plain runc, whose default spec installs no filter, no user namespace "
                    "and no egress rules at all")
        txt += (". The stretch target (≤ 0.6×, faster than runc while doing more) would "
                "also need a leaner path than libcontainer's through the work both "
                "runtimes share (cgroups v1 attach, mounts); nothing measured here gets near it.")
        w(txt)
        w("")

    # 2. docker
    if dk.get("moat"):
        ex = {n: [int(r[0]) for r in rows] for n, rows in data["dexec"].items()}
        w(f"**docker run: {verdict(d_ratio, 1.05).strip('*')} "
          f"({ratio(med(dk['moat']), med(dk['runc']))}, "
          f"{fmt(med(dk['moat']) - med(dk['runc']))} ms more per container"
          + (f"; {ratio(med(dk['moat-netnone']), med(dk['runc-netnone']))} with "
             "`--network none`" if dk.get("moat-netnone") else "")
          + ").** Under docker both runtimes install a seccomp filter (docker passes "
          "its own 3-architecture default profile, and moat keeps a workload's "
          "profile, adding its always-denied rules), so the architecture cost above "
          "does not apply here.")
        if ex.get("moat") and ex.get("runc"):
            su = stm("moat-version") - stm("runc-version")
            w(f"Per `docker run --rm`, containerd's shim executed the runtime "
              f"{ex['moat'][0]} times for moat and {ex['runc'][0]} times for runc "
              "(counted with `perf record -e sched:sched_process_exec`)"
              + (f" plus {ex['moat-nft'][0]} `nft` process(es) for moat" if ex.get("moat-nft") else "")
              + f"; at {fmt(su)} ms more start-up per invocation (`moat --version` − "
              f"`runc --version`) that alone is about {fmt(su * ex['moat'][0], 0)} ms.")
        archs_, nfs_ = moat_facts(data)
        w("The rest is moat's create (egress namespace, "
          + ("" if nfs_ == 0 else "fsync of state files — docker's state root "
             "/run/docker/runtime-runc is on the same disk here — ")
          + "user namespace, idmapped rootfs). The docker rows' inter-quartile range "
          "is wider than these components, so they are not resolved separately here; "
          "the direct-runtime ablations above size them. dockerd/containerd/shim "
          "time is the same for both runtimes and dilutes the ratio.")
        w("")

    # 3. seccomp
    if sysd.get("moat") and sysd.get("runc-noseccomp"):
        g_m, g_r = sysmed("moat", 1), sysmed("runc-noseccomp", 1)
        txt = (f"**Seccomp overhead: {verdict(s_ratio, 1.05).strip('*')} "
               f"({ratio(sysmed('moat', 0), sysmed('runc-noseccomp', 0), 3)} on the mixed "
               f"loop).** On the cheapest syscall, getppid, moat costs {fmt(g_m)} ns vs "
               f"{fmt(g_r)} ns without a filter ({fmt(g_m - g_r)} ns per call)")
        if sysd.get("runc-moatseccomp"):
            txt += (f"; runc with moat's profile: {fmt(sysmed('runc-moatseccomp', 1))} ns, "
                    "so that per-call cost comes with the filter, not with the rest of "
                    "moat's sandbox")
        if sysd.get("runc-allowall"):
            g_a = sysmed("runc-allowall", 1)
            txt += (f". A filter that allows everything (runc + `defaultAction: SCMP_ACT_ALLOW`, "
                    f"no rules) costs {fmt(g_a - g_r)} ns on getppid by itself: that is the "
                    "kernel's price for having a filter at all (the syscall takes the "
                    "slow entry path through `__secure_computing`), whatever its rules. "
                    f"moat vs that allow-all filter: {ratio(sysmed('moat', 1), g_a, 3)} on "
                    f"getppid, {ratio(sysmed('moat', 2), sysmed('runc-allowall', 2), 3)} on read, "
                    f"{ratio(sysmed('moat', 4), sysmed('runc-allowall', 4), 3)} on futex, "
                    f"{ratio(sysmed('moat', 5), sysmed('runc-allowall', 5), 3)} on open+close of "
                    "/dev/zero: moat's 300-odd rules cost nothing measurable on top, because "
                    "this kernel (≥ 5.11) has the seccomp action cache, which answers syscalls a "
                    "filter allows regardless of their arguments without running the BPF "
                    "program (`hack/bench` cannot show the cache itself: no "
                    "CONFIG_SECCOMP_CACHE_DEBUG; the allow-all row is the evidence)")
        txt += (f". So ≤ 1.05× against no filter is out of reach for any runtime that enforces "
                f"seccomp (on calls of ~{fmt(g_r, 0)} ns the fixed price is "
                f"{fmt(100 * (g_m - g_r) / g_r, 0)}% here; runc with docker's profile pays it "
                "too); on syscalls that do real work it disappears in the noise. "
                "The open+close of /dev/null column differs for another reason, explained "
                "under the table: moat's /dev/null is the host's inode, and on this host that "
                "inode carries file locks; /dev/zero, also a bind of a host inode, shows "
                "moat's real open+close cost. Giving each container private device nodes "
                "needs libcontainer to bind from a source moat chooses (it binds the host's "
                "/dev paths); not done.")
        w(txt)
        w("")

    # 4. memory
    if stack_ratio == stack_ratio:
        w(f"**Runtime + shim RSS: {verdict(stack_ratio, 0.3).strip('*')} "
          f"({ratio(stack_ratio, 1.0)}).** Both runtimes exit after create/start; "
          "what stays per container is the shim. moat's native shim (Rust, sync "
          "ttrpc, size-optimised) is measured against containerd-shim-runc-v2; "
          "most of what is left is the ttrpc server's worker threads' stacks and "
          "glibc's per-thread state; `make build` links it statically, so it maps only the part of glibc it uses (docs/shim.md).")
    mr_m = col(data["maxrss"].get("moat-create", []), 0)
    mr_r = col(data["maxrss"].get("runc-create", []), 0)
    im = data["initmem"]
    if mr_m and mr_r:
        txt = (f"Peak RSS of `create` is {fmt(med(mr_m) / 1024)} MiB for moat vs "
               f"{fmt(med(mr_r) / 1024)} MiB for runc.")
        shd = {n: col(rows, 0) for n, rows in data["shmemcreated"].items()}
        if shd.get("moat"):
            txt += (f" Shmem growth per created-and-not-yet-started container: moat "
                    f"{fmt(med(shd['moat']) / 1024)} MiB, runc "
                    f"{fmt(med(shd.get('runc', [])) / 1024)} MiB (meminfo Shmem). moat "
                    "used to pin a 10 MiB sealed memfd copy of its binary here per "
                    "created container; the read-only mount it re-executes from now "
                    "shares the binary's page cache.")
        w(txt)
    w("")

    # 5. density
    dm, dr = dens.get("moat", {}), dens.get("runc", {})
    if dm and dr:
        lv = collections.defaultdict(dict)
        for n in ("moat", "runc"):
            for r in data["probe"].get(n, []):
                lv[int(r[0])].setdefault(n, []).append(float(r[1]) / 1000)
        levels = sorted(lv)
        growth = ""
        if len(levels) >= 2:
            lo, hi = levels[0], levels[-1]
            growth = (f" Create latency from {lo} to {hi} existing containers: moat "
                      f"{fmt(med(lv[lo].get('moat', [])))} → {fmt(med(lv[hi].get('moat', [])))} ms, "
                      f"runc {fmt(med(lv[lo].get('runc', [])))} → {fmt(med(lv[hi].get('runc', [])))} ms.")
        grow = ""
        bdp = {int(lv): rows for lv, rows in data["bdp"].items()}
        moat_growth = float("nan")
        if len(levels) >= 2:
            a_, b_ = med(lv[levels[0]].get("moat", [])), med(lv[levels[-1]].get("moat", []))
            moat_growth = (b_ - a_) / a_ if a_ == a_ and a_ else float("nan")
        if moat_growth == moat_growth and abs(moat_growth) <= 0.1:
            grow += (" moat's create does not slow down measurably as containers "
                     f"accumulate ({100 * moat_growth:+.0f}% from {levels[0]} to "
                     f"{levels[-1]}).")
        elif moat_growth == moat_growth and moat_growth < -0.1:
            grow += (f" moat's create was {100 * -moat_growth:.0f}% *faster* at "
                     f"{levels[-1]} than at {levels[0]}: no sign of growth; the levels "
                     "are measured tens of seconds apart, so this is load on the machine "
                     "changing, not containers helping.")
        elif len(bdp) >= 2:
            lo, hi = min(bdp), max(bdp)
            a = breakdown([(r[0], r[1], r[2]) for r in bdp[lo]])
            b = breakdown([(r[0], r[1], r[2]) for r in bdp[hi]])
            diffs = sorted(((med(b[1].get(lb, [])) - med(a[1].get(lb, [])), lb)
                            for lb in a[0] if a[1].get(lb) and b[1].get(lb)), reverse=True)
            top = [(d, lb) for d, lb in diffs if d >= 0.5][:3]
            if top:
                grow += (" In the debug-logged probes the phases that grew most from "
                         f"{lo} to {hi} existing are " + "; ".join(
                             f"{lb.split(':')[0]} (+{fmt(d, 1)} ms)" for d, lb in top) + ".")
        runc_growth = float("nan")
        if len(levels) >= 2:
            a_, b_ = med(lv[levels[0]].get("runc", [])), med(lv[levels[-1]].get("runc", []))
            runc_growth = (b_ - a_) / a_ if a_ == a_ and a_ else float("nan")
        moat_specific = (moat_growth == moat_growth and moat_growth > 0.1
                         and not (runc_growth == runc_growth and runc_growth >= moat_growth - 0.1))
        if moat_growth == moat_growth and moat_growth > 0.1 and not moat_specific:
            grow += (f" runc's create grew by {100 * runc_growth:.0f}% over the same "
                     f"span (moat's: {100 * moat_growth:.0f}%), so this growth is not "
                     "moat-specific: with the fills in lockstep, it is most likely the "
                     "machine's load changing over the run.")
        mp = dm.get("mounts_per", float("nan"))
        if mp == mp:
            grow += (f" Each moat container adds {fmt(mp, 1)} entries to the host's mount "
                     f"table (runc: {fmt(dr.get('mounts_per', float('nan')), 1)}): idmapped "
                     "rootfs, netns bind mount, private sysfs and a staged sysfs bind"
                     + (" — a candidate for the growth, not isolated by these numbers."
                        if moat_specific else
                        f"; {int(meta.get('density', 100)) * mp:.0f} extra mounts for "
                        f"{meta.get('density', '?')} containers."))
        if dr.get("delete_all_s", 0) > dm.get("delete_all_s", 0):
            grow += (f" Deleting is the one place moat is faster: `runc delete --force` "
                     f"of a running container took {fmt(dr['delete_all_s'] / int(meta.get('density', 100)) * 1000, 0)} ms "
                     f"each vs moat's {fmt(dm['delete_all_s'] / int(meta.get('density', 100)) * 1000, 0)} ms "
                     "(runc's `delete --force` sleeps 100 ms after SIGKILL before it checks "
                     "whether the init is gone).")
        w(f"**Density.** {meta.get('density', '?')} containers (filled in lockstep): moat "
          f"{fmt(dm.get('fill_s', float('nan')), 1)} s vs runc "
          f"{fmt(dr.get('fill_s', float('nan')), 1)} s to create+start." + growth + grow
          + f" Kernel memory (Slab) grew by {fmt(dm.get('slab_kb_per', float('nan')), 0)} KiB "
          f"per moat container vs {fmt(dr.get('slab_kb_per', float('nan')), 0)} KiB per runc "
          "container (system-wide counter, so approximate)"
          + (": moat creates a user namespace, a network namespace with an nftables table "
             "and an idmapped mount per container, which runc's default spec does not."
             if dm.get("slab_kb_per", 0) > 1.2 * max(dr.get("slab_kb_per", 0), 1) else
             " — no clear difference at this resolution, although moat also creates a "
             "user namespace, a network namespace with an nftables table and an idmapped "
             "mount per container."))
        w("")


def main(argv):
    if len(argv) != 5 or argv[1] != "report":
        sys.stderr.write(__doc__)
        return 2
    report(argv[2], argv[3], argv[4])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
