"""`amc run` on fs:// against the AVI simulator with a quiet time of a
minute (--fs-debounce-ms 60000): complete saves (an atomic save, a write
and close) reach AVI at once, without waiting for it; a file left open half
written is not read (its missing objects would be deleted from AVI) until
its writer closes it; a file deleted and written again (git checkout) is
an update, its objects are not deleted in between."""
import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

EXAMPLES = os.path.join(runlib.SOURCE_DIR, "examples", "bookinfo")

# Far below the quiet time: "at once" with a wide margin for a slow machine.
PROMPT_S = 10


def weights(text, a, b):
    return text.replace("weight: 90", "weight: %d" % a).replace(
        "weight: 10", "weight: %d" % b)


class FsWatchTest(runlib.SimTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="amc-fswatch-")
        self.fs = os.path.join(self.tmp, "fs")
        shutil.copytree(EXAMPLES, self.fs)
        self.run_ = None
        self.addCleanup(self.cleanup)
        self.run_ = runlib.AmcRun(self.fs, "--fs-debounce-ms", "60000",
                                  sim=self.sim, workdir=self.tmp)
        self.run_.wait_ready()
        self.run_.wait_idle()
        runlib.sim_clear_requests(self.sim)

    def cleanup(self):
        if self.run_:
            self.run_.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def wait_writes(self, what):
        return runlib.wait_for(lambda: runlib.sim_writes(self.sim),
                               PROMPT_S, what)

    def assert_no_writes(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.assertEqual(runlib.sim_writes(self.sim), [])
            time.sleep(0.1)

    def pool_group_ratios(self):
        pg = [o for n, o in runlib.sim_objects(self.sim, "poolgroup").items()
              if n.endswith("bookinfo--bookinfo--http1")][0]
        return sorted(m["ratio"] for m in pg["members"])

    def test_complete_saves_reach_avi_at_once(self):
        r = self.run_
        path = os.path.join(self.fs, "30-routing.yaml")
        with open(path) as fh:
            routing = fh.read()
        # An editor's atomic save.
        runlib.atomic_write(path, weights(routing, 70, 30))
        self.wait_writes("atomic save -> AVI")
        r.wait_idle()
        self.assertEqual(self.pool_group_ratios(), [30, 70])
        # A plain write and close of a new file.
        runlib.sim_clear_requests(self.sim)
        with open(os.path.join(self.fs, "70-extra.yaml"), "w") as fh:
            fh.write(runlib.EXTRA_VS)
        writes = self.wait_writes("new file -> AVI")
        r.wait_idle()
        writes = runlib.sim_writes(self.sim)
        self.assertTrue(all(w["method"] != "DELETE" for w in writes), writes)
        self.assertEqual(r.stop(), 0)

    def test_file_being_written_is_read_when_closed(self):
        r = self.run_
        path = os.path.join(self.fs, "30-routing.yaml")
        with open(path) as fh:
            routing = weights(fh.read(), 60, 40)
        # The first document of four: read now, the rest would be deleted.
        cut = routing.index("\n---\n") + 1
        fh = open(path, "w")
        try:
            fh.write(routing[:cut])
            fh.flush()
            self.assert_no_writes(1.5)
            fh.write(routing[cut:])
        finally:
            fh.close()
        self.wait_writes("close -> AVI")
        r.wait_idle()
        writes = runlib.sim_writes(self.sim)
        self.assertEqual([(w["method"], w["path"].split("/")[2])
                          for w in writes], [("PUT", "poolgroup")], writes)
        self.assertEqual(self.pool_group_ratios(), [40, 60])
        self.assertEqual(r.log_events("fs.error"), [])
        self.assertEqual(r.stop(), 0)

    def test_file_deleted_and_written_again_is_an_update(self):
        # git checkout: unlink the file, create it again, write, close.
        r = self.run_
        path = os.path.join(self.fs, "30-routing.yaml")
        with open(path) as fh:
            routing = weights(fh.read(), 80, 20)
        os.unlink(path)
        self.assert_no_writes(1.0)
        with open(path, "w") as fh:
            fh.write(routing)
        self.wait_writes("re-created file -> AVI")
        r.wait_idle()
        writes = runlib.sim_writes(self.sim)
        self.assertEqual([(w["method"], w["path"].split("/")[2])
                          for w in writes], [("PUT", "poolgroup")], writes)
        self.assertEqual(self.pool_group_ratios(), [20, 80])
        self.assertEqual(r.stop(), 0)


if __name__ == "__main__":
    unittest.main()
