#!/usr/bin/env python3
"""hack/critest-summary.py EXPECTED CONTAINERD_RELEASE OUTDIR HANDLER...

Reads critest's ginkgo JSON reports (OUTDIR/<handler>.json), prints the
per-handler table (passed / ran, skipped) and every failure, marked intended
when EXPECTED lists it for that handler, and writes the table and the
failures to OUTDIR/summary.md. Exits 1 if any failure is not listed.

EXPECTED: one failure a line, `handlers | containerd | test name | threat id |
reason`; handlers is a comma-separated list (moat, moat-shim, runc) or `*`
(every handler: the environment, not the runtime); containerd is a
comma-separated list of releases (`1.6`, `2.1`: major.minor) the failure
belongs to, or `*` (every release); `#` starts a comment line.
CONTAINERD_RELEASE: the major.minor of the containerd the run used.
"""

import json
import sys


def load_expected(path, release):
    """The entries of EXPECTED that apply to containerd `release`."""
    expected = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split("|")]
            if len(parts) != 5 or not all(parts):
                sys.exit(f"{path}:{n}: want `handlers | containerd | test name | threat id | reason`")
            handlers = {h.strip() for h in parts[0].split(",")}
            releases = {r.strip() for r in parts[1].split(",")}
            for r in releases - {"*"}:
                if not all(x.isdigit() for x in r.split(".")) or r.count(".") != 1:
                    sys.exit(f"{path}:{n}: containerd release {r!r} is not major.minor or *")
            if release in releases or "*" in releases:
                expected.append((handlers, parts[2], parts[3], parts[4]))
    return expected


def specs(report_path):
    with open(report_path) as f:
        suites = json.load(f)
    for suite in suites:
        for s in suite.get("SpecReports") or []:
            if s.get("LeafNodeType") != "It":
                continue
            name = " ".join([*(s.get("ContainerHierarchyTexts") or []), s.get("LeafNodeText", "")])
            msg = ((s.get("Failure") or {}).get("Message") or "").split()
            yield name, s.get("State"), " ".join(msg)


# The handler every run also measures as the control (plain runc).
CONTROL = "runc"


def main():
    expected_path, release, outdir, *handlers = sys.argv[1:]
    expected = load_expected(expected_path, release)
    used = set()
    rows, details, unexpected = [], [], 0
    for h in handlers:
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        fails = []
        for name, state, msg in specs(f"{outdir}/{h}.json"):
            if state == "passed":
                counts["passed"] += 1
            elif state in ("skipped", "pending"):
                counts["skipped"] += 1
            else:
                counts["failed"] += 1
                match = next(
                    (i for i, e in enumerate(expected) if (h in e[0] or "*" in e[0]) and e[1] == name),
                    None,
                )
                if match is None and h == CONTROL:
                    # The control shows what this environment does; its
                    # own failures are reported, and judge no moat handler.
                    fails.append(f"- UNEXPECTED under the control (not counted) `{name}`: {msg[:300]}")
                elif match is None:
                    unexpected += 1
                    fails.append(f"- UNEXPECTED `{name}`: {msg[:300]}")
                else:
                    used.add(match)
                    e = expected[match]
                    fails.append(f"- intended ({e[2]}) `{name}`: {e[3]}")
        ran = counts["passed"] + counts["failed"]
        rows.append(f"| {h} | {counts['passed']} / {ran} | {counts['skipped']} |")
        details.append(f"\n### {h}: {counts['failed']} failed\n" + "\n".join(fails))
    stale = [e for i, e in enumerate(expected) if i not in used]
    text = f"containerd {release}\n\n| handler | passed / ran | skipped |\n|---|---|---|\n" + "\n".join(rows) + "\n" + "\n".join(details)
    if stale:
        text += "\n\n### listed but not failing in this run\n" + "\n".join(f"- `{e[1]}` ({','.join(sorted(e[0]))})" for e in stale)
    text += "\n"
    with open(f"{outdir}/summary.md", "w") as f:
        f.write(text)
    print(text)
    if unexpected:
        print(f"{unexpected} unexpected failure(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
