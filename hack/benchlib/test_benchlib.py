"""Unit tests of hack/bench's statistics and parsers (no containers):

    python3 -m unittest discover -s hack/benchlib -t hack
"""

import json
import os
import tempfile
import unittest

from benchlib import isolation, phases, stats, syscounts


class PairRatios(unittest.TestCase):
    def test_pairs_are_matched_by_round_and_iteration(self):
        a = [["200", "1", "3"], ["100", "1", "4"], ["300", "2", "3"]]
        b = [["100", "1", "3"], ["100", "1", "4"], ["150", "2", "3"], ["999", "2", "9"]]
        per = stats.pair_ratios(a, b)
        self.assertEqual(sorted(per["1"]), [1.0, 2.0])
        self.assertEqual(per["2"], [2.0])

    def test_rows_without_iteration_make_no_pairs(self):
        self.assertEqual(dict(stats.pair_ratios([["1"]], [["1"]])), {})


class Loads(unittest.TestCase):
    def test_a_busy_section_is_noisy(self):
        data = {"load": {"lifecycle-1": [["0.2", "0", "idle"]],
                         "docker": [["1.4", "240", "noisy"]]}}
        self.assertEqual(stats.noisy_sections(data), ["docker"])


class Phases(unittest.TestCase):
    def test_declared_lists_match_phase_rs(self):
        create, delete, docs = phases.declared()
        self.assertEqual(create[0], "exec")
        self.assertIn("libcontainer", create)
        self.assertEqual(delete[-1], "teardown")
        for name in create + delete:
            self.assertTrue(docs.get(name), f"{name} has no doc comment in phase.rs")

    def test_split_sums_repeated_names_and_adds_exit(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            for t, ph in [("00.001000", "exec"), ("00.003000", "state"),
                          ("00.004000", "netns"), ("00.006000", "state")]:
                f.write(json.dumps({"time": f"2026-01-01T00:00:{t}Z", "msg": "x", "phase": ph}) + "\n")
            f.write("not json\n")
            path = f.name
        try:
            launch = phases.log_time_us("2026-01-01T00:00:00.000000Z")
            per, totals, runs, _ = phases.split([(launch, launch + 10000, path)])
        finally:
            os.unlink(path)
        self.assertEqual(runs, 1)
        self.assertAlmostEqual(per["exec"][0], 1.0, places=3)
        self.assertAlmostEqual(per["state"][0], 4.0, places=3)  # 2 ms + 2 ms
        self.assertAlmostEqual(per["netns"][0], 1.0, places=3)
        self.assertAlmostEqual(per[phases.EXIT][0], 4.0, places=3)
        self.assertAlmostEqual(totals[0], 10.0, places=3)


class SyscallCounts(unittest.TestCase):
    TRACE = "\n".join([
        '100  1.000000 openat(AT_FDCWD, "/x", O_RDONLY) = 3',
        '100  1.000100 write(2, "{\\"level\\":\\"debug\\",\\"phase\\":\\"policy\\"}\\n", 40) = 40',
        '101  1.000200 statx(AT_FDCWD, "/proc/1", 0, 0 <unfinished ...>',
        '100  1.000300 close(3)                = 0',
        '101  1.000400 <... statx resumed>) = 0',
        '101  1.000500 +++ exited with 0 +++',
    ])

    def test_calls_are_counted_once_and_split_at_phase_writes(self):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(self.TRACE + "\n")
            path = f.name
        try:
            total, per, order = syscounts.parse(path)
        finally:
            os.unlink(path)
        self.assertEqual(total, {"openat": 1, "write": 1, "statx": 1, "close": 1})
        self.assertEqual(per["policy"], {"openat": 1, "write": 1})
        self.assertEqual(per[phases.EXIT], {"statx": 1, "close": 1})
        self.assertEqual(order, ["policy", phases.EXIT])

    def test_biggest_differences_first(self):
        d = syscounts.biggest_differences({"statx": 900, "read": 10}, {"read": 12, "futex": 300})
        self.assertEqual(d[0], ("statx", 900, 0))
        self.assertEqual(d[-1], ("futex", 0, 300))


class Resolver(unittest.TestCase):
    def test_section_and_targets_from_bench_resolver_rows(self):
        import collections
        from benchlib import render
        data = collections.defaultdict(lambda: collections.defaultdict(list))
        data["rlat"]["moat"] = [["1500", "0"], ["1700", "1"], ["1600", "2"]]
        data["rlat"]["direct"] = [["400", "0"], ["600", "1"], ["500", "2"]]
        data["rmem"]["1"] = [["3000", "2000", "500", "300"]]
        data["rmem"]["20"] = [["5090", "4850", "500", "300"]]
        data["rsv"]["queries"] = [["3"]]
        data["rsv"]["threads"] = [["22"]]
        r = render.Report("/nonexistent", data, {}, {})
        delta, per = r.resolver_numbers()
        self.assertAlmostEqual(delta, 1.1)
        self.assertAlmostEqual(per, 150.0)
        r.resolver()
        text = "\n".join(r.lines)
        self.assertIn("| 20 | 5090 | 4850 | 500 | 300 |", text)
        self.assertIn("| per additional container | 110 | 150 | | |", text)
        self.assertIn("| difference | 1.100 |", text)
        r.lines = []
        r.summary()
        text = "\n".join(r.lines)
        self.assertIn("+1.100 ms | **missed** |", text)
        self.assertIn("150 KiB | **met** |", text)

    def test_not_measured_says_why(self):
        import collections
        from benchlib import render
        data = collections.defaultdict(lambda: collections.defaultdict(list))
        r = render.Report("/nonexistent", data, {}, {"resolver": "hack/bench-resolver failed"})
        r.resolver()
        self.assertIn("Not measured: hack/bench-resolver failed.", "\n".join(r.lines))



class Isolation(unittest.TestCase):
    # What the idle run of 2026-12-06 recorded for runc (abridged): a
    # must-work probe runc does not pass was rendered as a probe runc blocks.
    PROBES = [
        {"probe": "io_uring_setup", "expect": "blocked", "moat": "blocked", "runc": "allowed"},
        {"probe": "cap_chroot", "expect": "blocked", "moat": "blocked", "runc": "blocked"},
        {"probe": "cap_sethostname", "expect": "any", "moat": "allowed", "runc": "blocked"},
        {"probe": "work_threads", "expect": "works", "moat": "allowed", "runc": "allowed"},
        {"probe": "work_unknown_syscalls_enosys", "expect": "works", "moat": "allowed", "runc": "blocked"},
    ]

    def test_a_failed_must_work_probe_is_not_a_block(self):
        c = isolation.compare(self.PROBES)
        self.assertEqual(c.attacks, 3)
        self.assertEqual((c.peer_blocks, c.moat_blocks), (2, 2))
        self.assertEqual(c.only_peer, ["cap_sethostname"])
        self.assertEqual(c.only_moat, ["io_uring_setup"])
        self.assertEqual(c.peer_fails_work, ["work_unknown_syscalls_enosys"])
        self.assertEqual(c.moat_fails_work, [])

    def test_the_line_names_failed_work_apart_from_blocks(self):
        line = isolation.one_line(self.PROBES)
        blocks, _, work = line.partition("must-work")
        self.assertNotIn("work_unknown_syscalls_enosys", blocks)
        self.assertIn("work_unknown_syscalls_enosys", work)
        self.assertIn("blocks 2 of 3 attack probes (moat 2)", line)
        self.assertIn("blocks 1 that moat does not: cap_sethostname", line)


def empty_data():
    import collections
    return collections.defaultdict(lambda: collections.defaultdict(list))


class NotMeasured(unittest.TestCase):
    def test_the_shim_target_and_section_say_why(self):
        from benchlib import render
        why = "hack/bench-shim failed (exit 1): [bench-shim] error: cannot import moat-busybox"
        r = render.Report("/nonexistent", empty_data(), {}, {"shim": why})
        r.summary()
        r.memory()
        text = "\n".join(r.lines)
        self.assertIn(f"| shim RSS ≤ 0.3× the Go runc shim | not measured ({why}) | not measured |", text)
        self.assertIn(f"(hack/bench-shim): not measured: {why}.", text)

    def test_a_measured_shim_meets_or_misses(self):
        from benchlib import render
        data = empty_data()
        data["nshim"]["moat"] = [["3900", "900"]]
        data["nshim"]["runc"] = [["13000", "2500"]]
        r = render.Report("/nonexistent", data, {}, {})
        r.summary()
        self.assertIn("**met** (0.30×)", "\n".join(r.lines))


class Youki(unittest.TestCase):
    def test_hang_counts_and_the_wrapped_row(self):
        from benchlib import render
        data = empty_data()
        data["hang"]["youki-plain"] = [["4", "10", "0.41"]]
        data["hang"]["youki-blocked"] = [["0", "10", "0.41"]]
        data["lat"]["youki"] = [["20000", "1", "3"]]
        data["lat"]["sigchld-floor"] = [["600", "1", "3"]]
        meta = {"youki_hang": "plain `youki run` still running after 5 s: it waits in do_sigtimedwait"}
        r = render.Report("/nonexistent", data, meta, {})
        r.lifecycle()
        text = "\n".join(r.lines)
        self.assertIn("| `youki run` (started with SIGCHLD blocked: see below the table) | 20.0 (20.0–20.0) |", text)
        self.assertIn("| `sigchld-blocked` + `/bin/true`", text)
        self.assertIn("plain 4 of 10 runs hung", text)
        self.assertIn("SIGCHLD blocked (hack/sigchld-blocked.c", text)
        self.assertIn("0 of 10.", text)
        self.assertIn("it waits in do_sigtimedwait", text)

    def test_no_counts_no_note(self):
        from benchlib import render
        r = render.Report("/nonexistent", empty_data(), {}, {})
        r.youki_hangs()
        self.assertEqual(r.lines, [])


if __name__ == "__main__":
    unittest.main()
