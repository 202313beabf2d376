"""moat's structured phases (runtime/src/phase.rs) in its JSON debug logs.

Each event with a `phase` field marks the END of that phase; a phase lasts
from the previous phase event (or the command's launch, taken by hack/bench
on the same clock) to its own; a name that ends several intervals gets their
sum. Nothing here matches message text.
"""

import collections
import datetime
import json
import os
import re

from .stats import med

PHASE_RS = os.path.join(os.path.dirname(__file__), "..", "..", "runtime", "src", "phase.rs")

# What happens after the last phase event, until the command exits.
EXIT = "exit"


def declared(path=PHASE_RS):
    """(create names, delete names, {name: doc line}) from phase.rs."""
    text = open(path).read()
    consts, docs = {}, {}
    doc = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("///"):
            doc.append(s[3:].strip())
            continue
        mm = re.match(r'pub const (\w+): &str = "([^"]+)";', s)
        if mm:
            consts[mm.group(1)] = mm.group(2)
            docs[mm.group(2)] = " ".join(doc)
        doc = []

    def listed(name):
        mm = re.search(r"pub const %s: &\[&str\] = &\[(.*?)\];" % name, text, re.S)
        if not mm:
            return []
        return [consts[c.strip()] for c in mm.group(1).split(",") if c.strip() in consts]
    return listed("CREATE"), listed("DELETE"), docs


def log_time_us(ts):
    """'2026-11-23T14:37:49.224227294Z' -> epoch microseconds (float)."""
    ts = ts.rstrip("Z")
    base, _, frac = ts.partition(".")
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    return dt.timestamp() * 1e6 + float("0." + (frac or "0")) * 1e6


def events(path):
    """[(time_us, phase)] of one JSON debug log, in time order."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if isinstance(j, dict) and "phase" in j and "time" in j:
                    out.append((log_time_us(j["time"]), str(j["phase"])))
    except OSError:
        pass
    return sorted(out)


def split(rows):
    """rows: [launch_us, exit_us, logfile] -> ({phase: [ms per run]}, [total ms],
    {phase: runs it was missing from})."""
    per = collections.defaultdict(list)
    totals = []
    seen_runs = 0
    present = collections.Counter()
    for launch, exit_, path in rows:
        launch, exit_ = float(launch), float(exit_)
        ev = events(path)
        if not ev:
            continue
        seen_runs += 1
        acc = collections.defaultdict(float)
        prev = launch
        for t, name in ev:
            acc[name] += max(t - prev, 0.0)
            prev = max(prev, t)
        acc[EXIT] += max(exit_ - prev, 0.0)
        for name, us in acc.items():
            per[name].append(us / 1000.0)
            present[name] += 1
        totals.append((exit_ - launch) / 1000.0)
    return per, totals, seen_runs, present


def ordered(per, names):
    """Phase names in declared order, then any undeclared ones, then exit."""
    out = [n for n in names if n in per]
    out += sorted(n for n in per if n not in names and n != EXIT)
    if EXIT in per:
        out.append(EXIT)
    return out


def medians(per):
    return {k: med(v) for k, v in per.items()}
