"""`amc run --dry-run` on an fs:// directory: initial sync, file edits,
deletes, dependency-driven re-syncs, health endpoints, /metrics (checked
with a Prometheus text parser), --help, config errors, SIGTERM exit 0."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

EXAMPLES = os.path.join(runlib.SOURCE_DIR, "examples", "bookinfo")
GW = "Gateway/istio-system/bookinfo-gateway"


def synced_lines(run, key=GW):
    return re.findall(r"^dry-run: synced %s calls=(\d+)$" % re.escape(key),
                      run.output(), re.M)


def calls_after(run, mark):
    """The dry-run call lines printed after output offset `mark`."""
    out = run.output()[mark:]
    return [l for l in out.splitlines()
            if re.match(r"dry-run: (POST|PUT|DELETE) ", l)]


class DryRunTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="amc-dryrun-")
        self.fs = os.path.join(self.tmp, "fs")
        shutil.copytree(EXAMPLES, self.fs)
        self.run_ = runlib.AmcRun(self.fs, dry_run=True,
                                  workdir=os.path.join(self.tmp))
        self.addCleanup(self.cleanup)

    def cleanup(self):
        self.run_.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def wait_synced(self, n):
        runlib.wait_for(lambda: len(synced_lines(self.run_)) >= n, 10,
                        "%d syncs of %s" % (n, GW))

    def test_initial_sync_health_and_metrics(self):
        r = self.run_
        r.wait_ready()
        self.wait_synced(1)
        first = int(synced_lines(r)[0])
        self.assertGreater(first, 3)  # vsvip, vs, pools, ...
        status, body, _ = r.get("/healthz")
        self.assertEqual((status, body), (200, "ok\n"))
        status, d = r.readyz()
        self.assertEqual(status, 200)
        self.assertEqual(d["sources"], {"fs": True})
        self.assertTrue(d["rules"]["loaded"])
        self.assertEqual(d["rules"]["generation"], 1)
        self.assertEqual(len(d["rules"]["digest"]), 64)
        self.assertIsNone(d["rules"]["last_reload_error"])
        self.assertTrue(d["avi"]["reachable"])
        fams = r.metrics()
        types = {n: f["type"] for n, f in fams.items()}
        for name, t in [("amc_queue_depth", "gauge"),
                        ("amc_reconcile_duration_seconds", "histogram"),
                        ("amc_avi_requests_total", "counter"),
                        ("amc_rules_generation", "gauge"),
                        ("amc_rules_reload_failures_total", "counter"),
                        ("amc_watch_restarts_total", "counter"),
                        ("amc_objects", "gauge")]:
            self.assertEqual(types.get(name), t, name)
            self.assertTrue(fams[name]["help"], name)
        self.assertEqual(r.metric("amc_rules_generation"), 1)
        self.assertEqual(r.metric("amc_rules_reload_failures_total"), 0)
        self.assertEqual(r.metric("amc_objects", kind="VirtualService"), 3)
        self.assertEqual(r.metric("amc_objects", kind="Gateway"), 1)
        self.assertGreaterEqual(
            r.metric("amc_reconcile_duration_seconds_count", result="ok"), 1)
        self.assertEqual(r.metric("amc_queue_depth"), 0)
        self.assertEqual(r.stop(), 0)
        self.assertIn("event=run.stopped", r.logs())

    def test_edit_delete_and_dependencies(self):
        r = self.run_
        r.wait_ready()
        self.wait_synced(1)
        # A Service nothing routes to: no re-sync at all.
        mark = len(r.output())
        with open(os.path.join(self.fs, "50-unused.yaml"), "w") as fh:
            fh.write("apiVersion: v1\nkind: Service\nmetadata: "
                     "{name: unused, namespace: bookinfo}\n"
                     "spec: {ports: [{port: 1}]}\n")
        runlib.wait_for(lambda: r.metric("amc_objects", kind="Service") == 5,
                        5, "the new Service in the store")
        self.assertEqual(len(synced_lines(r)), 1)
        # An EndpointSlice the gateway's pools read: one re-sync, and only
        # pools change.
        path = os.path.join(self.fs, "10-workloads.yaml")
        with open(path) as fh:
            text = fh.read()
        self.assertIn("10.1.0.31", text)
        tmp = path + ".swp"
        with open(tmp, "w") as fh:  # an editor's atomic save
            fh.write(text.replace("10.1.0.31", "10.1.0.99"))
        os.rename(tmp, path)
        self.wait_synced(2)
        calls = calls_after(r, mark)
        self.assertTrue(calls, r.output()[mark:])
        for c in calls:
            self.assertRegex(c, r"^dry-run: PUT pool ", calls)
        self.assertTrue(any("10.1.0.99" in c for c in calls))
        # Deleting the Gateway's file deletes its whole tree.
        mark = len(r.output())
        os.unlink(os.path.join(self.fs, "20-gateway.yaml"))
        self.wait_synced(3)
        calls = calls_after(r, mark)
        self.assertTrue(calls)
        self.assertTrue(all(c.startswith("dry-run: DELETE ") for c in calls),
                        calls)
        self.assertTrue(any(" virtualservice " in c for c in calls))
        self.assertEqual(r.stop(), 0)

    def test_no_op_resync_and_rewrite(self):
        r = self.run_
        r.wait_ready()
        self.wait_synced(1)
        mark = len(r.output())
        # Same bytes rewritten: nothing.
        path = os.path.join(self.fs, "30-routing.yaml")
        with open(path) as fh:
            text = fh.read()
        with open(path, "w") as fh:
            fh.write(text)
        # SIGHUP with unchanged rules: nothing either.
        r.signal(runlib.signal.SIGHUP)
        runlib.wait_for(lambda: "SIGHUP" in r.logs(), 5, "SIGHUP logged")
        import time
        time.sleep(0.3)
        self.assertEqual(calls_after(r, mark), [])
        self.assertEqual(r.stop(), 0)


class CliTest(unittest.TestCase):
    def run_amc(self, *args, env=None):
        e = {k: v for k, v in os.environ.items()
             if not k.startswith("CTRL_") and k != "MCP_URL"}
        e.update(env or {})
        return subprocess.run([runlib.AMC_BIN, "run"] + list(args),
                              capture_output=True, text=True, env=e,
                              timeout=30)

    def test_help_documents_everything(self):
        p = self.run_amc("--help")
        self.assertEqual(p.returncode, 0)
        for word in ("CTRL_IPADDRESS", "CTRL_USERNAME", "CTRL_PASSWORD",
                     "CTRL_VERSION", "CLOUD_NAME", "ISTIO_ENABLED", "MCP_URL",
                     "--config FILE", "--dry-run", "--admin-port-file"):
            self.assertIn(word, p.stdout)

    def test_config_errors_are_clear_and_keep_secrets(self):
        p = self.run_amc("--source", "fs://" + EXAMPLES,
                         env={"CTRL_IPADDRESS": "10.0.0.1",
                              "CTRL_PASSWORD": "hunter2-secret"})
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr.strip().splitlines()[-1],
                         "amc run: no AVI user: set CTRL_USERNAME or "
                         "--avi-username")
        self.assertNotIn("hunter2-secret", p.stdout + p.stderr)
        p = self.run_amc("--source", "fs:///nonexistent-dir", "--dry-run",
                         "--admin-port", "-1")
        self.assertEqual(p.returncode, 2)
        self.assertIn("fs source /nonexistent-dir: No such file or directory",
                      p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
