"""`amc run` on fs:// against the AVI simulator (real processes on
loopback): file edits reach AVI with the minimal calls; deletes remove
objects; a new VirtualService re-syncs only its gateway; an EndpointSlice
change updates only the pools that use it; a no-op reload and a restart
against an already-synced AVI make zero write calls; AVI request metrics."""
import os
import shutil
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

EXAMPLES = os.path.join(runlib.SOURCE_DIR, "examples", "bookinfo")
GW = "Gateway/istio-system/bookinfo-gateway"

OTHER_GATEWAY = """\
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: other-gateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*.other.example.com"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: other, namespace: bookinfo}
spec:
  hosts: [shop.other.example.com]
  gateways: [istio-system/other-gateway]
  http:
  - route:
    - destination: {host: productpage, port: {number: 9080}}
"""

def write_names(writes):
    """(method, type, name-or-uuid) of write requests."""
    out = []
    for w in writes:
        parts = w["path"].split("/")
        t = parts[2] if len(parts) > 2 else ""
        name = (w.get("body") or {}).get("name") or parts[-1]
        out.append((w["method"], t, name))
    return out


class AviRunTest(runlib.SimTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="amc-avi-")
        self.fs = os.path.join(self.tmp, "fs")
        shutil.copytree(EXAMPLES, self.fs)
        with open(os.path.join(self.fs, "60-other.yaml"), "w") as fh:
            fh.write(OTHER_GATEWAY)
        self.runs = []
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for r in self.runs:
            r.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self):
        r = runlib.AmcRun(self.fs, sim=self.sim, workdir=self.tmp)
        self.runs.append(r)
        r.wait_ready()
        return r


    def wait_writes(self, cond, what):
        t0 = time.monotonic()
        writes = runlib.wait_for(
            lambda: (lambda w: w if cond(w) else None)(
                runlib.sim_writes(self.sim)), 10, what)
        dt = time.monotonic() - t0
        print("  %s: %.3f s" % (what, dt), file=sys.stderr)
        return writes

    def test_initial_sync_edit_delete(self):
        r = self.start()
        pools = runlib.sim_objects(self.sim, "pool")
        vss = runlib.sim_objects(self.sim, "virtualservice")
        self.assertTrue(any("bookinfo-gateway" in n for n in vss))
        self.assertTrue(any("other-gateway" in n for n in vss))
        self.assertTrue(any("ratings" in n for n in pools))
        r.wait_idle()
        # Metrics of the AVI requests, parsed.
        self.assertGreater(r.metric("amc_avi_requests_total", method="POST",
                                    type="pool", code="201"), 0)
        # 1. Edit a VirtualService (weights 90/10 -> 70/30): one PUT of
        #    the pool group.
        runlib.sim_clear_requests(self.sim)
        path = os.path.join(self.fs, "30-routing.yaml")
        with open(path) as fh:
            text = fh.read()
        text = text.replace("weight: 90", "weight: 70").replace(
            "weight: 10", "weight: 30")
        runlib.atomic_write(path, text)
        writes = self.wait_writes(lambda w: len(w) >= 1, "edit -> AVI")
        r.wait_idle()
        writes = write_names(runlib.sim_writes(self.sim))
        self.assertEqual(len(writes), 1, writes)
        self.assertEqual(writes[0][:2], ("PUT", "poolgroup"))
        pg = [o for n, o in runlib.sim_objects(self.sim, "poolgroup").items()
              if n.endswith("bookinfo--bookinfo--http1")][0]
        self.assertEqual(sorted(m["ratio"] for m in pg["members"]), [30, 70])
        # 2. Delete a file: its objects go (payments pool and pool group),
        #    the policy set loses its rule.
        runlib.sim_clear_requests(self.sim)
        os.unlink(os.path.join(self.fs, "40-external.yaml"))
        self.wait_writes(lambda w: any(x["method"] == "DELETE" for x in w),
                         "delete -> AVI")
        r.wait_idle()
        self.assertFalse([n for n in runlib.sim_objects(self.sim, "pool")
                          if "payments" in n])
        self.assertFalse([n for n in runlib.sim_objects(self.sim,
                                                        "poolgroup")
                          if "payments" in n])
        kinds = sorted((m, t) for m, t, _ in
                       write_names(runlib.sim_writes(self.sim)))
        self.assertEqual(kinds, [("DELETE", "pool"), ("DELETE", "poolgroup"),
                                 ("PUT", "httppolicyset")])
        self.assertEqual(r.stop(), 0)

    def test_new_vs_and_endpointslice_touch_only_their_users(self):
        r = self.start()
        r.wait_idle()
        # 3. A new VirtualService on bookinfo-gateway: only that gateway's
        #    objects are written.
        runlib.sim_clear_requests(self.sim)
        with open(os.path.join(self.fs, "70-extra.yaml"), "w") as fh:
            fh.write(runlib.EXTRA_VS)
        self.wait_writes(lambda w: len(w) >= 1, "new VS -> AVI")
        r.wait_idle()
        writes = write_names(runlib.sim_writes(self.sim))
        self.assertTrue(writes)
        for m, t, name in writes:
            self.assertIn("bookinfo-gateway", name, writes)
            self.assertNotIn("other-gateway", name, writes)
        reconciled = {e.get("key") for e in r.log_events("translate.done")}
        # 4. An EndpointSlice change: only the pools with those endpoints.
        runlib.sim_clear_requests(self.sim)
        path = os.path.join(self.fs, "10-workloads.yaml")
        with open(path) as fh:
            text = fh.read()
        runlib.atomic_write(path, text.replace("10.1.0.31", "10.1.0.77"))
        self.wait_writes(lambda w: len(w) >= 1, "EndpointSlice -> AVI")
        r.wait_idle()
        writes = write_names(runlib.sim_writes(self.sim))
        self.assertTrue(all(m == "PUT" and t == "pool" for m, t, _ in writes),
                        writes)
        self.assertTrue(all("ratings" in n for _, _, n in writes), writes)
        pools = runlib.sim_objects(self.sim, "pool")
        ratings = [o for n, o in pools.items() if "ratings" in n]
        self.assertTrue(ratings)
        for o in ratings:
            self.assertEqual([s["ip"]["addr"] for s in o["servers"]],
                             ["10.1.0.77"])
        self.assertIn(GW, reconciled)
        self.assertEqual(r.stop(), 0)

    def test_no_op_reload_and_restart_make_no_writes(self):
        r = self.start()
        r.wait_idle()
        before = runlib.sim_objects(self.sim, "pool")
        runlib.sim_clear_requests(self.sim)
        # No-op reload: SIGHUP (same rules) and a full resync.
        r.signal(signal.SIGHUP)
        runlib.wait_for(lambda: "signal=SIGHUP" in r.logs(), 5, "SIGHUP")
        time.sleep(0.3)
        r.wait_idle()
        self.assertEqual(runlib.sim_writes(self.sim), [])
        self.assertEqual(r.stop(), 0)
        # Restart against the already-synced simulator: reads only.
        runlib.sim_clear_requests(self.sim)
        r2 = self.start()
        r2.wait_idle()
        time.sleep(0.2)
        self.assertEqual(runlib.sim_writes(self.sim), [])
        self.assertEqual(runlib.sim_objects(self.sim, "pool").keys(),
                         before.keys())
        self.assertEqual(r2.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
