"""Loading hack/bench's measurements and the statistics over them.

data.tsv: one record per line, tab-separated, first field the kind, second
the name (see hack/bench.py for the list); meta.tsv: KEY VALUE lines.
"""

import collections
import os
import statistics


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


def isnan(x):
    return x != x


def fmt(x, nd=1):
    if isnan(x):
        return "n/a"
    return f"{x:.{nd}f}"


def ratio(a, b, nd=2):
    if isnan(a) or isnan(b) or b == 0:
        return "n/a"
    return f"{a / b:.{nd}f}×"


def spread(xs, nd=1):
    """'median (p25–p75)'"""
    if not xs:
        return "n/a"
    return f"{fmt(med(xs), nd)} ({fmt(pct(xs, 25), nd)}–{fmt(pct(xs, 75), nd)})"


def verdict(value, target):
    if isnan(value):
        return "not measured"
    return "**met**" if value <= target else "**missed**"


def pair_ratios(rows_a, rows_b):
    """Ratios a/b of interleaved pairs: rows are [us, round, iteration];
    a and b measured in the same iteration of the same round form a pair.
    Returns {round: [ratio, ...]}."""
    def keyed(rows):
        out = {}
        for r in rows:
            if len(r) >= 3:
                try:
                    out[(r[1], int(r[2]))] = float(r[0])
                except ValueError:
                    pass
        return out
    a, b = keyed(rows_a), keyed(rows_b)
    per = collections.defaultdict(list)
    for k in sorted(set(a) & set(b)):
        if b[k] > 0:
            per[k[0]].append(a[k] / b[k])
    return per


# --------------------------------------------------------------------------
# machine load per section
# --------------------------------------------------------------------------

def section_loads(data):
    """{section: (load1 before, seconds waited, idle?)} from `load` records."""
    out = {}
    for name, rows in data["load"].items():
        r = rows[-1]
        try:
            out[name] = (float(r[0]), float(r[1]), r[2] == "idle")
        except (IndexError, ValueError):
            continue
    return out


def noisy_sections(data):
    return sorted(n for n, (_, _, idle) in section_loads(data).items() if not idle)
