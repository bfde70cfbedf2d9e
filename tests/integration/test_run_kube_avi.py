"""`amc run --source kube` end to end with real processes: the fake API
server (kubefake), the AVI simulator (avisim, not a dry run) and amc.

1. Objects created with kubectl reach AVI; scaling an EndpointSlice changes
   the pool's servers with exactly one AVI call; deleting the objects removes
   the tree.
2. Status write-back: Accepted/Programmed on the Gateway and its
   VirtualServices; a route to a missing Service is Accepted=False on its
   VirtualService with a Warning Event (--events).
3. Watch faults (connection drops, 410 after compaction, an API server
   restart, a slow list): a change made during the fault reaches AVI and
   nothing is deleted.
4. In-cluster auth with a rotated ServiceAccount token.
5. An initial list that fails leaves AVI's objects from an earlier run
   untouched (no DELETE).
6. Two replicas with --leader-elect: only the leader writes to AVI; after
   SIGKILL of the leader the other takes over within lease duration +
   retry period, and writes nothing before.
"""
import json
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

sys.path.insert(0, os.path.join(runlib.SOURCE_DIR, "tests", "fakes", "kube"))
from harness import KubeFake  # noqa: E402

KUBECTL = shutil.which("kubectl")
NS = "shop"
WRITES = ("POST", "PUT", "PATCH", "DELETE")

BASE = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.example.com]
  gateways: [gw]
  http:
  - route:
    - destination: {host: web, port: {number: 80}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
  selector: {app: web}
"""

BAD_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad, namespace: shop}
spec:
  hosts: [bad.example.com]
  gateways: [shop/gw]
  http:
  - route:
    - destination: {host: no-such-service, port: {number: 80}}
"""


def slice_yaml(*ips):
    return json.dumps({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": NS,
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}
                      for ip in ips],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})


def amc_objects(sim, t):
    return {n: o for n, o in runlib.sim_objects(sim, t).items()
            if n.startswith("amc--")}


def pool_ips(sim):
    """Server IPs of amc's pools (sorted), or None without a pool."""
    pools = amc_objects(sim, "pool")
    if not pools:
        return None
    return sorted(s["ip"]["addr"] for p in pools.values()
                  for s in p.get("servers", []))


def deletes(sim):
    return [w for w in runlib.sim_writes(sim) if w["method"] == "DELETE"]


def conditions(kf, plural, name):
    st, body, _ = kf.request(
        "GET", "/apis/networking.istio.io/v1/namespaces/%s/%s/%s/status"
        % (NS, plural, name))
    assert st == 200, (st, body)
    conds = (body.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in conds}


def avi_writes(run):
    """AVI write calls this replica made (its amc_avi_requests_total)."""
    total = 0.0
    for fam in run.metrics().values():
        for name, labels, value in fam["samples"]:
            if name == "amc_avi_requests_total" and \
                    labels.get("method") in WRITES and \
                    labels.get("type") not in ("login", "logout"):
                total += value
    return total


@unittest.skipUnless(KUBECTL, "kubectl is not installed")
class KubeAviTest(unittest.TestCase):
    kube_args = ()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="amc-kube-avi-")
        self.runs = []
        self.kf = None
        self.sim = None
        self.addCleanup(self.cleanup)
        self.kf = KubeFake(*self.kube_args,
                           state_dir=os.path.join(self.tmp, "kf")).start()
        self.sim = runlib.start_sim()

    def cleanup(self):
        for r in self.runs:
            r.kill()
        if self.sim:
            self.sim.stop()
        if self.kf:
            self.kf.stop()
            self.kf.cleanup()
        if not os.environ.get("KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def kubectl(self, *args, stdin=None):
        home = os.path.join(self.tmp, "home")
        os.makedirs(home, exist_ok=True)
        p = subprocess.run([KUBECTL, "--kubeconfig", self.kf.info["kubeconfig"],
                            "--cache-dir", os.path.join(home, "cache")]
                           + list(args), input=stdin, capture_output=True,
                           text=True,
                           env={"HOME": home, "PATH": os.environ["PATH"]},
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def apply(self, text):
        self.kubectl("apply", "-f", "-", stdin=text)

    def start(self, name, *extra, env=None, kubeconfig=True, rules=None):
        work = os.path.join(self.tmp, name)
        os.makedirs(work, exist_ok=True)
        args = ["--cluster", "t", "--log-format", "logfmt"]
        if kubeconfig:
            args += ["--kubeconfig", self.kf.info["kubeconfig"]]
        r = runlib.AmcRun("unused", *(args + list(extra)), sim=self.sim,
                          workdir=work, source="kube", env=env, rules=rules)
        self.runs.append(r)
        return r

    def wait_ips(self, ips, what, timeout=15):
        runlib.wait_for(lambda: pool_ips(self.sim) == sorted(ips), timeout,
                        "%s (pool servers %s, now %s)"
                        % (what, ips, pool_ips(self.sim)), interval=0.05)

    def populate(self):
        self.apply(BASE)
        self.apply(slice_yaml("10.0.0.1"))

    # ------------------------------------------------------------------
    def test_lifecycle_status_and_events(self):
        self.populate()
        r = self.start("one", "--events")
        r.wait_ready()
        self.wait_ips(["10.0.0.1"], "the tree in AVI")
        self.assertEqual(len(amc_objects(self.sim, "virtualservice")), 1)

        # Status: Accepted and Programmed on the Gateway and its VS.
        def programmed(plural, name):
            c = conditions(self.kf, plural, name)
            return c.get("Accepted", {}).get("status") == "True" and \
                c.get("Programmed", {}).get("status") == "True" and c
        runlib.wait_for(lambda: programmed("gateways", "gw"), 10,
                        "Gateway status")
        runlib.wait_for(lambda: programmed("virtualservices", "web"), 10,
                        "VirtualService status")

        # Scale: exactly one AVI call changes the pool's servers.
        runlib.sim_clear_requests(self.sim)
        self.apply(slice_yaml("10.0.0.1", "10.0.0.2"))
        self.wait_ips(["10.0.0.1", "10.0.0.2"], "scaled endpoints")
        time.sleep(0.5)  # would-be extra calls
        writes = runlib.sim_writes(self.sim)
        self.assertEqual([(w["method"], w["path"].split("/")[2])
                          for w in writes], [("PUT", "pool")], writes)

        # A route to a missing Service: Accepted=False + a Warning Event.
        self.apply(BAD_VS)

        def rejected():
            c = conditions(self.kf, "virtualservices", "bad")
            a = c.get("Accepted", {})
            return a.get("status") == "False" and a
        a = runlib.wait_for(rejected, 10, "Accepted=False on the bad VS")
        self.assertIn("no-such-service", a.get("message", ""))

        def event():
            st, body, _ = self.kf.request(
                "GET", "/api/v1/namespaces/%s/events" % NS)
            return [e for e in body.get("items", [])
                    if e["involvedObject"]["name"] == "bad"
                    and e["type"] == "Warning"]
        evs = runlib.wait_for(event, 10, "a Warning Event")
        self.assertIn("no-such-service", evs[0]["message"])
        self.assertEqual(len(event()), 1)
        # The good VS is untouched; the Gateway is still programmed.
        self.assertTrue(programmed("virtualservices", "web"))
        gw = programmed("gateways", "gw")
        self.assertTrue(gw)
        st, obj, _ = self.kf.request(
            "GET", "/apis/networking.istio.io/v1/namespaces/%s/gateways/gw"
            % NS)
        self.assertEqual(gw["Accepted"]["observedGeneration"],
                         obj["metadata"]["generation"])
        # Statuses are patched only when they change: the scale and the new
        # VirtualService re-synced the gateway, yet web's status was written
        # once, with a merge patch on the status subresource.
        patches = [q for q in self.kf.control("GET", "requests")["requests"]
                   if q["method"] == "PATCH" and
                   q["path"].endswith("/virtualservices/web/status")]
        self.assertEqual(len(patches), 1, patches)
        self.assertEqual(patches[0]["contentType"],
                         "application/merge-patch+json")

        # Delete: the tree goes.
        self.kubectl("-n", NS, "delete", "gateway", "gw")
        runlib.wait_for(lambda: not amc_objects(self.sim, "pool") and
                        not amc_objects(self.sim, "virtualservice"), 15,
                        "the tree removed")
        self.assertEqual(r.stop(), 0)

    # ------------------------------------------------------------------
    def test_rule_error_on_one_of_two_gateways(self):
        """A rule error on Gateway `boom` (rules patched to fail on it):
        Accepted=False on it and on the VirtualService bound to it and to
        `gw`; `gw` stays programmed; fixing it clears the VirtualService."""
        rules = os.path.join(self.tmp, "rules")
        shutil.copytree(os.path.join(runlib.SOURCE_DIR, "rules"), rules)
        path = os.path.join(rules, "gateway.lua")
        with open(path) as fh:
            lua = fh.read()
        head = "local function translate(gateway, rt)\n"
        self.assertIn(head, lua)
        lua = lua.replace(head, head + "  if gateway.metadata.name == "
                          "\"boom\" then error(\"boom rule failed\") end\n")
        with open(path, "w") as fh:
            fh.write(lua)
        self.populate()
        self.apply(BASE.split("---")[1].replace("name: gw,", "name: boom,"))
        self.kubectl("-n", NS, "patch", "virtualservice", "web", "--type",
                     "merge", "-p", '{"spec": {"gateways": ["gw", "boom"]}}')
        r = self.start("one", "--events", rules=rules)
        self.wait_ips(["10.0.0.1"], "gw's tree in AVI")

        def cond(plural, name, t, status):
            c = conditions(self.kf, plural, name).get(t, {})
            return c.get("status") == status and c
        c = runlib.wait_for(lambda: cond("gateways", "boom", "Accepted",
                                         "False"), 10, "boom rejected")
        self.assertIn("boom rule failed", c["message"])
        self.assertNotIn("traceback", c["message"])
        c = runlib.wait_for(lambda: cond("virtualservices", "web",
                                         "Accepted", "False"), 10,
                            "web rejected through boom")
        self.assertIn("Gateway shop/boom: ", c["message"])
        runlib.wait_for(lambda: cond("gateways", "gw", "Programmed", "True"),
                        10, "gw programmed")
        # Unbinding the failing gateway clears the VirtualService.
        self.kubectl("-n", NS, "patch", "virtualservice", "web", "--type",
                     "merge", "-p", '{"spec": {"gateways": ["gw"]}}')
        runlib.wait_for(lambda: cond("virtualservices", "web", "Accepted",
                                     "True"), 10, "web accepted again")
        self.assertEqual(r.stop(), 0)

    # ------------------------------------------------------------------
    def test_watch_faults_lose_nothing(self):
        self.populate()
        r = self.start("one")
        r.wait_ready()
        self.wait_ips(["10.0.0.1"], "the tree in AVI")
        runlib.sim_clear_requests(self.sim)

        # Connection drop, with a change made while the watches are down.
        self.kf.control("POST", "drop")
        self.apply(slice_yaml("10.0.0.2"))
        self.wait_ips(["10.0.0.2"], "change after a drop")

        # 410: history compacted, then the watches drop and must relist.
        self.apply(slice_yaml("10.0.0.3"))
        self.kf.control("POST", "compact", json.dumps({}))
        self.kf.control("POST", "drop")
        self.wait_ips(["10.0.0.3"], "change before a compaction")
        self.apply(slice_yaml("10.0.0.4"))
        self.wait_ips(["10.0.0.4"], "change after a relist")

        # API server restart (same state dir); change made while it is down
        # is impossible, so right after it comes back.
        self.kf.restart()
        self.apply(slice_yaml("10.0.0.5"))
        self.wait_ips(["10.0.0.5"], "change after a restart", timeout=20)

        # A slow list: the next list takes 1.5 s (compact + drop force it);
        # the change is made while it is slow.
        self.kf.control("POST", "faults", json.dumps(
            {"method": "GET", "path": "endpointslices", "query": "^(?!.*watch)",
             "delay": 1.5, "count": 1}))
        self.kf.control("POST", "compact", json.dumps({}))
        self.kf.control("POST", "drop")
        self.apply(slice_yaml("10.0.0.6"))
        self.wait_ips(["10.0.0.6"], "change during a slow list", timeout=20)
        slow = self.kf.control("GET", "faults")["faults"]
        self.assertEqual([f.get("hits") for f in slow], [1], slow)

        self.assertEqual(deletes(self.sim), [])
        self.assertEqual(len(amc_objects(self.sim, "virtualservice")), 1)
        self.assertTrue(r.proc.poll() is None, r.logs()[-2000:])
        self.assertEqual(r.stop(), 0)

    # ------------------------------------------------------------------
    def test_initial_list_fails_leaves_avi_untouched(self):
        self.populate()
        first = self.start("first")
        first.wait_ready()
        self.wait_ips(["10.0.0.1"], "the tree from an earlier run")
        self.assertEqual(first.stop(), 0)
        before = {t: set(amc_objects(self.sim, t))
                  for t in ("pool", "virtualservice")}
        runlib.sim_clear_requests(self.sim)
        self.kf.control("DELETE", "requests")

        # Every list of Gateways fails while amc starts.
        self.kf.control("POST", "faults", json.dumps(
            {"method": "GET", "path": "gateways$", "status": 500,
             "count": -1}))
        r = self.start("second")

        def tried():
            reqs = self.kf.control("GET", "requests")["requests"]
            return len([q for q in reqs if q["path"].endswith("/gateways")
                        and q["status"] == 500]) >= 2
        runlib.wait_for(tried, 15, "the failing list retried", interval=0.1)
        time.sleep(1.0)  # amc has AVI and the other kinds by now
        self.assertEqual(deletes(self.sim), [])
        self.assertEqual({t: set(amc_objects(self.sim, t))
                          for t in ("pool", "virtualservice")}, before)
        status, d = r.readyz()
        self.assertEqual(status, 503, d)

        # The list recovers: same objects, still no DELETE.
        self.kf.control("DELETE", "faults")
        r.wait_ready()
        self.assertEqual(deletes(self.sim), [])
        self.assertEqual({t: set(amc_objects(self.sim, t))
                          for t in ("pool", "virtualservice")}, before)
        self.assertEqual(r.stop(), 0)

    # ------------------------------------------------------------------
    def test_leader_election_one_writer(self):
        lease = ("--leader-elect", "--lease-namespace", "default",
                 "--lease-name", "amc-avi", "--lease-duration-ms", "2000",
                 "--renew-deadline-ms", "1500", "--retry-period-ms", "250")
        self.populate()
        a = self.start("a", *lease, env={"POD_NAME": "replica-a"})
        self.wait_ips(["10.0.0.1"], "the first replica leads")
        b = self.start("b", *lease, env={"POD_NAME": "replica-b"})
        b.wait_ready()
        self.apply(slice_yaml("10.0.0.2"))
        self.wait_ips(["10.0.0.2"], "the leader syncs a change")
        self.assertGreater(avi_writes(a), 0)
        self.assertEqual(avi_writes(b), 0)
        self.assertEqual(b.log_events("leader.acquired"), [])

        # SIGKILL the leader: no release; B waits out the lease.
        n_writes = len(runlib.sim_writes(self.sim))
        a.kill()
        t0 = time.monotonic()
        while True:
            # B writes nothing before it leads. The writes are counted
            # before the log is read: B logs leader.acquired before it
            # can write, so a count taken before a log without the line
            # has none of B's writes.
            writes = len(runlib.sim_writes(self.sim))
            if b.log_events("leader.acquired"):
                break
            self.assertEqual(writes, n_writes)
            self.assertLess(time.monotonic() - t0, 10, b.logs()[-2000:])
            time.sleep(0.05)
        took = time.monotonic() - t0
        # lease duration + retry period (+ slack for a loaded machine and
        # the ASan build; test_kube_lease.py checks the timing closely)
        self.assertLess(took, 2.0 + 0.25 + 3.0, took)
        # Nothing changed while B stood by, but A wrote after B read AVI
        # at its start: B re-reads AVI when it takes over, so its first
        # pass finds every object current and writes nothing.
        runlib.wait_for(lambda: b.log_events("sync.initial_done"), 10,
                        "B's first pass")
        b.wait_idle()
        self.assertEqual(runlib.sim_writes(self.sim)[n_writes:], [])
        self.assertEqual(avi_writes(b), 0)
        self.apply(slice_yaml("10.0.0.3"))
        self.wait_ips(["10.0.0.3"], "the new leader syncs a change")
        self.assertGreater(avi_writes(b), 0)
        self.assertEqual(deletes(self.sim), [])
        self.assertEqual(b.stop(), 0)


@unittest.skipUnless(KUBECTL, "kubectl is not installed")
class InClusterTokenTest(KubeAviTest):
    """In-cluster auth: the ServiceAccount token file is rotated."""

    def setUp(self):
        self.sa_tmp = tempfile.mkdtemp(prefix="amc-kube-avi-sa-")
        self.sa = os.path.join(self.sa_tmp, "sa")
        os.makedirs(self.sa)
        with open(os.path.join(self.sa, "token"), "w") as fh:
            fh.write("token-one")
        self.kube_args = ("--token-file", "%s=system:serviceaccount:x:amc"
                          % os.path.join(self.sa, "token"))
        self.addCleanup(shutil.rmtree, self.sa_tmp, True)
        super().setUp()
        shutil.copy(self.kf.info["ca"], os.path.join(self.sa, "ca.crt"))
        with open(os.path.join(self.sa, "namespace"), "w") as fh:
            fh.write("default")

    def test_token_rotation(self):
        self.populate()
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
               "KUBERNETES_SERVICE_PORT": str(self.kf.port),
               "AMC_SERVICEACCOUNT_DIR": self.sa}
        r = self.start("one", env=env, kubeconfig=False)
        r.wait_ready()
        self.wait_ips(["10.0.0.1"], "the tree in AVI")
        # Rotate: the old token stops working at once.
        tmp = os.path.join(self.sa, "token.new")
        with open(tmp, "w") as fh:
            fh.write("token-two")
        os.replace(tmp, os.path.join(self.sa, "token"))
        self.kf.control("POST", "drop")
        self.apply(slice_yaml("10.0.0.9"))
        self.wait_ips(["10.0.0.9"], "change after token rotation",
                      timeout=20)
        self.assertEqual(deletes(self.sim), [])
        self.assertEqual(r.stop(), 0)

    # The other tests run once, in KubeAviTest.
    test_lifecycle_status_and_events = None
    test_watch_faults_lose_nothing = None
    test_initial_list_fails_leaves_avi_untouched = None
    test_leader_election_one_writer = None


if __name__ == "__main__":
    unittest.main(verbosity=2)
