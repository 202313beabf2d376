#!/usr/bin/env python3
"""hack/bench.py — the report of hack/bench.

    python3 hack/bench.py report WORKDIR OUT_MD OUT_PNG

reads what hack/bench measured (WORKDIR/data.tsv, WORKDIR/meta.tsv and the
files named there) and writes the markdown report OUT_MD and, with gnuplot,
the plot OUT_PNG. Standard library only. The work is in hack/benchlib/:
stats.py (loading, medians, pairs, load per section), phases.py (moat's
`phase=` fields), syscounts.py (strace counts), render.py (the markdown).

Refuses (exit 3, report written to /tmp/moat-bench-noisy.md instead) to
write the repository's docs/benchmarks.md when a lifecycle round started on
a busy machine, unless BENCH_ALLOW_NOISY=1 (the sections are then marked
"noisy, not a result").

data.tsv: one measurement per line, tab-separated, first field the kind:
    load SECTION LOAD1 WAITED_S idle|noisy   load average before a section
    lat NAME US ROUND ITERATION    lifecycle (`run` of /bin/true), microseconds
    startup NAME US                small commands (--version, explain, create)
    docker NAME US ROUND ITERATION `docker run --rm`
    sys NAME MIX GETPPID READ OPENCLOSE FUTEX ZEROOPENCLOSE   ns (bench-syscalls)
    maxrss NAME KB                 /usr/bin/time %M of `create`
    initmem NAME RSS_KB PSS_KB SHMEM_KB  created-not-started init process
    shmemcreated NAME KB           meminfo Shmem growth per created container
    shim NAME RSS_KB PSS_KB        containerd-shim-runc-v2 of one container
    nshim NAME RSS_KB PRIV_KB      hack/bench-shim: moat's shim vs runc's
    ctrmem NAME RSS_KB PSS_KB      the workload (sleep) of one docker container
    fill NAME INDEX CREATE_US START_US   density fill: INDEX containers exist
    probe NAME LEVEL CREATE_US DELETE_US extra create+delete at LEVEL existing
    dens NAME KEY VALUE            density totals (wall time, meminfo deltas)
    bd NAME LAUNCH_US EXIT_US LOGFILE    one debug-logged `moat create`
    bdd NAME LAUNCH_US EXIT_US LOGFILE   one debug-logged `moat delete` (stopped)
    bdp LEVEL LAUNCH_US EXIT_US LOGFILE  debug-logged moat create with LEVEL existing
    strace NAME COMMAND FILE       `strace -f -ttt` of create/start/delete
    pstat NAME FILE                `perf stat -x,` of one `run`
    fsyncs NAME COUNT              fsync/fdatasync calls in one `moat create`
    dexec NAME COUNT               runtime executions in one `docker run --rm`
    isolation PEER FILE            `moat selftest --json` with PEER as baseline
    hang youki-plain|youki-blocked HUNG N LOAD1   `youki run`s of /bin/true still
                                   running after 5 s, plain / with SIGCHLD blocked
    rlat moat|direct US ITERATION  hack/bench-resolver: one lookup through moat's
                                   resolver / straight to the same upstream
    rmem N W_RSS W_PSS S_RSS S_PSS resolver worker and supervisor, KiB, with N
                                   containers with name entries
    rsv KEY VALUE                  hack/bench-resolver's settings, failures, load
    skip SECTION REASON            why a section or peer was not measured (a
                                   failed script's first error line)
meta.tsv: KEY VALUE lines (machine, versions, settings).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import render, stats  # noqa: E402

REPO_DOC = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "..", "docs", "benchmarks.md"))
NOISY_OUT = "/tmp/moat-bench-noisy.md"


def report(workdir, out_md, out_png):
    data, meta, skips = stats.load(workdir)
    noisy = [s for s in stats.noisy_sections(data) if s.startswith("lifecycle")]
    refuse = (noisy and os.path.realpath(out_md) == REPO_DOC
              and os.environ.get("BENCH_ALLOW_NOISY", "0") != "1")
    if refuse:
        out_md = NOISY_OUT
        out_png = os.path.join(os.path.dirname(NOISY_OUT), "moat-bench-noisy-latency.png")
    text = render.render(workdir, data, meta, skips, out_png)
    with open(out_md, "w") as f:
        f.write(text)
    if refuse:
        sys.stderr.write(f"bench.py: {', '.join(noisy)} started on a busy machine: "
                         f"not writing {REPO_DOC}; the report is in {out_md}\n")
        return 3
    return 0


def main(argv):
    if len(argv) != 5 or argv[1] != "report":
        sys.stderr.write(__doc__)
        return 2
    return report(argv[2], argv[3], argv[4])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
