"""EndpointSlices -> Endpoints fallback, end to end: the fake API server
(kubefake), the AVI simulator and `amc run --source kube`.

A cluster that does not serve discovery.k8s.io/v1 (kubefake
--no-endpointslices) is read through core/v1 Endpoints. The same two
Services (web, api) with the same ready addresses, once as EndpointSlices
and once as Endpoints, must give identical AVI pools; a change of one
Service's endpoints (in either form) must update exactly that pool with one
AVI call, and the same way in both forms. amc must not ask for
EndpointSlices when they are not served.
"""
import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runlib  # noqa: E402

sys.path.insert(0, os.path.join(runlib.SOURCE_DIR, "tests", "fakes", "kube"))
from harness import KubeFake  # noqa: E402

NS = "shop"

BASE = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
     "metadata": {"name": "gw", "namespace": NS},
     "spec": {"selector": {"istio": "ingressgateway"},
              "servers": [{"port": {"number": 80, "name": "http",
                                    "protocol": "HTTP"},
                           "hosts": ["*.example.com"]}]}},
]

# name -> (service port name, port, target port)
SERVICES = {"web": ("http", 80, 8080), "api": ("grpc", 9000, 9090)}

# Ready and not-ready addresses of each Service at start.
START = {"web": (["10.0.0.2", "10.0.0.1"], ["10.0.0.9"]),
         "api": (["10.0.1.1"], [])}


def service_objects(name):
    pname, port, target = SERVICES[name]
    return [
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": name, "namespace": NS},
         "spec": {"hosts": ["%s.example.com" % name], "gateways": ["gw"],
                  "http": [{"route": [{"destination": {
                      "host": name, "port": {"number": port}}}]}]}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": NS},
         "spec": {"ports": [{"name": pname, "port": port,
                             "targetPort": target}],
                  "selector": {"app": name}}},
    ]


def endpoint_slice(name, ready, not_ready):
    pname, _, target = SERVICES[name]
    eps = [{"addresses": [ip], "conditions": {"ready": True}}
           for ip in ready]
    eps += [{"addresses": [ip], "conditions": {"ready": False}}
            for ip in not_ready]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name + "-abc12", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": pname, "port": target, "protocol": "TCP"}]}


def endpoints(name, ready, not_ready):
    pname, _, target = SERVICES[name]
    subset = {"addresses": [{"ip": ip} for ip in ready],
              "ports": [{"name": pname, "port": target, "protocol": "TCP"}]}
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": NS},
            "subsets": [subset]}


def pools(sim):
    """amc's pools as AVI holds them, without the simulator's bookkeeping."""
    out = {}
    for name, o in runlib.sim_objects(sim, "pool").items():
        if not name.startswith("amc--"):
            continue
        o = {k: v for k, v in o.items()
             if k not in ("uuid", "url", "_last_modified")}
        # References name the simulator's address (one per case).
        out[name] = json.loads(re.sub(r"https?://127\.0\.0\.1:\d+", "AVI",
                                      json.dumps(o)))
    return out


def servers(p):
    return sorted((s["ip"]["addr"], s["port"]) for s in p.get("servers", []))


class EndpointsFallbackTest(unittest.TestCase):
    def run_case(self, slices):
        """Runs one cluster flavour; returns (pools at start, pools after
        the change of web's endpoints, the AVI writes of that change)."""
        tmp = tempfile.mkdtemp(prefix="amc-kube-ep-")
        self.addCleanup(shutil.rmtree, tmp, True)
        make = endpoint_slice if slices else endpoints
        objs = list(BASE)
        for name in SERVICES:
            objs += service_objects(name)
            objs.append(make(name, *START[name]))
        fixtures = os.path.join(tmp, "objects.json")
        with open(fixtures, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": objs}, f)
        args = ["--load", fixtures]
        if not slices:
            args.append("--no-endpointslices")
        kf = KubeFake(*args, state_dir=os.path.join(tmp, "kf")).start()
        self.addCleanup(kf.cleanup)
        sim = runlib.start_sim()
        self.addCleanup(sim.stop)
        os.makedirs(os.path.join(tmp, "amc"))
        run = runlib.AmcRun("unused", "--cluster", "t", "--log-format",
                            "logfmt", "--kubeconfig", kf.info["kubeconfig"],
                            sim=sim, workdir=os.path.join(tmp, "amc"),
                            source="kube")
        self.addCleanup(run.kill)
        run.wait_ready()

        def two_pools():
            p = pools(sim)
            return len(p) == 2 and all(x.get("servers") for x in p.values())
        runlib.wait_for(two_pools, 20, "two pools with servers (now %s)"
                        % pools(sim), interval=0.05)
        before = pools(sim)

        # What amc read: slices when served, else Endpoints, never both.
        paths = [q["path"] for q in kf.control("GET", "requests")["requests"]
                 if q["method"] == "GET" and q["user"] == "admin"]
        read_slices = any(p.endswith("/endpointslices") for p in paths)
        read_endpoints = any(p.endswith("/endpoints") for p in paths)
        self.assertEqual((read_slices, read_endpoints), (slices, not slices),
                         paths)

        # web: one address goes, a new one comes, the not-ready one is ready.
        runlib.sim_clear_requests(sim)
        new = make("web", ["10.0.0.1", "10.0.0.3", "10.0.0.9"], [])
        path = ("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices/%s"
                if slices else "/api/v1/namespaces/%s/endpoints/%s") % (
                    NS, new["metadata"]["name"])
        st, body, _ = kf.request("PUT", path, new)
        self.assertEqual(st, 200, body)
        web = [n for n, p in before.items()
               if servers(p) and servers(p)[0][1] == 8080]
        self.assertEqual(len(web), 1, before)
        want = [("10.0.0.1", 8080), ("10.0.0.3", 8080), ("10.0.0.9", 8080)]
        runlib.wait_for(lambda: servers(pools(sim).get(web[0], {})) == want,
                        15, "web's pool updated (now %s)" % pools(sim),
                        interval=0.05)
        time.sleep(0.5)  # would-be extra calls
        writes = [(w["method"], w["path"])
                  for w in runlib.sim_writes(sim)]
        after = pools(sim)

        # Changes nothing depends on write nothing: endpoints of a Service
        # no route uses, a label-only change of web's. Then api gains an
        # address: that one PUT is all AVI sees.
        runlib.sim_clear_requests(sim)
        other = make("api", ["10.0.2.1"], [])
        other["metadata"]["name"] = "other" if not slices else "other-x1"
        if slices:
            other["metadata"]["labels"]["kubernetes.io/service-name"] = \
                "other"
        st, body, _ = kf.request("POST", path.rsplit("/", 1)[0], other)
        self.assertEqual(st, 201, body)
        new["metadata"]["labels"] = dict(new["metadata"].get("labels", {}),
                                         touched="yes")
        st, body, _ = kf.request("PUT", path, new)
        self.assertEqual(st, 200, body)
        grown = make("api", ["10.0.1.1", "10.0.1.2"], [])
        st, body, _ = kf.request("PUT", path.rsplit("/", 1)[0] + "/" +
                                 grown["metadata"]["name"], grown)
        self.assertEqual(st, 200, body)
        api = [n for n in before if n != web[0]][0]
        runlib.wait_for(lambda: len(pools(sim)[api]["servers"]) == 2, 15,
                        "api's pool updated (now %s)" % pools(sim),
                        interval=0.05)
        time.sleep(0.5)
        writes2 = [(w["method"], w["path"])
                   for w in runlib.sim_writes(sim)]
        self.assertEqual(len(writes2), 1, writes2)
        self.assertEqual(writes2[0][0], "PUT")
        self.assertEqual(pools(sim)[web[0]], after[web[0]])
        self.assertEqual(run.stop(), 0)
        return before, after, writes, web[0]

    def test_endpoints_drive_pools_like_slices(self):
        s_before, s_after, s_writes, s_web = self.run_case(slices=True)
        e_before, e_after, e_writes, e_web = self.run_case(slices=False)
        # The slices case as the reference: ready addresses only, target
        # ports, one pool per Service.
        self.assertEqual(sorted(servers(p) for p in s_before.values()), [
            [("10.0.0.1", 8080), ("10.0.0.2", 8080)],
            [("10.0.1.1", 9090)]])
        # Endpoints give the very same pools, before and after the change.
        self.maxDiff = None
        self.assertEqual(e_before, s_before)
        self.assertEqual(e_after, s_after)
        self.assertEqual(e_web, s_web)
        # The change touched only web's pool, with one call, in both.
        for writes in (s_writes, e_writes):
            self.assertEqual(len(writes), 1, writes)
            self.assertEqual(writes[0][0], "PUT")
            self.assertTrue(writes[0][1].startswith("/api/pool/"), writes)
        api = [n for n in s_before if n != s_web][0]
        self.assertEqual(s_after[api], s_before[api])
        self.assertEqual(e_after[api], e_before[api])


if __name__ == "__main__":
    unittest.main(verbosity=2)
