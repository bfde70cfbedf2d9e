"""bench/run_bench.py on the bookinfo mesh, route changes only: it runs
from any working directory, measures amc's route changes (one AVI call
each) and the platform floor (bench/floor_probe in amc's place), and
prints both in its table."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

BENCH = os.path.join(runlib.SOURCE_DIR, "bench", "run_bench.py")
BUILD = os.environ.get("AMC_BUILD_DIR") or os.path.join(runlib.SOURCE_DIR,
                                                        "build")
PROBE = os.path.join(BUILD, "bench", "floor_probe")
CHANGES = 6


class BenchTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="amc-bench-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def bench(self, *args):
        out = os.path.join(self.tmp, "bench.json")
        env = dict(os.environ)
        env.pop("AMC_SOURCE_DIR", None)  # found from the script's place
        p = subprocess.run(
            [runlib.PYTHON, BENCH, "--amc", runlib.AMC_BIN, "--sizes",
             "bookinfo", "--changes", str(CHANGES), "--latency-only",
             "--json", out] + list(args),
            cwd=self.tmp,  # not the source tree: the bench finds its own
            env=env, capture_output=True, text=True, timeout=240)
        self.assertEqual(p.returncode, 0, p.stderr[-4000:])
        with open(out) as fh:
            results = json.load(fh)
        self.assertEqual(len(results), 1)
        return results[0], p.stdout

    def test_route_changes_and_floor(self):
        self.assertTrue(os.access(PROBE, os.X_OK), PROBE + " not built")
        res, table = self.bench("--floor-probe", PROBE)
        change, floor = res["change"], res["floor"]
        self.assertEqual(change["n"], CHANGES)
        self.assertEqual(change["calls_per_change"], 1.0)
        self.assertEqual(floor["n"], CHANGES)
        for m in (change, floor):
            self.assertGreater(m["event_to_call_ms_p50"], 0.0)
            self.assertLessEqual(m["event_to_call_ms_p50"],
                                 m["event_to_call_ms_max"])
        self.assertRegex(table,
                         r"\| platform floor [^|]*\| [\d.]+ / [\d.]+ \|")
        self.assertRegex(table, r"\| AVI calls per route change \| 1\.0 \|")
        # The floor runs first, against the same simulator: none of its
        # calls may count as amc's.
        alone, table = self.bench("--floor-probe", "none")
        self.assertNotIn("floor", alone)
        self.assertRegex(table, r"\| platform floor [^|]*\| - \|")
        self.assertGreater(alone["cold_sync"]["writes"], 0)
        self.assertEqual(res["cold_sync"]["writes"],
                         alone["cold_sync"]["writes"])
        self.assertEqual(alone["change"]["calls_per_change"], 1.0)


if __name__ == "__main__":
    unittest.main()
