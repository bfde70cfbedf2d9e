"""`amc run` as the original controller was deployed: ISTIO_ENABLED=true and
MCP_URL (no --source: kube + MCP), the Kubernetes objects from the fake API
server (kubefake), the Istio objects from the fake MCP server (xDS), dry run.
Both sources must sync before anything is reconciled; MCP owns the Istio
kinds: deleting a VirtualService through the Kubernetes API changes nothing,
deleting it over MCP removes its AVI objects; a Service change through the
Kubernetes API still reaches AVI."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

EXAMPLES = os.path.join(runlib.SOURCE_DIR, "examples", "bookinfo")
GW = "Gateway/istio-system/bookinfo-gateway"
KUBECTL = shutil.which("kubectl")


def load(name, path):
    """The two fakes both call their helper module `harness`."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(path))
    spec.loader.exec_module(mod)
    return mod


kube_harness = load("kube_harness", os.path.join(
    runlib.SOURCE_DIR, "tests", "fakes", "kube", "harness.py"))
mcp_harness = load("mcp_harness", os.path.join(
    runlib.SOURCE_DIR, "tests", "fakes", "mcp", "harness.py"))


def synced(run):
    return re.findall(r"^dry-run: synced %s calls=(\d+)$" % re.escape(GW),
                      run.output(), re.M)


@unittest.skipUnless(KUBECTL, "kubectl is not installed")
class McpKubeRunTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="amc-run-mcp-kube-")
        self.closers = []
        self.addCleanup(self.cleanup)
        self.kf = kube_harness.KubeFake().start()
        self.closers += [self.kf.cleanup, self.kf.stop]
        self.kubectl("apply", "-f", os.path.join(EXAMPLES,
                                                 "00-namespace.yaml"))
        self.kubectl("apply", "-f", EXAMPLES)
        self.mcp = mcp_harness.McpServer(self.tmp, fixtures=EXAMPLES)
        self.closers.append(self.mcp.close)

    def cleanup(self):
        for c in reversed(self.closers):
            c()
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

    def calls_since(self, r, mark):
        return [l for l in r.output()[mark:].splitlines()
                if re.match(r"dry-run: (POST|PUT|DELETE) ", l)]

    def test_istio_from_mcp_rest_from_kube(self):
        work = os.path.join(self.tmp, "run")
        os.makedirs(work)
        env = {"ISTIO_ENABLED": "True",
               "MCP_URL": "xds://127.0.0.1:%d" % self.mcp.port}
        # source=mcp is what an empty --source becomes with MCP_URL set.
        r = runlib.AmcRun("unused", "--kubeconfig",
                          self.kf.info["kubeconfig"], dry_run=True,
                          workdir=work, source="mcp", env=env)
        self.closers.append(r.kill)
        r.wait_ready()
        runlib.wait_for(lambda: synced(r), 10, "initial sync")
        self.assertGreater(int(synced(r)[0]), 3)
        d = r.readyz()[1]
        self.assertEqual(d["sources"], {"kube": True, "mcp": True}, d)
        # The Kubernetes API does not own VirtualServices any more.
        mark, n = len(r.output()), len(synced(r))
        self.kubectl("-n", "bookinfo", "delete", "virtualservice", "payments")
        time.sleep(0.5)
        self.assertEqual(len(synced(r)), n)
        self.assertEqual(self.calls_since(r, mark), [])
        # MCP does.
        self.mcp.control("/delete", {"kind": "VirtualService",
                                     "namespace": "bookinfo",
                                     "name": "payments"})
        runlib.wait_for(lambda: len(synced(r)) > n, 10, "re-sync")
        calls = self.calls_since(r, mark)
        self.assertTrue(any(l.startswith("dry-run: DELETE pool ")
                            for l in calls), calls)
        # Services and EndpointSlices still come from the Kubernetes API.
        mark, n = len(r.output()), len(synced(r))
        sl = self.kubectl("-n", "bookinfo", "get", "endpointslices", "-o",
                          "name")
        self.assertIn("ratings", sl)
        self.kubectl("-n", "bookinfo", "delete", "service", "ratings")
        runlib.wait_for(lambda: len(synced(r)) > n, 10,
                        "re-sync after a Service change")
        self.assertTrue(self.calls_since(r, mark))
        self.assertEqual(r.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
