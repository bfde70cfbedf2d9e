"""`amc run` with two sources: the Istio kinds over MCP (the fake MCP server
tests/fakes/mcp/mcpserver.py, legacy MCP and MCP over xDS) and Services,
EndpointSlices, Pods and Secrets from fs://, against the AVI simulator.

The fs:// directory is a full copy of examples/bookinfo, Istio objects
included: MCP owns the Istio kinds, so removing a VirtualService over MCP
must remove its AVI objects although the file still has it.

Per protocol: the AVI tree equals what `amc translate examples/bookinfo`
produces (object names per type); an update over MCP is one PUT; a removed
VirtualService deletes exactly its objects; a malformed resource is NACKed
and nothing on AVI changes. Faults: stream reset, GOAWAY, server
restart, Trailers-Only refusals, a slow server: amc reconnects, resubscribes
and converges to a change made during the fault, with no DELETE (both
protocols)."""
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

sys.path.insert(0, os.path.join(runlib.SOURCE_DIR, "tests", "fakes", "mcp"))
import harness  # noqa: E402
import yaml  # noqa: E402

EXAMPLES = os.path.join(runlib.SOURCE_DIR, "examples", "bookinfo")


def write_names(writes):
    """(method, type, name-or-uuid) of write requests."""
    out = []
    for w in writes:
        parts = w["path"].split("/")
        t = parts[2] if len(parts) > 2 else ""
        name = (w.get("body") or {}).get("name") or parts[-1]
        out.append((w["method"], t, name))
    return out


def bookinfo_vs(name):
    with open(os.path.join(EXAMPLES, "30-routing.yaml")) as fh:
        for d in yaml.safe_load_all(fh):
            if d and d["kind"] == "VirtualService" and \
                    d["metadata"]["name"] == name:
                return d
    raise AssertionError("no VirtualService " + name)


def with_weights(vs, a, b):
    """The VirtualService with its 90/10 split changed to a/b."""
    vs = copy.deepcopy(vs)
    n = 0
    for h in vs["spec"]["http"]:
        ws = [r for r in h.get("route", []) if "weight" in r]
        if len(ws) == 2:
            ws[0]["weight"], ws[1]["weight"] = a, b
            n += 1
    assert n == 1, "expected one weighted route"
    return vs


class Setup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sim = runlib.start_sim()
        out = subprocess.run(
            [runlib.AMC_BIN, "translate", "--rules",
             os.path.join(runlib.SOURCE_DIR, "rules"), EXAMPLES],
            check=True, capture_output=True, cwd=runlib.SOURCE_DIR).stdout
        cls.expected = {t: sorted(o["name"] for o in objs)
                        for t, objs in json.loads(out).items()
                        if t != "diagnostics"}

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def setUp(self):
        runlib.sim_control(self.sim, "POST", "/_sim/reset")
        self.tmp = tempfile.mkdtemp(prefix="amc-run-mcp-")
        self.fs = os.path.join(self.tmp, "fs")
        shutil.copytree(EXAMPLES, self.fs)
        self.closers = []
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for c in reversed(self.closers):
            c()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, scheme, env=None):
        self.mcp = harness.McpServer(self.tmp, fixtures=EXAMPLES)
        self.closers.append(self.mcp.close)
        url = "%s://127.0.0.1:%d" % (scheme, self.mcp.port)
        r = runlib.AmcRun(self.fs, "--mcp-url", url, sim=self.sim,
                          workdir=self.tmp, env=env)
        self.closers.append(r.kill)
        r.wait_ready()
        r.wait_idle()
        return r


    def writes(self):
        return write_names(runlib.sim_writes(self.sim))

    def wait_writes(self, cond, what, timeout=10):
        return runlib.wait_for(
            lambda: (lambda w: w if cond(w) else None)(self.writes()),
            timeout, what)

    def ratios(self):
        pg = [o for n, o in runlib.sim_objects(self.sim, "poolgroup").items()
              if n.endswith("bookinfo--bookinfo--http1")]
        return sorted(m["ratio"] for m in pg[0]["members"]) if pg else None

    def assert_tree(self):
        for t, names in self.expected.items():
            self.assertEqual(sorted(runlib.sim_objects(self.sim, t)), names,
                             t)


class McpProtocols(Setup):
    def check_protocol(self, scheme, env=None):
        r = self.start(scheme, env)
        # 1. The full tree, Istio config from MCP, the rest from fs://.
        self.assert_tree()
        self.assertEqual(r.metric("amc_source_synced", source="mcp"), 1)
        # 2. An update over MCP: weights 90/10 -> 70/30, one PUT.
        runlib.sim_clear_requests(self.sim)
        self.mcp.control("/apply", {"objects": [
            with_weights(bookinfo_vs("bookinfo"), 70, 30)]})
        self.wait_writes(lambda w: len(w) >= 1, "update -> AVI")
        r.wait_idle()
        w = self.writes()
        self.assertEqual([x[:2] for x in w], [("PUT", "poolgroup")], w)
        self.assertEqual(self.ratios(), [30, 70])
        # 3. VirtualService payments removed over MCP (the fs:// file still
        #    has it: MCP owns the kind): its pool and pool group go.
        runlib.sim_clear_requests(self.sim)
        self.mcp.control("/delete", {"kind": "VirtualService",
                                     "namespace": "bookinfo",
                                     "name": "payments"})
        self.wait_writes(lambda w: any(x[0] == "DELETE" for x in w),
                         "delete -> AVI")
        r.wait_idle()
        self.assertEqual(sorted(x[:2] for x in self.writes()),
                         [("DELETE", "pool"), ("DELETE", "poolgroup"),
                          ("PUT", "httppolicyset")])
        self.assertFalse([n for n in runlib.sim_objects(self.sim, "pool")
                          if "payments" in n])
        # 3b. fs:// does not own the Istio kinds: a file edit that moves an
        #     endpoint and changes the payments VirtualService only moves
        #     the endpoint (the VirtualService stays deleted).
        runlib.sim_clear_requests(self.sim)
        ext = os.path.join(self.fs, "40-external.yaml")
        with open(ext) as fh:
            text = fh.read().replace("prefix: /pay}", "prefix: /pay2}")
        self.assertIn("/pay2", text)
        runlib.atomic_write(ext, text)
        path = os.path.join(self.fs, "10-workloads.yaml")
        with open(path) as fh:
            runlib.atomic_write(path, fh.read().replace("10.1.0.31",
                                                        "10.1.0.77"))
        self.wait_writes(lambda w: len(w) >= 1, "EndpointSlice -> AVI")
        time.sleep(0.3)
        r.wait_idle()
        w = self.writes()
        self.assertTrue(all(m == "PUT" and t == "pool" and "ratings" in n
                            for m, t, n in w), w)
        # 4. A malformed resource: NACKed, nothing serving is lost.
        runlib.sim_clear_requests(self.sim)
        nacks = len(self.mcp.state()["nacks"])
        self.mcp.control("/bad", {"kind": "VirtualService",
                                  "namespace": "bookinfo", "name": "broken",
                                  "how": "garbage"})
        st = harness.wait_until(
            lambda: (lambda s: s if len(s["nacks"]) > nacks else None)(
                self.mcp.state()), 10, "a NACK")
        self.assertIn("broken", json.dumps(st["nacks"][-1]))
        runlib.wait_for(lambda: r.metric("amc_source_errors_total",
                                         source="mcp") >= 1, 5,
                        "source error counted")
        time.sleep(0.3)
        r.wait_idle()
        self.assertEqual(self.writes(), [])
        self.assertEqual(self.ratios(), [30, 70])
        self.assertEqual(r.stop(), 0)

    def test_legacy(self):
        self.check_protocol("mcp")

    def test_xds(self):
        self.check_protocol("xds")
        self.assertFalse([q for q in self.mcp.state()["requests"]
                          if q.get("delta")])

    def test_xds_delta(self):
        """MCP_DELTA=true: the same over DeltaAggregatedResources (the
        removal in step 3 arrives as removed_resources)."""
        self.check_protocol("xds", env={"MCP_DELTA": "true"})
        reqs = self.mcp.state()["requests"]
        self.assertTrue(reqs)
        self.assertEqual([q for q in reqs if not q.get("delta")], [])


class McpFaults(Setup):
    def test_faults_xds(self):
        self.check_faults("xds")

    def test_faults_legacy(self):
        self.check_faults("mcp")

    def check_faults(self, scheme):
        r = self.start(scheme)
        self.assert_tree()
        vs = bookinfo_vs("bookinfo")

        def fault(what, before, after, a, b, reconnects=1):
            runlib.sim_clear_requests(self.sim)
            started = self.mcp.state()["streams_started"]
            restarts = r.metric("amc_watch_restarts_total", source="mcp")
            before()
            # The change is made while the fault lasts.
            self.mcp.control("/apply", {"objects": [with_weights(vs, a, b)]})
            if after:
                after()
            runlib.wait_for(lambda: self.ratios() == sorted([a, b]), 20,
                            "%s: change reaches AVI" % what)
            if what != "slow server":
                runlib.wait_for(
                    lambda: self.mcp.state()["streams_started"] > started
                    and r.metric("amc_watch_restarts_total", source="mcp")
                    >= restarts + reconnects, 10, "%s: resubscribed" % what)
            r.wait_idle()
            w = self.writes()
            self.assertFalse([x for x in w if x[0] == "DELETE"], (what, w))
            self.assertEqual([x[:2] for x in w], [("PUT", "poolgroup")],
                             (what, w))

        ctl = self.mcp.control
        fault("stream reset", lambda: ctl("/reset"), None, 80, 20)
        fault("GOAWAY", lambda: ctl("/goaway"), None, 60, 40)
        fault("server restart", lambda: ctl("/stop"),
              lambda: (time.sleep(0.5), ctl("/start")), 50, 50)
        fault("trailers-only",
              lambda: (ctl("/trailers_only", {"code": "UNAVAILABLE",
                                              "count": 2}),
                       ctl("/abort", {"code": "UNAVAILABLE"})),
              None, 70, 30, reconnects=3)  # the abort + 2 refusals
        fault("slow server", lambda: ctl("/slow", {"delay_ms": 400}),
              lambda: None, 85, 15)
        ctl("/slow", {"delay_ms": 0})
        # Nothing lost: the whole tree is still there.
        self.assert_tree()
        self.assertEqual(r.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
