"""`amc run --source kube` against the fake API server (kubefake), dry run:
the examples applied with kubectl are synced; a change made through the API
re-syncs; with --leader-elect only the Lease holder reconciles, the standby
is ready, and a leader stopped with SIGTERM hands over at once."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

sys.path.insert(0, os.path.join(runlib.SOURCE_DIR, "tests", "fakes", "kube"))
from harness import KubeFake  # noqa: E402

EXAMPLES = os.path.join(runlib.SOURCE_DIR, "examples", "bookinfo")
GW = "Gateway/istio-system/bookinfo-gateway"
KUBECTL = shutil.which("kubectl")


def synced(run):
    return re.findall(r"^dry-run: synced %s calls=(\d+)$" % re.escape(GW),
                      run.output(), re.M)


@unittest.skipUnless(KUBECTL, "kubectl is not installed")
class KubeRunTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="amc-run-kube-")
        self.kf = KubeFake().start()
        self.runs = []
        self.addCleanup(self.cleanup)
        self.kubectl("apply", "-f", os.path.join(EXAMPLES,
                                                 "00-namespace.yaml"))
        self.kubectl("apply", "-f", EXAMPLES)

    def cleanup(self):
        for r in self.runs:
            r.kill()
        self.kf.stop()
        self.kf.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def kubectl(self, *args):
        home = os.path.join(self.tmp, "home")
        os.makedirs(home, exist_ok=True)
        p = subprocess.run([KUBECTL, "--kubeconfig", self.kf.info["kubeconfig"],
                            "--cache-dir", os.path.join(home, "cache")]
                           + list(args), capture_output=True, text=True,
                           env={"HOME": home, "PATH": os.environ["PATH"]},
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def start(self, name, *extra, env=None):
        work = os.path.join(self.tmp, name)
        os.makedirs(work)
        r = runlib.AmcRun("unused", "--kubeconfig", self.kf.info["kubeconfig"],
                          *extra, dry_run=True, workdir=work,
                          source="kube", env=env)
        self.runs.append(r)
        return r

    def test_sync_and_change(self):
        r = self.start("one")
        r.wait_ready()
        runlib.wait_for(lambda: synced(r), 10, "initial sync")
        self.assertGreater(int(synced(r)[0]), 3)
        self.assertEqual(r.readyz()[1]["sources"], {"kube": True})
        mark = len(r.output())
        self.kubectl("-n", "bookinfo", "delete", "virtualservice", "payments")
        runlib.wait_for(lambda: len(synced(r)) >= 2, 10, "re-sync")
        calls = [l for l in r.output()[mark:].splitlines()
                 if re.match(r"dry-run: (POST|PUT|DELETE) ", l)]
        self.assertTrue(any(l.startswith("dry-run: DELETE pool ")
                            for l in calls), calls)
        self.assertEqual(r.stop(), 0)

    def test_leader_election(self):
        lease = ("--leader-elect", "--lease-namespace", "default",
                 "--lease-name", "amc-test")
        a = self.start("a", *lease, env={"POD_NAME": "replica-a"})
        runlib.wait_for(lambda: synced(a), 15, "the first replica leads")
        b = self.start("b", *lease, env={"POD_NAME": "replica-b"})
        b.wait_ready()  # a standby is ready
        status, d = b.readyz()
        self.assertTrue(d["standby"], d)
        self.assertEqual(synced(b), [])  # and does not reconcile
        # SIGTERM releases the Lease: the standby takes over.
        self.assertEqual(a.stop(), 0)
        runlib.wait_for(lambda: synced(b), 15, "the standby takes over")
        self.assertEqual(b.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
