"""Syscall counts from `strace -f -ttt -s 400 -o FILE` of one runtime command,
attributed to moat's phases by the phase events moat itself writes to its
JSON debug log (the write(2) carrying `"phase":"NAME"` ends phase NAME);
and the counters of `perf stat -x,`. Counts, not durations, but a busy
machine changes them too."""

import collections
import re

from .phases import EXIT

LINE = re.compile(r"^(\d+)\s+([\d.]+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
MARK = re.compile(r'\\"phase\\":\\"([a-z-]+)\\"')


def parse(path):
    """-> (Counter syscall -> calls, {phase: Counter}, [phase order]).
    A call split by strace into `<unfinished ...>` and `resumed` is counted once."""
    total = collections.Counter()
    per = collections.defaultdict(collections.Counter)
    pending = []  # syscalls since the last phase marker
    order = []
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        return total, per, order
    rows = []
    for ln in lines:
        mm = LINE.match(ln)
        if not mm or mm.group(3):  # not a syscall, or the resumed half
            continue
        rows.append((float(mm.group(2)), mm.group(4), mm.group(5)))
    rows.sort(key=lambda r: r[0])
    for _t, sc, rest in rows:
        total[sc] += 1
        pending.append(sc)
        if sc == "write":
            mk = MARK.search(rest)
            if mk:
                name = mk.group(1)
                per[name].update(pending)
                pending = []
                if name not in order:
                    order.append(name)
    if pending:
        per[EXIT].update(pending)
        order.append(EXIT)
    return total, per, order


def load(data):
    """data['strace'] rows: NAME COMMAND FILE -> {(name, command): parsed}."""
    out = {}
    for name, rows in data["strace"].items():
        for r in rows:
            if len(r) >= 2:
                out[(name, r[0])] = parse(r[1])
    return out


def load_pstat(data):
    """data['pstat'] rows: NAME FILE (`perf stat -x,` output) ->
    {name: {event: [value per run]}}; unreadable files are left out."""
    out = collections.defaultdict(lambda: collections.defaultdict(list))
    for name, rows in data["pstat"].items():
        for r in rows:
            try:
                with open(r[0]) as f:
                    for line in f:
                        fld = line.strip().split(",")
                        if len(fld) >= 3 and fld[0].replace(".", "").isdigit():
                            out[name][fld[2]].append(float(fld[0]))
            except (OSError, IndexError):
                pass
    return out


def biggest_differences(moat, other, n=15):
    """[(syscall, moat calls, other calls)] by moat − other, largest first."""
    keys = set(moat) | set(other)
    diffs = sorted(keys, key=lambda k: (-(moat.get(k, 0) - other.get(k, 0)), k))
    return [(k, moat.get(k, 0), other.get(k, 0)) for k in diffs[:n]
            if moat.get(k, 0) != other.get(k, 0)]


def top_phases(per, syscall, n=3):
    """'phase (calls), …' where `syscall` was made most."""
    c = sorted(((p[syscall], name) for name, p in per.items() if p.get(syscall)),
               reverse=True)
    return ", ".join(f"{name} {calls}" for calls, name in c[:n])
