"""What `moat selftest --json` says one peer blocks, against moat.

Each probe has an `expect`: `blocked` and `any` probes are attacks (a
`blocked` outcome is the runtime stopping it); `works` probes (named `work_*`)
are ordinary work the hardening must not break, where `blocked` means the
work failed. A failed must-work probe is not something the runtime blocks, so
it is counted apart, never among the blocks.
"""

import collections
import json

Comparison = collections.namedtuple(
    "Comparison",
    "attacks peer_blocks moat_blocks only_peer only_moat peer_fails_work moat_fails_work",
)


def load(data):
    """data['isolation'] rows: PEER FILE (`moat selftest --json`) ->
    {peer: [probe, ...]}, or None for a file that cannot be read."""
    out = {}
    for p, rows in data["isolation"].items():
        try:
            with open(rows[0][0]) as f:
                out[p] = json.load(f).get("probes", [])
        except (OSError, ValueError, IndexError, AttributeError):
            out[p] = None
    return out


def compare(probes):
    """A Comparison of one selftest run (`runc` = the peer as baseline)."""
    attacks = [x for x in probes if x.get("expect") != "works"]
    work = [x for x in probes if x.get("expect") == "works"]
    return Comparison(
        attacks=len(attacks),
        peer_blocks=sum(x.get("runc") == "blocked" for x in attacks),
        moat_blocks=sum(x.get("moat") == "blocked" for x in attacks),
        only_peer=[x["probe"] for x in attacks if x.get("runc") == "blocked" and x.get("moat") != "blocked"],
        only_moat=[x["probe"] for x in attacks if x.get("moat") == "blocked" and x.get("runc") != "blocked"],
        peer_fails_work=[x["probe"] for x in work if x.get("runc") not in (None, "allowed")],
        moat_fails_work=[x["probe"] for x in work if x.get("moat") not in (None, "allowed")],
    )


def one_line(probes):
    """The isolation column of the lifecycle table."""
    c = compare(probes)
    s = (f"blocks {c.peer_blocks} of {c.attacks} attack probes (moat {c.moat_blocks}); "
         f"blocks {len(c.only_peer)} that moat does not{': ' + ', '.join(c.only_peer) if c.only_peer else ''}; "
         f"moat blocks {len(c.only_moat)} that it does not")
    if c.peer_fails_work:
        s += f"; must-work probes not passed under it: {', '.join(c.peer_fails_work)}"
    if c.moat_fails_work:
        s += f"; must-work probes not passed under moat: {', '.join(c.moat_fails_work)}"
    return s
