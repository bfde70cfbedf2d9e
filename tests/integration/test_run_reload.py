"""Rules hot reload in `amc run` (dry run: the planned calls are the
observable output): a rule change that alters the output is sent; a new
rule file with a syntax error, a runtime error or an infinite loop, and a
rule returning invalid output, leave the old generation serving and nothing
sent, and show in /readyz and /metrics; fixing the file resumes normal work;
a no-op reload sends nothing; a ConfigMap-style '..data' symlink swap is
picked up."""
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

EXAMPLES = os.path.join(runlib.SOURCE_DIR, "examples", "bookinfo")
RULES = os.path.join(runlib.SOURCE_DIR, "rules")
GW = "Gateway/istio-system/bookinfo-gateway"

# Wraps the entry rule's translate so that the parent virtual service gets a
# description: an output change every gateway sees.
WRAP = """
local function amc_test_wrapper(gateway, rt)
  local out = translate(gateway, rt)
  for _, o in ipairs(out.objects or {}) do
    if o.type == "virtualservice" then
      o.object.description = "%s"
    end
  end
  return out
end
"""


def synced(run):
    return re.findall(r"^dry-run: synced %s calls=(\d+)$" % re.escape(GW),
                      run.output(), re.M)


def calls(run, mark):
    return [l for l in run.output()[mark:].splitlines()
            if re.match(r"dry-run: (POST|PUT|DELETE) ", l)]


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="amc-reload-")
        self.fs = os.path.join(self.tmp, "fs")
        self.rules = os.path.join(self.tmp, "rules")
        shutil.copytree(EXAMPLES, self.fs)
        shutil.copytree(RULES, self.rules)
        with open(os.path.join(self.rules, "gateway.lua")) as fh:
            self.gateway_lua = fh.read()
        self.assertIn("  translate = translate,", self.gateway_lua)
        self.run_ = runlib.AmcRun(self.fs, rules=self.rules, dry_run=True,
                                  workdir=self.tmp)
        self.addCleanup(self.cleanup)
        self.run_.wait_ready()
        runlib.wait_for(lambda: len(synced(self.run_)) == 1, 10,
                        "initial sync")

    def cleanup(self):
        self.run_.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write_rule(self, name, text):
        path = os.path.join(self.rules, name)
        tmp = os.path.join(self.rules, "." + name + ".tmp")
        with open(tmp, "w") as fh:
            fh.write(text)
        os.rename(tmp, path)

    def gateway_with(self, body, use="amc_test_wrapper"):
        return self.gateway_lua.replace(
            "\nreturn {", body + "\nreturn {").replace(
            "  translate = translate,", "  translate = %s," % use)

    def reload_failures(self):
        return self.run_.metric("amc_rules_reload_failures_total")

    def expect_rejected(self, before_failures, mark, what, generation=2):
        r = self.run_
        runlib.wait_for(lambda: self.reload_failures() > before_failures, 15,
                        "reload failure for %s" % what)
        status, d = r.readyz()
        self.assertEqual(status, 200)  # the old generation keeps serving
        self.assertEqual(d["rules"]["generation"], generation)
        self.assertTrue(d["rules"]["last_reload_error"], d)
        self.assertEqual(d["rules"]["reload_failures"],
                         before_failures + 1)
        self.assertEqual(r.metric("amc_rules_generation"), generation)
        self.assertEqual(calls(r, mark), [], what)
        return d["rules"]["last_reload_error"]

    def test_change_failures_and_fix(self):
        r = self.run_
        mark = len(r.output())
        # 1. A change that alters the output: only the VS bodies change.
        self.write_rule("gateway.lua",
                        self.gateway_with(WRAP % "reloaded"))
        runlib.wait_for(lambda: r.metric("amc_rules_generation") == 2, 10,
                        "generation 2")
        runlib.wait_for(lambda: len(synced(r)) == 2, 10, "re-sync")
        c = calls(r, mark)
        self.assertTrue(c)
        for line in c:
            self.assertRegex(line, r"^dry-run: PUT virtualservice ")
            self.assertIn('"description":"reloaded"', line)
        # 2..5. Broken rules: rejected, nothing sent, old generation kept.
        cases = [
            ("zz_syntax.lua", "local x = = 1\nreturn {}\n", "syntax"),
            ("zz_runtime.lua", "error('boom at load')\nreturn {}\n",
             "boom at load"),
            ("zz_loop.lua", "while true do end\nreturn {}\n",
             "CPU time budget exceeded"),
        ]
        for name, text, needle in cases:
            mark = len(r.output())
            before = self.reload_failures()
            self.write_rule(name, text)
            err = self.expect_rejected(before, mark, name)
            self.assertIn(needle, err)
            os.unlink(os.path.join(self.rules, name))
            # removing the broken file brings back the active digest: no-op
            time.sleep(0.2)
        # Invalid output from the entry rule, validated against the objects.
        mark = len(r.output())
        before = self.reload_failures()
        bad = ("\nlocal function amc_bad(gateway, rt)\n"
               "  return {objects = {{type = 'pool', object = "
               "{name = 42}}}}\nend\n")
        self.write_rule("gateway.lua", self.gateway_with(bad, "amc_bad"))
        self.expect_rejected(before, mark, "invalid output")
        # Putting back the serving generation's files: nothing to load (same
        # digest), and the kept error no longer describes them.
        mark = len(r.output())
        self.write_rule("gateway.lua", self.gateway_with(WRAP % "reloaded"))
        runlib.wait_for(
            lambda: r.readyz()[1]["rules"]["last_reload_error"] is None, 10,
            "the reload error cleared")
        self.assertTrue(r.log_events("rules.current"))
        self.assertEqual(r.metric("amc_rules_generation"), 2)
        self.assertEqual(r.metric("amc_rules_reload_failures_total"),
                         before + 1)
        time.sleep(0.2)
        self.assertEqual(calls(r, mark), [])
        # The old generation still serves input changes.
        # 6. Fixing the file resumes normal work.
        mark = len(r.output())
        self.write_rule("gateway.lua", self.gateway_with(WRAP % "fixed"))
        runlib.wait_for(lambda: r.metric("amc_rules_generation") == 3, 10,
                        "generation 3")
        runlib.wait_for(lambda: len(synced(r)) == 3, 10, "re-sync")
        status, d = r.readyz()
        self.assertIsNone(d["rules"]["last_reload_error"])
        self.assertTrue(all('"description":"fixed"' in l
                            for l in calls(r, mark)))
        fams = r.metrics()  # the exposition stays valid throughout
        self.assertIn("amc_rules_reloads_total", fams)
        self.assertEqual(r.stop(), 0)

    def test_no_op_reload_and_sighup(self):
        r = self.run_
        mark = len(r.output())
        # Touch a rule file without changing it, and SIGHUP: the digest is
        # the same, so nothing happens at all.
        path = os.path.join(self.rules, "gateway.lua")
        os.utime(path)
        r.signal(signal.SIGHUP)
        runlib.wait_for(lambda: "signal=SIGHUP" in r.logs(), 5, "SIGHUP")
        time.sleep(0.4)
        self.assertEqual(calls(r, mark), [])
        self.assertEqual(len(synced(r)), 1)
        self.assertEqual(r.metric("amc_rules_generation"), 1)
        # A reload whose output is identical re-syncs with zero calls.
        self.write_rule("gateway.lua", self.gateway_lua + "\n-- comment\n")
        runlib.wait_for(lambda: r.metric("amc_rules_generation") == 2, 10,
                        "generation 2")
        runlib.wait_for(lambda: len(synced(r)) == 2, 10, "re-sync")
        self.assertEqual(synced(r)[-1], "0")
        self.assertEqual(calls(r, mark), [])
        self.assertEqual(r.stop(), 0)


class ConfigMapSwapTest(unittest.TestCase):
    """A ConfigMap volume: visible files are symlinks into ..data, which is
    a symlink to a timestamped directory, swapped atomically."""

    def test_data_symlink_swap(self):
        tmp = tempfile.mkdtemp(prefix="amc-cm-")
        self.addCleanup(shutil.rmtree, tmp, True)
        fs = os.path.join(tmp, "fs")
        shutil.copytree(EXAMPLES, fs)
        vol = os.path.join(tmp, "vol")
        os.mkdir(vol)
        v1 = os.path.join(vol, "..2026_01_01_00_00_00.000000001")
        shutil.copytree(RULES, v1)
        os.symlink(os.path.basename(v1), os.path.join(vol, "..data"))
        for name in os.listdir(v1):
            os.symlink(os.path.join("..data", name), os.path.join(vol, name))
        r = runlib.AmcRun(fs, rules=vol, dry_run=True, workdir=tmp)
        self.addCleanup(r.kill)
        r.wait_ready()
        runlib.wait_for(lambda: len(synced(r)) == 1, 10, "initial sync")
        # kubelet's AtomicWriter: new dir, temp symlink, rename over ..data
        v2 = os.path.join(vol, "..2026_01_01_00_01_00.000000002")
        shutil.copytree(RULES, v2)
        with open(os.path.join(RULES, "gateway.lua")) as fh:
            text = fh.read()
        text = text.replace("\nreturn {", (WRAP % "configmap") + "\nreturn {")
        text = text.replace("  translate = translate,",
                            "  translate = amc_test_wrapper,")
        with open(os.path.join(v2, "gateway.lua"), "w") as fh:
            fh.write(text)
        os.symlink(os.path.basename(v2), os.path.join(vol, "..data_tmp"))
        os.rename(os.path.join(vol, "..data_tmp"), os.path.join(vol, "..data"))
        shutil.rmtree(v1)
        runlib.wait_for(lambda: r.metric("amc_rules_generation") == 2, 10,
                        "reload after the ..data swap")
        runlib.wait_for(lambda: '"description":"configmap"' in r.output(), 10,
                        "new output")
        self.assertEqual(r.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
