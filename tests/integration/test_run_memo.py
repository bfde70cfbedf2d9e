"""Incremental translation (the rules engine's memo, rt.memo) against the
AVI simulator: a randomised sequence of input changes -- route weights,
hosts, matches, Service ports, endpoints, DestinationRule subsets,
VirtualService deletes and adds, TLS Secret rotations, breakage and
removal, one-off AVI write failures -- applied to
`amc run` (the memo is on by default); after each batch the objects on the
simulator must be exactly those of a fresh full translation (`amc translate` of the same
files): same (type, name) set and, for each, the same amc-cksum marker
(the hash of the object's canonical JSON). It also checks that replays
happened (translate.done unchanged>0), so the test cannot pass by always
translating in full. With --incremental=false nothing is ever replayed.

AMC_MEMO_SEED picks the sequence (default: a fixed seed); AMC_MEMO_STEPS
its length."""
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

CLUSTER = "memo"
NAMESPACES = ["app-0", "app-1"]
PORTS = [80, 9090]


def fnv_hex(data):
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def canonical(obj):
    """amc's canonical JSON for the plain values the rules emit here
    (sorted keys, compact, integers integral, no escaping of '/')."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


class Mesh:
    """The input objects, one file each, and random edits of them."""

    def __init__(self, root, rnd):
        self.root = root
        self.rnd = rnd
        self.objs = {}  # (kind, ns, name) -> object
        self.next_vs = 0
        for g, ports in (("gw-a", [80]), ("gw-b", [80, 8080])):
            self.put({
                "apiVersion": "networking.istio.io/v1beta1",
                "kind": "Gateway",
                "metadata": {"name": g, "namespace": "istio-system"},
                "spec": {"selector": {"istio": "ingressgateway"},
                         "servers": [{"hosts": ["*.%s.example.com" % g],
                                      "port": {"name": "http%d" % p,
                                               "number": p,
                                               "protocol": "HTTP"}}
                                     for p in ports]}})
        # gw-b also serves HTTPS with the Secret cert-b (its certificate is
        # memoized on the Secret: rotations, breakage and removal below)
        gwb = self.objs[("Gateway", "istio-system", "gw-b")]
        gwb["spec"]["servers"].append({
            "hosts": ["*.gw-b.example.com"],
            "port": {"name": "https", "number": 443, "protocol": "HTTPS"},
            "tls": {"mode": "SIMPLE", "credentialName": "cert-b"}})
        self.put(gwb)
        self.put_secret("rotate")
        for ns in NAMESPACES:
            for i in range(3):
                self.add_service(ns, "svc-%d" % i)
            self.put({
                "apiVersion": "networking.istio.io/v1beta1",
                "kind": "DestinationRule",
                "metadata": {"name": "svc-0", "namespace": ns},
                "spec": {"host": "svc-0",
                         "subsets": [{"name": "v1",
                                      "labels": {"version": "v1"}},
                                     {"name": "v2",
                                      "labels": {"version": "v2"}}]}})
        for _ in range(8):
            self.add_vs()

    # -- files
    def path(self, key):
        return os.path.join(self.root, "%s--%s--%s.json" % key)

    def put(self, obj):
        md = obj["metadata"]
        key = (obj["kind"], md["namespace"], md["name"])
        self.objs[key] = obj
        tmp = self.path(key) + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(obj, fh)
        os.replace(tmp, self.path(key))

    def delete(self, key):
        del self.objs[key]
        os.unlink(self.path(key))

    def keys(self, kind):
        return sorted(k for k in self.objs if k[0] == kind)

    # -- objects
    def add_service(self, ns, name):
        self.put({"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": name, "namespace": ns},
                  "spec": {"ports": [{"name": "http", "port": 80,
                                      "targetPort": 8080}],
                           "selector": {"app": name}}})
        for v in ("v1", "v2"):
            self.put({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "%s-%s" % (name, v),
                                   "namespace": ns,
                                   "labels": {"app": name, "version": v}},
                      "status": {"podIP": self.ip()}})
        self.put(self.slice(ns, name))

    def put_secret(self, how):
        """The TLS Secret cert-b: a new key pair ("rotate"), data that is not
        PEM ("break") or gone ("delete")."""
        key = ("Secret", "istio-system", "cert-b")
        if how == "delete":
            if key in self.objs:
                self.delete(key)
            return

        def pem(label):
            body = base64.b64encode(bytes(self.rnd.randrange(256)
                                          for _ in range(48))).decode()
            return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (
                label, body, label)
        crt, k = pem("CERTIFICATE"), pem("PRIVATE KEY")
        if how == "break":
            crt = "not a certificate"
        self.put({"apiVersion": "v1", "kind": "Secret",
                  "type": "kubernetes.io/tls",
                  "metadata": {"name": "cert-b", "namespace": "istio-system"},
                  "data": {"tls.crt": base64.b64encode(crt.encode()).decode(),
                           "tls.key": base64.b64encode(k.encode()).decode()}})

    def ip(self):
        return "10.%d.%d.%d" % (self.rnd.randrange(256),
                                self.rnd.randrange(256),
                                self.rnd.randrange(1, 255))

    def slice(self, ns, name):
        eps = []
        for v in ("v1", "v2"):
            pod = self.objs[("Pod", ns, "%s-%s" % (name, v))]
            eps.append({"addresses": [pod["status"]["podIP"]],
                        "conditions": {"ready": self.rnd.random() < 0.8},
                        "targetRef": {"kind": "Pod", "name":
                                      pod["metadata"]["name"],
                                      "namespace": ns}})
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "addressType": "IPv4",
                "metadata": {"name": name + "-abc", "namespace": ns,
                             "labels": {"kubernetes.io/service-name": name}},
                "endpoints": eps,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}

    def destination(self):
        d = {"host": "svc-%d" % self.rnd.randrange(3),
             "port": {"number": self.rnd.choice(PORTS)}}
        if d["host"] == "svc-0" and self.rnd.random() < 0.5:
            d["subset"] = self.rnd.choice(["v1", "v2", "v3"])
        return d

    def route(self):
        n = self.rnd.randrange(1, 3)
        dests = [{"destination": self.destination(),
                  "weight": self.rnd.randrange(0, 101)} for _ in range(n)]
        matches = [{"uri": {"prefix": "/%s" % self.rnd.choice("abc")}}
                   for _ in range(self.rnd.randrange(0, 3))]
        r = {"route": dests}
        if matches:
            r["match"] = matches
        return r

    def add_vs(self):
        ns = self.rnd.choice(NAMESPACES)
        name = "vs-%d" % self.next_vs
        self.next_vs += 1
        gw = self.rnd.choice(["gw-a", "gw-b"])
        self.put({"apiVersion": "networking.istio.io/v1beta1",
                  "kind": "VirtualService",
                  "metadata": {"name": name, "namespace": ns,
                               "creationTimestamp":
                               "2026-01-01T00:00:%02dZ" % (self.next_vs % 60)},
                  "spec": {"gateways": ["istio-system/" + gw],
                           "hosts": [self.host(gw)],
                           "http": [self.route() for _ in
                                    range(self.rnd.randrange(1, 3))]}})

    def host(self, gw):
        return "h%d.%s.example.com" % (self.rnd.randrange(4), gw)

    # -- one random change; returns a description
    def change(self):
        rnd = self.rnd
        vss = self.keys("VirtualService")
        op = rnd.choice(["weights", "weights", "hosts", "match", "gateway",
                         "svc_port", "endpoints", "subsets", "delete",
                         "add", "dest", "secret"])
        if op == "secret":
            how = rnd.choice(["rotate", "rotate", "break", "delete"])
            self.put_secret(how)
            return "secret cert-b: " + how
        if op == "add" or not vss:
            self.add_vs()
            return "add vs"
        if op == "delete":
            k = rnd.choice(vss)
            self.delete(k)
            return "delete %s/%s" % k[1:]
        if op == "svc_port":
            k = rnd.choice(self.keys("Service"))
            svc = json.loads(json.dumps(self.objs[k]))
            ports = [{"name": "http", "port": 80, "targetPort": 8080}]
            if rnd.random() < 0.5:
                ports.append({"name": "metrics", "port": 9090,
                              "targetPort": 8080})
            svc["spec"]["ports"] = ports
            self.put(svc)
            return "ports of %s/%s: %s" % (k[1], k[2], len(ports))
        if op == "endpoints":
            k = rnd.choice(self.keys("Service"))
            pod_key = ("Pod", k[1], "%s-%s" % (k[2], rnd.choice(["v1", "v2"])))
            pod = json.loads(json.dumps(self.objs[pod_key]))
            pod["status"]["podIP"] = self.ip()
            self.put(pod)
            self.put(self.slice(k[1], k[2]))
            return "endpoints of %s/%s" % k[1:]
        if op == "subsets":
            ns = rnd.choice(NAMESPACES)
            dr = json.loads(json.dumps(
                self.objs[("DestinationRule", ns, "svc-0")]))
            names = rnd.sample(["v1", "v2", "v3"], rnd.randrange(1, 4))
            dr["spec"]["subsets"] = [{"name": n, "labels": {"version": n}}
                                     for n in sorted(names)]
            if rnd.random() < 0.5:
                dr["spec"]["trafficPolicy"] = {"loadBalancer": {
                    "simple": rnd.choice(["ROUND_ROBIN", "RANDOM"])}}
            self.put(dr)
            return "subsets of %s/svc-0: %s" % (ns, names)
        k = rnd.choice(vss)
        vs = json.loads(json.dumps(self.objs[k]))
        spec = vs["spec"]
        http = spec["http"][rnd.randrange(len(spec["http"]))]
        if op == "weights":
            for d in http["route"]:
                d["weight"] = rnd.randrange(0, 101)
        elif op == "hosts":
            gw = spec["gateways"][0].split("/")[1]
            spec["hosts"] = sorted({self.host(gw) for _ in
                                    range(rnd.randrange(1, 3))})
        elif op == "match":
            new = self.route()
            http.pop("match", None)
            if "match" in new:
                http["match"] = new["match"]
        elif op == "gateway":
            gw = rnd.choice(["gw-a", "gw-b"])
            spec["gateways"] = ["istio-system/" + gw]
            spec["hosts"] = [self.host(gw)]
        elif op == "dest":
            http["route"][0]["destination"] = self.destination()
        self.put(vs)
        return "%s of %s/%s" % (op, k[1], k[2])


class MemoTest(runlib.SimTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="amc-memo-test-")
        self.fs = os.path.join(self.tmp, "fs")
        os.makedirs(self.fs)
        self.run_ = None

    def tearDown(self):
        if self.run_:
            self.run_.kill()
        if not os.environ.get("AMC_MEMO_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def expected(self):
        p = subprocess.run([runlib.AMC_BIN, "translate", "--cluster", CLUSTER,
                            "--show-secrets", self.fs],
                           capture_output=True, cwd=runlib.SOURCE_DIR,
                           check=True)
        out = json.loads(p.stdout)
        want = {}
        for t, objs in out.items():
            if t == "diagnostics":
                continue
            for o in objs:
                want[(t, o["name"])] = fnv_hex(canonical(o))
        return want

    def actual(self):
        state = runlib.sim_control(self.sim, "GET", "/_sim/state")
        got = {}
        for t, objs in state["objects"].items():
            for o in objs:
                marks = {m["key"]: m.get("values") for m in
                         o.get("markers") or []}
                if marks.get("clustername") != [CLUSTER]:
                    continue
                ck = marks.get("amc-cksum") or [None]
                got[(t, o["name"])] = ck[0]
        return got

    def assert_converges(self, what):
        want = self.expected()
        try:
            runlib.wait_for(lambda: self.actual() == want, 15,
                            "AVI state after " + what, interval=0.05)
        except Exception:
            got = self.actual()
            diff = sorted(set(got.items()) ^ set(want.items()))
            self.fail("after %s: AVI differs from a full translation "
                      "(sim vs expected): %s\n%s" % (
                          what, diff[:20], self.run_.logs()[-4000:]))

    def start(self, *extra, env=None):
        self.run_ = runlib.AmcRun(self.fs, "--cluster", CLUSTER,
                                  "--avi-rate", "100000", "--avi-burst",
                                  "1000", "--fs-debounce-ms", "0", *extra,
                                  sim=self.sim, workdir=self.tmp, env=env)
        self.run_.wait_ready()

    def test_incremental_false_never_replays(self):
        rnd = random.Random(7)
        mesh = Mesh(self.fs, rnd)
        self.start("--incremental=false")
        self.assert_converges("the initial sync (memo off)")
        for step in range(5):
            what = mesh.change()
            self.assert_converges("step %d (memo off): %s" % (step, what))
        done = self.run_.log_events("translate.done")
        self.assertTrue(done)
        self.assertEqual([e for e in done
                          if int(e.get("unchanged", "0")) > 0], [])
        self.assertEqual(self.run_.stop(), 0)

    def test_random_changes_match_full_translation(self):
        # Patches follow patches here: amc does not check each one against
        # a full translation (AMC_PATCH_CHECK, which would translate in
        # full after each); the comparison with `amc translate` after every
        # batch does.
        self.random_changes(int(os.environ.get("AMC_MEMO_SEED", "4242")),
                            {"AMC_PATCH_CHECK": "0"})

    def test_random_changes_each_patch_checked(self):
        # every patch checked inside amc against a full translation
        self.random_changes(int(os.environ.get("AMC_MEMO_SEED", "4242")) + 1,
                            {"AMC_PATCH_CHECK": "1"})

    def random_changes(self, seed, env):
        steps = int(os.environ.get("AMC_MEMO_STEPS", "40"))
        rnd = random.Random(seed)
        mesh = Mesh(self.fs, rnd)
        # the memo is on by default (no --incremental needed)
        self.start(env=env)
        self.assert_converges("the initial sync (seed %d)" % seed)
        done = []
        for step in range(steps):
            if rnd.random() < 0.15:
                # the next pool write fails once: the key is retried, and
                # the retry must not rely on objects that never got there
                runlib.sim_control(self.sim, "POST", "/_sim/faults", {
                    "method": rnd.choice(["POST", "PUT"]),
                    "path": "^/api/pool(group)?(/|$)", "status": 500,
                    "times": 1})
                done.append("fault")
            for _ in range(rnd.randrange(1, 4)):
                done.append(mesh.change())
            self.assert_converges("step %d (seed %d): %s" % (
                step, seed, "; ".join(done[-4:])))
            runlib.sim_control(self.sim, "DELETE", "/_sim/faults", {})
        replays = [e for e in self.run_.log_events("translate.done")
                   if int(e.get("unchanged", "0")) > 0]
        self.assertGreater(len(replays), steps // 2,
                           "memo replays should be common")
        # endpoints, Service ports, subsets and Secrets change only what
        # memoized calls read: such changes are patches (every one checked
        # against a full translation inside amc: AMC_PATCH_CHECK=1 in the
        # test environment)
        patches = [e for e in self.run_.log_events("translate.done")
                   if e.get("patch") == "1"]
        self.assertGreater(len(patches), steps // 4,
                           "patches should happen")
        self.assertEqual(self.run_.stop(), 0)

    def test_weight_change_replays_pools(self):
        """A weight change runs its VirtualService's rules again, but the
        pools they build are memoized inside them (nested rt.memo): every
        pool of the Gateway comes unchanged. And the Gateway's own reads
        (its VirtualServices projected onto hosts, gateways...) did not
        change, so the translation is a patch: only the route's pool
        groups are made afresh; the VsVip, virtual service and policy set
        are not even in it (rules_engine.h "Patches")."""
        mesh = Mesh(self.fs, random.Random(11))
        mesh.add_service("app-0", "svc-only")  # a pool no other route has
        vs = {"apiVersion": "networking.istio.io/v1beta1",
              "kind": "VirtualService",
              "metadata": {"name": "vs-only", "namespace": "app-0",
                           "creationTimestamp": "2026-01-02T00:00:00Z"},
              "spec": {"gateways": ["istio-system/gw-a"],
                       "hosts": ["only.gw-a.example.com"],
                       "http": [{"route": [
                           {"destination": {"host": "svc-only",
                                            "port": {"number": 80}},
                            "weight": 60},
                           {"destination": {"host": "svc-0", "subset": "v1",
                                            "port": {"number": 80}},
                            "weight": 40}]}]}}
        mesh.put(vs)
        self.start()
        self.assert_converges("the initial sync")
        for step, (w1, w2) in enumerate([(30, 70), (55, 45)]):
            route = vs["spec"]["http"][0]["route"]
            route[0]["weight"], route[1]["weight"] = w1, w2
            n0 = len(self.run_.log_events("translate.done"))
            mesh.put(vs)
            self.assert_converges("weight change %d" % step)
            done = self.run_.log_events("translate.done")[n0:]
            self.assertEqual(len(done), 1, done)  # gw-a only
            gw_a = "amc--%s--istio-system--gw-a" % CLUSTER
            fresh = [k for k in self.expected()
                     if k[1] == gw_a or k[1].startswith(gw_a + "--")]
            fresh = [k for k in fresh
                     if k[0] == "poolgroup" and "--app-0--vs-only--" in k[1]]
            objects, unchanged = int(done[0]["objects"]), \
                int(done[0]["unchanged"])
            self.assertEqual(done[0].get("patch"), "1", done)
            self.assertEqual(objects - unchanged, len(fresh),
                             "made afresh: %s" % fresh)
            # the patch holds the route's objects alone: its pool groups
            # and (unchanged) pools, not the Gateway's other routes'
            self.assertLess(objects, 6, done)
        self.assertEqual(self.run_.stop(), 0)


if __name__ == "__main__":
    unittest.main()
