"""`amc sync` against the AVI simulator (tests/fakes/avi/avisim.py).

Translate examples/, sync, and check the simulator's state and request log:
convergence, zero calls on a second sync, exactly the affected objects on a
change, whole-tree deletes, foreign objects untouched, and convergence under
faults (session expiry, CSRF rejection, 429 storms, 5xx, timeouts,
connection resets, 409/412 races, a simulator restart). Each test resets
the simulator; every process started here is stopped (also on failure).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

SRC = os.environ.get("AMC_SOURCE_DIR",
                     os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "fakes", "avi"))

from avisim_testlib import PASSWORD, SimProcess  # noqa: E402

AMC = os.environ.get("AMC_BIN") or os.path.join(
    os.environ.get("AMC_BUILD_DIR", os.path.join(SRC, "build")), "amc")
EXAMPLES = os.path.join(SRC, "examples")
CLUSTER = "itest"
PREFIX = "amc--%s--" % CLUSTER
WRITES = ("POST", "PUT", "PATCH", "DELETE")

GW2 = """
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: second-gateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*.second.example.com"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: second, namespace: bookinfo}
spec:
  hosts: [shop.second.example.com]
  gateways: [istio-system/second-gateway]
  http:
  - route:
    - destination: {host: ratings, port: {number: 80}}
"""


# ---- helpers -----------------------------------------------------------------

def ref_key(v):
    """'/api/pool?name=x' or 'http://h/api/pool/pool-1#x' -> ('pool', 'x')."""
    if not isinstance(v, str) or "/api/" not in v:
        return None
    rest = v.split("/api/", 1)[1]
    m = re.match(r"([a-z0-9]+)/?\?(.*)$", rest)
    if m:
        q = urllib.parse.parse_qs(m.group(2))
        return (m.group(1), q.get("name", [None])[0])
    m = re.match(r"([a-z0-9]+)/([^#?]+)(?:#(.*))?$", rest)
    if m:
        return (m.group(1), m.group(3) or m.group(2))
    return None


def subset(d, s, path="$"):
    """desired ⊆ server; returns None or a description of the difference."""
    if d is None:
        return None
    if isinstance(d, dict):
        if not isinstance(s, dict):
            return "%s: expected an object, got %r" % (path, s)
        for k, v in d.items():
            if k not in s:
                if v in ([], {}, None):
                    continue
                return "%s.%s: missing on the controller" % (path, k)
            r = subset(v, s[k], "%s.%s" % (path, k))
            if r:
                return r
        return None
    if isinstance(d, list):
        if not isinstance(s, list) or len(s) != len(d):
            return "%s: list differs: %r vs %r" % (path, d, s)
        for i, (a, b) in enumerate(zip(d, s)):
            r = subset(a, b, "%s[%d]" % (path, i))
            if r:
                return r
        return None
    if d == s or s == "<sensitive>":
        return None
    if ref_key(d) and ref_key(d) == ref_key(s):
        return None
    return "%s: %r != %r" % (path, d, s)


class Sync(unittest.TestCase):
    sim = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="amc-avi-sync-")
        cls.pwfile = os.path.join(cls.tmp, "password")
        with open(cls.pwfile, "w") as fh:
            fh.write(PASSWORD + "\n")
        cls.sim = SimProcess()
        cls.desired_examples = cls.translate([EXAMPLES])

    @classmethod
    def tearDownClass(cls):
        if cls.sim:
            cls.sim.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        st, _ = self.sim.control("POST", "/_sim/reset", {})
        self.assertEqual(st, 200)
        self.extra_sims = []

    def tearDown(self):
        for s in self.extra_sims:
            s.stop()

    # -- running amc --

    @classmethod
    def translate(cls, paths):
        p = subprocess.run([AMC, "translate", "--cluster", CLUSTER,
                            "--show-secrets"] + paths,
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError("amc translate failed: %s" % p.stderr)
        doc = json.loads(p.stdout)
        out = {}
        for t, objs in doc.items():
            if t == "diagnostics":
                continue
            for o in objs:
                out[(t, o["name"])] = o
        return out

    def url(self, sim=None, scheme="https"):
        sim = sim or self.sim
        return "%s://127.0.0.1:%d" % (scheme, sim.ports[scheme])

    def amc_sync(self, *args, sim=None, scheme="https", ca=True, paths=None,
                 extra_env=None, timeout=120, background=False):
        sim = sim or self.sim
        cmd = [AMC, "sync", "--avi", self.url(sim, scheme), "--username",
               "admin", "--password-file", self.pwfile, "--cluster", CLUSTER,
               "--backoff", "50"]
        if ca and scheme == "https":
            cmd += ["--ca", sim.ports["ca"]]
        cmd += list(args)
        cmd += paths if paths is not None else [EXAMPLES]
        env = dict(os.environ)
        for k in ("CTRL_IPADDRESS", "CTRL_USERNAME", "CTRL_PASSWORD",
                  "CTRL_VERSION", "CLUSTER_NAME"):
            env.pop(k, None)
        env.update(extra_env or {})
        if background:
            return subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True,
                                    env=env)
        p = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout, env=env)
        return p.returncode, p.stdout, p.stderr

    # -- inspecting the simulator --

    def ctl(self, method, path, body=None, sim=None):
        st, data = (sim or self.sim).control(method, path, body)
        self.assertLess(st, 300, (method, path, data))
        return data

    def fault(self, **f):
        return self.ctl("POST", "/_sim/faults", f)

    def objects(self, sim=None, owned=True):
        """{(type, name): object} of amc's objects (by name prefix)."""
        state = self.ctl("GET", "/_sim/state", sim=sim)["objects"]
        out = {}
        for t, objs in state.items():
            for o in objs:
                if owned and (not o.get("name", "").startswith(PREFIX) or
                              o.get("created_by") not in
                              (None, "amc-" + CLUSTER)):
                    continue
                key = (t, o["name"])
                self.assertNotIn(key, out, "duplicate object %s" % (key,))
                out[key] = o
        return out

    def requests(self, sim=None):
        return self.ctl("GET", "/_sim/requests", sim=sim)["requests"]

    def clear_requests(self, sim=None):
        self.ctl("DELETE", "/_sim/requests", sim=sim)

    def writes(self, sim=None):
        return [r for r in self.requests(sim)
                if r["method"] in WRITES and r["path"].startswith("/api/")]

    def assert_converged(self, desired, sim=None):
        have = self.objects(sim)
        self.assertEqual(sorted(have), sorted(desired))
        for k, d in desired.items():
            got = dict(have[k])
            marks = got.get("markers", [])
            # amc adds its checksum marker to what the rules produced.
            self.assertEqual([m["key"] for m in marks][-1], "amc-cksum", k)
            got["markers"] = marks[:-1]
            diff = subset(d, got)
            self.assertIsNone(diff, "%s %s: %s" % (k[0], k[1], diff))

    def empty(self):
        path = os.path.join(self.tmp, "empty.json")
        with open(path, "w") as fh:
            fh.write("{}")
        return path

    def sync_ok(self, *args, **kw):
        rc, out, err = self.amc_sync(*args, **kw)
        self.assertEqual(rc, 0, err)
        return out, err

    # ---- tests ---------------------------------------------------------------

    def test_examples_converge_then_zero_calls(self):
        out, err = self.sync_ok()
        self.assertIn("0 failed", err)
        self.assert_converged(self.desired_examples)
        # Dependency order: every create after the objects it refers to.
        order = [r["path"].split("/")[2] for r in self.writes()]
        rank = ["vsvip", "sslkeyandcertificate", "healthmonitor", "pool",
                "poolgroup", "httppolicyset", "virtualservice"]
        self.assertEqual(order, sorted(order, key=rank.index))
        posts = [r for r in self.writes() if r["method"] == "POST"]
        self.assertEqual(len(posts), len(self.desired_examples))
        # Parent VS before its child.
        vs = [r["body"] for r in self.requests()
              if r["method"] == "POST" and r["path"] == "/api/virtualservice"]
        self.assertEqual(vs[0].get("type"), "VS_TYPE_VH_PARENT")
        self.assertTrue(all(v.get("type") == "VS_TYPE_VH_CHILD"
                            for v in vs[1:]))

        self.clear_requests()
        out, err = self.sync_ok()
        reqs = self.requests()
        self.assertEqual(self.writes(), [])
        # Only the login, the one cache read per owned type and the logout.
        gets = [r for r in reqs if r["method"] == "GET"]
        self.assertEqual(len(gets), 9, gets)
        self.assertEqual([r["path"] for r in reqs if r["method"] != "GET"],
                         ["/login", "/logout"])
        self.assertEqual(self.ctl("GET", "/_sim/state")["sessions"], 0)
        self.assertIn("POST 0, PUT 0, DELETE 0", err)

    def test_change_one_route_changes_only_affected_objects(self):
        self.sync_ok()
        before = {k: o["uuid"] for k, o in self.objects().items()}
        d = os.path.join(self.tmp, "changed")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(EXAMPLES, d)
        routing = os.path.join(d, "bookinfo", "30-routing.yaml")
        with open(routing) as fh:
            text = fh.read()
        text2 = text.replace("weight: 90", "weight: 70").replace(
            "weight: 10", "weight: 30")
        self.assertNotEqual(text, text2)
        with open(routing, "w") as fh:
            fh.write(text2)
        desired2 = self.translate([d])
        old = self.desired_examples
        changed = {k for k in desired2 if k in old and desired2[k] != old[k]}
        added = set(desired2) - set(old)
        removed = set(old) - set(desired2)
        self.assertTrue(changed)
        self.clear_requests()
        self.sync_ok(paths=[d])
        self.assert_converged(desired2)
        uuid_name = {}
        for k, o in self.objects().items():
            uuid_name[o["uuid"]] = k
        for k, u in before.items():
            uuid_name.setdefault(u, k)
        got = set()
        for r in self.writes():
            parts = r["path"].split("/")
            if r["method"] == "POST":
                got.add(("POST", (parts[2], r["body"]["name"])))
            else:
                got.add((r["method"], uuid_name[parts[3]]))
        want = ({("PUT", k) for k in changed} | {("POST", k) for k in added}
                | {("DELETE", k) for k in removed})
        self.assertEqual(got, want)
        self.assertEqual(len(self.writes()), len(want))
        # Unchanged objects kept their uuids.
        after = self.objects()
        for k in desired2:
            if k in before:
                self.assertEqual(after[k]["uuid"], before[k])

    def test_gc_deletes_a_removed_gateway_tree_and_nothing_else(self):
        d = os.path.join(self.tmp, "two")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(EXAMPLES, d)
        with open(os.path.join(d, "bookinfo", "50-second.yaml"), "w") as fh:
            fh.write(GW2)
        both = self.translate([d])
        second = {k for k in both if k not in self.desired_examples}
        self.assertTrue(second)
        # Something someone else made, with our prefix but not our mark.
        self.ctl("POST", "/_sim/objects", {
            "type": "pool", "tenant": "admin",
            "object": {"name": PREFIX + "istio-system--second-gateway--x",
                       "created_by": "someone-else"}})
        self.sync_ok(paths=[d])
        self.assert_converged(both)
        before = self.objects()
        self.clear_requests()
        self.sync_ok("--gc")  # examples only: the second gateway is gone
        ws = self.writes()
        self.assertTrue(all(r["method"] == "DELETE" for r in ws), ws)
        self.assertEqual(len(ws), len(second))
        deleted = {before[k]["uuid"] for k in second}
        self.assertEqual({r["path"].split("/")[3] for r in ws}, deleted)
        after = self.objects(owned=False)
        for k in second:
            self.assertNotIn(k, after)
        self.assertIn(("pool", PREFIX + "istio-system--second-gateway--x"),
                      after)
        self.assert_converged(self.desired_examples)
        # Referrers before referees.
        types = [r["path"].split("/")[2] for r in ws]
        self.assertEqual(types[0], "virtualservice")
        self.assertEqual(types[-1], "vsvip")

    def test_start_reads_every_page(self):
        # 110 owned leftovers (page_size is 100): gc must see them all.
        for i in range(110):
            self.ctl("POST", "/_sim/objects", {
                "type": "pool", "tenant": "admin",
                "object": {"name": "%sold--%03d" % (PREFIX, i),
                           "created_by": "amc-" + CLUSTER,
                           "markers": [{"key": "gateway",
                                        "values": ["ns/gone"]}]}})
        self.sync_ok("--gc", "--rate", "200", "--burst", "50")
        pool_gets = [r for r in self.requests()
                     if r["method"] == "GET" and r["path"] == "/api/pool"]
        self.assertEqual(len(pool_gets), 2)
        self.assertIn("page=2", pool_gets[1]["query"])
        deletes = [r for r in self.writes() if r["method"] == "DELETE"]
        self.assertEqual(len(deletes), 110)
        self.assert_converged(self.desired_examples)

    def test_owned_object_without_checksum_is_compared_whole(self):
        # The start reads list only the fields the cache needs; an owned
        # object without amc's checksum is read whole (by uuid) and
        # compared field by field: equal to the desired one, it is left
        # alone (never re-sent).
        system = {"cloud_ref", "tenant_ref", "vrf_ref"}
        (t, name), want = sorted(
            (k, v) for k, v in self.desired_examples.items()
            if k[0] == "pool" and not {f for f in v if f.endswith(
                ("_ref", "_refs"))} - system)[0]
        self.assertFalse(any(m["key"] == "amc-cksum"
                             for m in want.get("markers", [])))
        self.ctl("POST", "/_sim/objects",
                 {"type": t, "tenant": "admin", "object": want})
        self.clear_requests()
        self.sync_ok()
        reqs = self.requests()
        lists = [r for r in reqs if r["method"] == "GET"
                 and r["path"].count("/") == 2 and r["path"] != "/login"]
        self.assertEqual(len(lists), 9, lists)
        self.assertTrue(all("fields=" in r["query"] for r in lists), lists)
        whole = [r for r in reqs if r["method"] == "GET"
                 and r["path"].startswith("/api/%s/" % t)]
        self.assertEqual(len(whole), 1, whole)
        uuid = self.objects()[(t, name)]["uuid"]
        self.assertEqual(whole[0]["path"], "/api/%s/%s" % (t, uuid))
        self.assertEqual([w for w in self.writes()
                          if uuid in w["path"] or
                          (w.get("body") or {}).get("name") == name], [])

    def test_name_clash_with_a_foreign_object(self):
        pool = sorted(k for k in self.desired_examples if k[0] == "pool")[0]
        made = self.ctl("POST", "/_sim/objects", {
            "type": "pool", "tenant": "admin",
            "object": {"name": pool[1], "created_by": "ako-other"}})
        rc, out, err = self.amc_sync()
        self.assertEqual(rc, 1)
        self.assertIn("name clash", err)
        self.assertIn(pool[1], err)
        self.assertIn("[permanent]", err)
        objs = self.objects(owned=False)
        self.assertEqual(objs[pool]["uuid"], made["uuid"])
        self.assertEqual(objs[pool]["_last_modified"], made["_last_modified"])
        self.assertEqual(objs[pool]["created_by"], "ako-other")
        for r in self.writes():
            self.assertNotIn(made["uuid"], r["path"])
        # And gc never removes it either (with nothing desired at all).
        rc, out, err = self.amc_sync("--gc", "--desired", self.empty(),
                                     paths=[])
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.objects(owned=False)[pool]["_last_modified"],
                         made["_last_modified"])

    def test_dry_run(self):
        # No controller: every object is a POST, keys hidden.
        rc = subprocess.run([AMC, "sync", "--dry-run", "--cluster", CLUSTER,
                             EXAMPLES], capture_output=True, text=True,
                            timeout=60)
        self.assertEqual(rc.returncode, 0, rc.stderr)
        lines = rc.stdout.splitlines()
        self.assertEqual(len(lines), len(self.desired_examples))
        self.assertTrue(all(l.startswith("POST /api/") for l in lines))
        certs = [l for l in lines if l.startswith(
            "POST /api/sslkeyandcertificate ")]
        self.assertTrue(certs)
        for l in certs:
            body = json.loads(l.split(" ", 2)[2])
            self.assertEqual(body["key"], "<sensitive>")
        self.assertNotIn("PRIVATE KEY", rc.stdout + rc.stderr)
        # Against the controller: reads only, and nothing to do once synced.
        self.clear_requests()
        out, err = self.sync_ok("--dry-run")
        self.assertEqual(self.writes(), [])
        self.assertEqual(len(out.splitlines()), len(self.desired_examples))
        self.sync_ok()
        self.clear_requests()
        out, err = self.sync_ok("--dry-run")
        self.assertEqual(out, "")
        self.assertEqual(self.writes(), [])

    def test_tls_verified_by_default(self):
        rc, out, err = self.amc_sync(ca=False)
        self.assertEqual(rc, 1)
        self.assertRegex(err, "(?i)certificate|SSL")
        self.assertEqual(self.writes(), [])
        self.sync_ok("--insecure", ca=False)
        self.assert_converged(self.desired_examples)

    def test_bad_credentials_fail_once(self):
        bad = os.path.join(self.tmp, "badpw")
        with open(bad, "w") as fh:
            fh.write("wrong\n")
        cmd_env = {}
        rc, out, err = self.amc_sync("--password-file", bad,
                                     extra_env=cmd_env)
        self.assertEqual(rc, 1)
        self.assertIn("login failed: HTTP 401: Invalid credentials", err)
        logins = [r for r in self.requests() if r["path"] == "/login"]
        self.assertEqual(len(logins), 1)

    def test_env_credentials(self):
        env = {"CTRL_IPADDRESS": "127.0.0.1:%d" % self.sim.ports["https"],
               "CTRL_USERNAME": "admin", "CTRL_PASSWORD": PASSWORD,
               "CTRL_VERSION": "21.1.1", "CLUSTER_NAME": CLUSTER}
        p = subprocess.run([AMC, "sync", "--ca", self.sim.ports["ca"],
                            EXAMPLES], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, **env))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assert_converged(self.desired_examples)
        api = [r for r in self.requests() if r["path"].startswith("/api/")]
        self.assertTrue(all(r["avi_version"] == "21.1.1" for r in api))

    def test_other_tenant(self):
        self.ctl("POST", "/_sim/objects", {"type": "tenant",
                                           "object": {"name": "t1"}})
        self.sync_ok("--tenant", "t1")
        objs = self.objects()
        self.assertEqual(len(objs), len(self.desired_examples))
        self.assertTrue(all(o["tenant_ref"].endswith("#t1")
                            for o in objs.values()))
        writes = self.writes()
        self.assertTrue(all(r["tenant"] == "t1" for r in writes), writes)
        # The start-up read covers every tenant: nothing to do next time.
        self.clear_requests()
        self.sync_ok("--tenant", "t1")
        self.assertEqual(self.writes(), [])
        gets = [r for r in self.requests() if r["method"] == "GET"]
        self.assertTrue(all(r["tenant"] == "*" for r in gets), gets)

    def test_version_discovered_from_login(self):
        self.sync_ok()
        api = [r for r in self.requests() if r["path"].startswith("/api/")]
        self.assertTrue(api)
        self.assertTrue(all(r["avi_version"] == "22.1.6" for r in api), api)

    def test_no_deletes_when_the_initial_read_fails(self):
        self.sync_ok()
        n = len(self.objects())
        self.fault(method="GET", path="^/api/pool$", status=500,
                   body='{"error":"boom"}', times=0)
        rc, out, err = self.amc_sync("--gc", "--retries", "2", "--desired",
                                     self.empty(), paths=[])
        self.ctl("DELETE", "/_sim/faults")
        self.assertEqual(rc, 1)
        self.assertIn("cannot read the controller", err)
        self.assertEqual([r for r in self.writes()
                          if r["method"] == "DELETE"], [])
        self.assertEqual(len(self.objects()), n)

    # ---- faults ----------------------------------------------------------------

    def converge_under(self, *args, **kw):
        out, err = self.sync_ok(*args, **kw)
        self.assert_converged(self.desired_examples)
        return out, err

    def test_fault_session_expiry_mid_sync(self):
        p = self.amc_sync("--rate", "10", background=True)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if len([r for r in self.requests()
                        if r["method"] == "POST" and
                        r["path"].startswith("/api/")]) >= 4:
                    break
                time.sleep(0.02)
            self.ctl("POST", "/_sim/expire-sessions")
            out, err = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        self.assertEqual(p.returncode, 0, err)
        self.assert_converged(self.desired_examples)
        reqs = self.requests()
        self.assertTrue(any(r["status"] == 401 for r in reqs))
        self.assertEqual(len([r for r in reqs if r["path"] == "/login"]), 2)

    def test_fault_csrf_rejection(self):
        self.fault(method="POST", path="^/api/pool$", status=401,
                   body="CSRF token missing or incorrect.", times=2)
        self.converge_under()
        reqs = self.requests()
        self.assertEqual(len([r for r in reqs if r["status"] == 401]), 2)
        self.assertGreaterEqual(
            len([r for r in reqs if r["path"] == "/login"]), 2)

    def test_fault_419(self):
        self.fault(method="PUT|POST", path="^/api/poolgroup$", status=419,
                   times=1)
        self.converge_under()

    def test_fault_429_storm(self):
        self.ctl("POST", "/_sim/config", {"rate_limit": 8, "burst": 3})
        out, err = self.converge_under("--rate", "100", "--retries", "12")
        n429 = len([r for r in self.requests() if r["status"] == 429])
        self.assertGreater(n429, 0)
        # And with the default client limit it stays below: no 429 from a
        # controller that admits 32/s.
        self.ctl("POST", "/_sim/reset", {})
        self.ctl("POST", "/_sim/config", {"rate_limit": 32, "burst": 32})
        self.converge_under()
        self.assertEqual([r for r in self.requests() if r["status"] == 429],
                         [])

    def test_fault_5xx(self):
        self.fault(method="POST", path="^/api/pool$", status=503,
                   body="Service Unavailable", times=3)
        self.fault(method="POST", path="^/api/httppolicyset$", status=502,
                   times=1)
        self.fault(method="GET", path="^/api/vsvip$", status=500, times=1)
        self.converge_under()

    def test_fault_timeout_after_the_controller_acted(self):
        # The controller creates the pool group but answers too late: amc
        # times out, resends, gets 409, finds its own object and adopts it.
        # (The simulator sleeps before it acts: the resend must come later
        # than the delay, hence the long first backoff.)
        self.fault(method="POST", path="^/api/poolgroup$", delay_ms=700,
                   times=1)
        self.converge_under("--timeout", "300", "--backoff", "1000")
        pg = [r for r in self.requests()
              if r["path"] == "/api/poolgroup" and r["method"] == "POST"]
        self.assertIn(409, [r["status"] for r in pg])

    def test_fault_connection_resets(self):
        self.fault(method="POST", path="^/api/httppolicyset$", reset=True,
                   times=2)
        self.fault(method="GET", path="^/api/pool$", reset=True, times=1)
        self.converge_under()
        self.assertEqual(len([r for r in self.requests()
                              if r["status"] == 0]), 3)

    def test_fault_409_race_adopts_our_object(self):
        # Between amc's cache read and its POST, "another amc" (a previous
        # attempt) creates one of our pools with stale content.
        pool = sorted(k for k in self.desired_examples if k[0] == "pool")[0]
        self.fault(method="GET", path="^/api/virtualservice$",
                   delay_ms=800, times=1)
        p = self.amc_sync(background=True)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if any(r["path"] == "/api/pool" and r["method"] == "GET"
                       for r in self.requests()):
                    break
                time.sleep(0.01)
            stale = dict(self.desired_examples[pool])
            stale["lb_algorithm"] = "LB_ALGORITHM_FEWEST_SERVERS"
            self.ctl("POST", "/_sim/objects", {"type": "pool",
                                               "tenant": "admin",
                                               "object": stale})
            out, err = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        self.assertEqual(p.returncode, 0, err)
        self.assert_converged(self.desired_examples)
        have = self.objects()[pool]
        self.assertEqual(have.get("lb_algorithm"),
                         self.desired_examples[pool].get(
                             "lb_algorithm", "LB_ALGORITHM_LEAST_CONNECTIONS"))
        seq = [(r["method"], r["status"]) for r in self.requests()
               if r["path"].startswith("/api/pool/") or
               r["path"] == "/api/pool"]
        self.assertIn(("POST", 409), seq)
        self.assertIn(("PUT", 200), seq)

    def test_fault_409_without_object_is_transient_then_converges(self):
        self.fault(method="POST", path="^/api/vsvip$", status=409,
                   body='{"error":"VsVip with this name already exists"}',
                   times=1)
        rc, out, err = self.amc_sync()
        self.assertEqual(rc, 1)
        self.assertIn("409", err)
        self.assertIn("[transient]", err)
        self.converge_under()

    def test_fault_412_race(self):
        self.sync_ok()
        d = os.path.join(self.tmp, "changed412")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(EXAMPLES, d)
        routing = os.path.join(d, "bookinfo", "30-routing.yaml")
        with open(routing) as fh:
            text = fh.read().replace("weight: 90", "weight: 60").replace(
                "weight: 10", "weight: 40")
        with open(routing, "w") as fh:
            fh.write(text)
        self.fault(method="PUT", path="^/api/poolgroup/", status=412,
                   body='{"error":"Need to reload object data PoolGroup"}',
                   times=1)
        self.clear_requests()
        self.sync_ok(paths=[d])
        self.assert_converged(self.translate([d]))
        seq = [(r["method"], r["status"]) for r in self.requests()
               if r["path"].startswith("/api/poolgroup/")]
        self.assertEqual(seq[:3], [("PUT", 412), ("GET", 200), ("PUT", 200)])

    def changed_examples(self, name, a, b):
        d = os.path.join(self.tmp, name)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(EXAMPLES, d)
        routing = os.path.join(d, "bookinfo", "30-routing.yaml")
        with open(routing) as fh:
            text = fh.read().replace("weight: 90", "weight: %d" % a).replace(
                "weight: 10", "weight: %d" % b)
        with open(routing, "w") as fh:
            fh.write(text)
        return d

    def test_fault_404_on_put_creates(self):
        self.sync_ok()
        d = self.changed_examples("changed404", 50, 50)
        # The controller says the pool group is gone: amc POSTs it; here it
        # does exist, so the POST's 409 leads to an adoption and a PUT.
        self.fault(method="PUT", path="^/api/poolgroup/", status=404,
                   body='{"error":"PoolGroup object not found!"}', times=1)
        self.clear_requests()
        self.sync_ok(paths=[d])
        self.assert_converged(self.translate([d]))
        seq = [(r["method"], r["status"]) for r in self.requests()
               if r["path"].startswith("/api/poolgroup") and
               "created_by=" not in r["query"]]
        self.assertEqual(seq[:4], [("PUT", 404), ("POST", 409), ("GET", 200),
                                   ("PUT", 200)])

    def test_fault_404_on_delete_is_done(self):
        d = os.path.join(self.tmp, "two-c")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(EXAMPLES, d)
        with open(os.path.join(d, "bookinfo", "50-second.yaml"), "w") as fh:
            fh.write(GW2)
        self.sync_ok(paths=[d])
        self.fault(method="DELETE", path="^/api/vsvip/", status=404,
                   times=1)
        self.sync_ok("--gc")
        # amc took the 404 as "gone"; the next start-up read finds the
        # object again and the next gc deletes it.
        left = [k for k in self.objects() if k not in self.desired_examples]
        self.assertEqual([k[0] for k in left], ["vsvip"])
        self.sync_ok("--gc")
        self.assert_converged(self.desired_examples)

    def fixture(self, name, pools, members, vs_extra):
        """A small desired tree of key Gateway/ns/fx as a --desired file."""
        marks = [{"key": "clustername", "values": [CLUSTER]},
                 {"key": "gateway", "values": ["ns/fx"]}]

        def o(n, **kw):
            d = {"name": PREFIX + "ns--fx--" + n, "markers": marks,
                 "tenant_ref": "/api/tenant?name=admin"}
            d.update(kw)
            return d
        own = {"created_by": "amc-" + CLUSTER}
        doc = {
            "pool": [o(p, servers=[{"ip": {"addr": "10.0.0.%d" % (i + 1),
                                            "type": "V4"}}], **own)
                     for i, p in enumerate(pools)],
            "poolgroup": [o("pg", members=[
                {"pool_ref": "/api/pool?name=" + PREFIX + "ns--fx--" + m,
                 "ratio": 1} for m in members], **own)],
            "virtualservice": [o("vs", pool_group_ref="/api/poolgroup?name="
                                 + PREFIX + "ns--fx--pg",
                                 services=[{"port": 80}], **dict(own,
                                                                 **vs_extra))],
            "diagnostics": [],
        }
        path = os.path.join(self.tmp, name + ".json")
        with open(path, "w") as fh:
            json.dump(doc, fh)
        return path

    def test_permanent_failure_still_deletes_leftovers(self):
        first = self.fixture("fx1", ["a", "b"], ["a", "b"], {})
        self.sync_ok("--desired", first, paths=[])
        self.assertIn(("pool", PREFIX + "ns--fx--b"), self.objects())
        # Pool b leaves the group, the VS changes, and the VS update fails
        # for good: the group is updated, the leftover pool b is deleted
        # anyway, and the error is transient (worth another try).
        second = self.fixture("fx2", ["a"], ["a"], {"enabled": False})
        self.fault(method="PUT", path="^/api/virtualservice/", status=400,
                   body='{"error":"Something the controller dislikes"}',
                   times=0)
        rc, out, err = self.amc_sync("--desired", second, paths=[])
        self.assertEqual(rc, 1)
        self.assertIn("Something the controller dislikes", err)
        self.assertIn("[transient]", err)
        self.assertNotIn(("pool", PREFIX + "ns--fx--b"), self.objects())
        self.ctl("DELETE", "/_sim/faults")
        self.sync_ok("--desired", second, paths=[])
        vs = self.objects()[("virtualservice", PREFIX + "ns--fx--vs")]
        self.assertFalse(vs["enabled"])
        # A permanent failure with no leftovers to delete stays permanent.
        self.fault(method="PUT", path="^/api/virtualservice/", status=400,
                   body='{"error":"Something the controller dislikes"}',
                   times=0)
        rc, out, err = self.amc_sync("--desired", first, paths=[])
        self.assertEqual(rc, 1)
        self.assertIn("[permanent]", err)

    def test_fault_delete_refused_while_referred(self):
        d = os.path.join(self.tmp, "two-b")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(EXAMPLES, d)
        with open(os.path.join(d, "bookinfo", "50-second.yaml"), "w") as fh:
            fh.write(GW2)
        self.sync_ok(paths=[d])
        self.fault(method="DELETE", path="^/api/pool/", status=403,
                   body='{"error":"Cannot delete, object is referred by: '
                        '[\'VirtualService x\']"}', times=1)
        rc, out, err = self.amc_sync("--gc")
        self.assertEqual(rc, 1)
        self.assertIn("referred by", err)
        self.assertIn("[transient]", err)
        self.sync_ok("--gc")
        self.assert_converged(self.desired_examples)

    def test_fault_simulator_restart_keeps_state(self):
        state = os.path.join(self.tmp, "state.json")
        if os.path.exists(state):
            os.unlink(state)
        sim = SimProcess(state_file=state)
        self.extra_sims.append(sim)
        port = sim.ports["http"]
        p = self.amc_sync("--rate", "10", "--retries", "10", sim=sim,
                          scheme="http", background=True)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if len([r for r in self.requests(sim)
                        if r["method"] == "POST" and
                        r["path"].startswith("/api/")]) >= 5:
                    break
                time.sleep(0.02)
            sim.stop()
            sim2 = SimProcess("--http-port", str(port), https=False,
                              state_file=state)
            self.extra_sims.append(sim2)
            out, err = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        self.assertEqual(p.returncode, 0, err)
        self.assert_converged(self.desired_examples, sim=sim2)
        self.clear_requests(sim=sim2)
        rc, out, err = self.amc_sync(sim=sim2, scheme="http")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.writes(sim=sim2), [])


if __name__ == "__main__":
    prog = unittest.main(module="__main__", exit=False, verbosity=2)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
