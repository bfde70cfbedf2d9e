"""`amc run --dry-run` with two Gateways: a change re-queues exactly the
gateways whose last translation read it. Rules find a gateway's
VirtualServices with an indexed lookup on spec.gateways; editing a
VirtualService bound to one gateway must re-sync only that gateway, and
moving it to the other gateway must re-sync both (the one it left and the
one it joined)."""
import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

EXAMPLES = os.path.join(runlib.SOURCE_DIR, "examples", "bookinfo")
GW_A = "Gateway/istio-system/bookinfo-gateway"
GW_B = "Gateway/istio-system/second-gateway"

SECOND_GW = """apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: second-gateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http-second, protocol: HTTP}
    hosts: ["second.example.com"]
"""

SECOND_VS = """apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: second, namespace: bookinfo}
spec:
  hosts: [second.example.com]
  gateways: [%s]
  http:
  - match:
    - uri: {prefix: %s}
    route:
    - destination: {host: productpage, port: {number: 9080}}
"""


def syncs(run, key):
    return len(re.findall(r"^dry-run: synced %s calls=\d+$" % re.escape(key),
                          run.output(), re.M))


class DepsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="amc-deps-")
        self.fs = os.path.join(self.tmp, "fs")
        shutil.copytree(EXAMPLES, self.fs)
        with open(os.path.join(self.fs, "50-second-gw.yaml"), "w") as fh:
            fh.write(SECOND_GW)
        self.write_vs("istio-system/second-gateway", "/one")
        self.run_ = runlib.AmcRun(self.fs, dry_run=True, workdir=self.tmp)
        self.addCleanup(self.cleanup)

    def cleanup(self):
        self.run_.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write_vs(self, gateway, prefix):
        path = os.path.join(self.fs, "60-second-vs.yaml")
        with open(path + ".tmp", "w") as fh:
            fh.write(SECOND_VS % (gateway, prefix))
        os.replace(path + ".tmp", path)

    def idle(self):
        """Waits until nothing is queued or being reconciled."""
        self.run_.wait_idle()

    def wait_syncs(self, key, n):
        runlib.wait_for(lambda: syncs(self.run_, key) >= n, 10,
                        "%d syncs of %s" % (n, key))

    def test_edit_requeues_only_bound_gateway_move_requeues_both(self):
        r = self.run_
        r.wait_ready()
        self.wait_syncs(GW_A, 1)
        self.wait_syncs(GW_B, 1)
        self.idle()
        self.assertEqual((syncs(r, GW_A), syncs(r, GW_B)), (1, 1))
        # Edit the VirtualService bound to B: B only.
        self.write_vs("istio-system/second-gateway", "/two")
        self.wait_syncs(GW_B, 2)
        self.idle()
        self.assertEqual((syncs(r, GW_A), syncs(r, GW_B)), (1, 2),
                         r.output())
        # Move it from B to A: both (B must drop its routes).
        self.write_vs("istio-system/bookinfo-gateway", "/two")
        self.wait_syncs(GW_A, 2)
        self.wait_syncs(GW_B, 3)
        self.idle()
        self.assertEqual((syncs(r, GW_A), syncs(r, GW_B)), (2, 3),
                         r.output())
        # Edit it while bound to A: A only.
        self.write_vs("istio-system/bookinfo-gateway", "/three")
        self.wait_syncs(GW_A, 3)
        self.idle()
        self.assertEqual((syncs(r, GW_A), syncs(r, GW_B)), (3, 3),
                         r.output())
        # Delete it: A only (B no longer read it).
        os.unlink(os.path.join(self.fs, "60-second-vs.yaml"))
        self.wait_syncs(GW_A, 4)
        self.idle()
        self.assertEqual((syncs(r, GW_A), syncs(r, GW_B)), (4, 3),
                         r.output())
        self.assertEqual(r.stop(), 0)


if __name__ == "__main__":
    unittest.main()
