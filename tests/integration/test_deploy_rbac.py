"""deploy/'s RBAC is exactly what amc uses, in both directions.

Applies deploy/base with kubectl to the fake API server (RBAC enforced:
kubefake --rbac) and runs `amc run` as deploy/'s ServiceAccount, in-cluster
mode, against it and the AVI simulator, with the
Deployment's own args and amc.yaml (paths under /etc/amc/ remapped to a temp
dir; the rules mounted as the kubelet lays out the amc-rules ConfigMap).

1. Full role: once AVI holds the Bookinfo tree, statuses and a Warning Event
   are written and the Lease was renewed, the RBAC decision log shows no
   denial for amc, and every (apiGroup, resource, verb) that deploy/ grants
   was used by at least one allowed call (but core Endpoints, read only on
   clusters without EndpointSlices: FALLBACK).
2. Each grant removed in turn (one ServiceAccount per variant, all on the
   same fake API server, in parallel): amc hits a 403 for exactly that
   (apiGroup, resource, verb).

Driver: `amc run` when it has the Kubernetes source, leader election and
status write-back (its --help lists --lease-name and does not say that
status write-back is "not wired"). Until then `amc kube-dump` (the same
Kubernetes client: reflectors, Lease, status writer, Events) stands in, with
the Deployment's lease and events settings, --write-status and
--status-error (so a Warning Event is due); the AVI part is then not
checked, and the test says so.

The run prints which driver it used.
"""
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes", "avi"))
from deploy_testlib import (AMC, KUBECTL, SRC, Fatal,  # noqa: E402
                            kubectl_env, materialize_pod, one, render, run_tests,
                            wait_for)

BASE = os.path.join(SRC, "deploy", "base")
NS = "amc-system"
SIM_PASSWORD = "rbac-test-avi-pw"
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole",
              "ClusterRoleBinding", "Role", "RoleBinding"}

# A Gateway whose VirtualService routes to a Service that does not exist:
# the rules report an error diagnostic on the VirtualService (the route is
# left out of AVI), so amc writes Accepted=False on it and, with the
# Deployment's --events, a Warning Event, which exercises `create events`.
BROKEN = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: broken, namespace: bookinfo}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http-broken, protocol: HTTP}
    hosts: ["broken.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: bookinfo}
spec:
  hosts: ["broken.example.com"]
  gateways: [broken]
  http:
  - route:
    - destination: {host: no-such-service, port: {number: 80}}
"""


def grants(objs):
    """-> sorted [(kind, name, rule index, apiGroup, resource, verb)]."""
    out = []
    for o in objs:
        if o["kind"] not in ("ClusterRole", "Role"):
            continue
        for i, r in enumerate(o["rules"]):
            for g in r["apiGroups"]:
                for res in r["resources"]:
                    for v in r["verbs"]:
                        out.append((o["kind"], o["metadata"]["name"], i, g,
                                    res, v))
    return sorted(out)


def without(objs, grant):
    """A copy of the RBAC objects with one (apiGroup, resource, verb)
    removed from its rule."""
    kind, name, i, g, res, v = grant
    out = copy.deepcopy(objs)
    o = one(out, kind, name)
    r = o["rules"][i]
    rest = []
    for gg in r["apiGroups"]:
        for rr in r["resources"]:
            for vv in r["verbs"]:
                if (gg, rr, vv) != (g, res, v):
                    rest.append({"apiGroups": [gg], "resources": [rr],
                                 "verbs": [vv]})
    o["rules"] = o["rules"][:i] + rest + o["rules"][i + 1:]
    return out


def renamed(objs, ns, suffix):
    """The RBAC objects for another ServiceAccount: namespace `ns`,
    cluster-scoped names + suffix."""
    out = []
    for o in copy.deepcopy(objs):
        m = o["metadata"]
        if o["kind"] == "Namespace":
            m["name"] = ns
        elif o["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            m["name"] += suffix
        else:
            m["namespace"] = ns
        if o["kind"] == "ClusterRoleBinding":
            o["roleRef"]["name"] += suffix
        if o["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            for s in o["subjects"]:
                s["namespace"] = ns
        out.append(o)
    return out


def driver():
    """"run", "kube-dump" or None: what this amc can run in-cluster."""
    def helptext(*a):
        p = subprocess.run([AMC] + list(a) + ["--help"], capture_output=True,
                           text=True, timeout=20)
        return p.stdout + p.stderr if p.returncode == 0 else ""
    run = " ".join(helptext("run").split())  # --help wraps lines
    # amc run drives the whole role only once it writes statuses (its
    # --help says so while it does not).
    if "--lease-name" in run and "not wired" not in run:
        return "run"
    if "--lease-name" in run:
        print("note: `amc run --help` says status write-back is not wired "
              "yet; amc kube-dump drives the role")
    if "--in-cluster" in helptext("kube-dump"):
        return "kube-dump"
    return None


DRIVER = driver()


class Amc:
    """`amc run` as one ServiceAccount, configured like the Deployment
    (or `amc kube-dump` with the Deployment's Kubernetes settings)."""

    def __init__(self, tmp, kf, sim, ns, cluster, rendered):
        self.dir = os.path.join(tmp, ns)
        os.makedirs(self.dir)
        self.ns = ns
        self.user = "system:serviceaccount:%s:amc" % ns
        args, _ = materialize_pod(rendered, self.dir, SIM_PASSWORD, {
            "avi-url": "https://127.0.0.1:%d" % sim.ports["https"],
            "avi-ca-file": sim.ports["ca"], "cluster": cluster})
        # The ServiceAccount's token, CA and namespace, as mounted in a pod.
        sa = os.path.join(self.dir, "serviceaccount")
        os.makedirs(sa)
        st, body, _ = kf.request(
            "POST", "/api/v1/namespaces/%s/serviceaccounts/amc/token" % ns,
            json.dumps({"apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenRequest",
                        "spec": {"expirationSeconds": 3600}}))
        assert st == 201, (st, body)
        open(os.path.join(sa, "token"), "w").write(body["status"]["token"])
        shutil.copy(kf.info["ca"], os.path.join(sa, "ca.crt"))
        open(os.path.join(sa, "namespace"), "w").write(ns)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CTRL_", "KUBE"))}
        env.update({"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                    "KUBERNETES_SERVICE_PORT": str(kf.port),
                    "AMC_SERVICEACCOUNT_DIR": sa,
                    "POD_NAME": "amc-%s-0" % ns, "POD_NAMESPACE": ns,
                    "CTRL_USERNAME": "admin"})
        args = [a.replace("$(POD_NAMESPACE)", ns) for a in args]
        self.port_file = os.path.join(self.dir, "admin-port")
        if DRIVER == "run":
            cmd = [AMC, "run"] + args + [
                "--admin-addr=127.0.0.1", "--admin-port=0",
                "--admin-port-file=" + self.port_file, "--log-format=logfmt"]
        else:
            opts = dict(a[2:].split("=", 1) for a in args if "=" in a)
            assert opts.get("leader-elect") == "true", args
            cmd = [AMC, "kube-dump", "--in-cluster",
                   "--lease-name", opts["lease-name"],
                   "--lease-namespace", opts["lease-namespace"],
                   "--retry-period", "1", "--renew-deadline", "3",
                   "--lease-duration", "5", "--write-status",
                   "--status-error", "rbac test error"]
            if opts.get("events") == "true":
                cmd.append("--events")
        self.log = open(os.path.join(self.dir, "amc.log"), "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log,
                                     stderr=self.log)

    def alive(self):
        return self.proc.poll() is None

    def logs(self):
        self.log.flush()
        return open(self.log.name, errors="replace").read()[-3000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class World:
    """kubefake with RBAC enforced; deploy/base, the RBAC variants,
    Bookinfo and a broken Gateway applied with kubectl as admin; avisim."""

    def __init__(self, variants):
        from harness import KubeFake
        from avisim_testlib import SimProcess
        self.tmp = tempfile.mkdtemp(prefix="amc-rbac-")
        self.rendered = render(BASE)
        self.kf = KubeFake("--rbac")
        self.sim = None
        try:
            self.kf.start()
            self.sim = SimProcess("--password", SIM_PASSWORD)
            # deploy/ goes in with kubectl, as an operator would apply it
            # (kubefake serves apps/v1 Deployments through a CRD).
            from test_deploy_manifests import DEPLOYMENT_CRD
            self.kubectl("create", "-f", "-", stdin=json.dumps(DEPLOYMENT_CRD))
            wait_for(lambda: self.kf.request("GET", "/apis/apps/v1")[0] ==
                     200, "apps/v1 served")
            self.kubectl("apply", "-k", BASE)
            if variants:
                docs = [o for _, objs in variants for o in objs]
                self.kubectl("apply", "-f", "-",
                             stdin=yaml.safe_dump_all(docs))
            self.kubectl("apply", "-f", os.path.join(SRC, "examples",
                                                     "bookinfo"))
            self.kubectl("apply", "-f", "-", stdin=BROKEN)
            self.kf.request("DELETE", "/_fake/rbac-log")
        except Exception:
            self.close()
            raise

    def kubectl(self, *a, stdin=None):
        home = os.path.join(self.tmp, "home")
        os.makedirs(home, exist_ok=True)
        p = subprocess.run([KUBECTL, "--kubeconfig",
                            self.kf.info["kubeconfig"], "--cache-dir",
                            os.path.join(home, "cache")] + list(a),
                           input=stdin, capture_output=True, text=True,
                           env=kubectl_env(home), timeout=60)
        assert p.returncode == 0, "kubectl %s: %s" % (a, p.stderr)
        return p.stdout

    def rbac_log(self):
        st, body, _ = self.kf.request("GET", "/_fake/rbac-log")
        assert st == 200, st
        return body

    def close(self):
        if self.sim:
            self.sim.stop()
        self.kf.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


def decisions_of(log, user):
    return [d for d in log["decisions"] if d["user"] == user]


def key_of(d):
    res = d["resource"] + ("/" + d["subresource"] if d.get("subresource")
                           else "")
    return (d["apiGroup"], res, d["verb"])


# Grants amc uses only on clusters without EndpointSlices (the fake serves
# them here): never used, not needed in this world. That they are enough
# there is checked by test_kube_rbac.py (--no-endpointslices) and
# test_kube_endpoints.py.
FALLBACK = {("", "endpoints", "list"), ("", "endpoints", "watch")}


def test_full_role_used_and_sufficient():
    w = World([])
    amc = None
    try:
        amc = Amc(w.tmp, w.kf, w.sim, NS, "rbac", w.rendered)
        user = amc.user

        def done():
            if not amc.alive():
                raise Fatal("amc exited:\n" + amc.logs())
            log = w.rbac_log()
            denied = [d for d in decisions_of(log, user) if not d["allowed"]]
            if denied:
                raise Fatal("denied with deploy/'s role: %s" % sorted({
                    (key_of(d), d["namespace"]) for d in denied}))
            used = {key_of(d) for d in decisions_of(log, user)
                    if d["allowed"]}
            mine = [(g["apiGroup"], g["resource"], g["verb"])
                    for g in log["grants"] if g["subject"] == user and
                    (g["apiGroup"], g["resource"], g["verb"]) not in FALLBACK]
            return all(k in used for k in mine) and log
        try:
            log = wait_for(done, "every granted rule used", timeout=40,
                           interval=0.25)
        except Fatal:
            raise
        except AssertionError:
            log = w.rbac_log()
            used = {key_of(d) for d in decisions_of(log, user)
                    if d["allowed"]}
            unused = sorted({(g["apiGroup"], g["resource"], g["verb"])
                             for g in log["grants"]
                             if g["subject"] == user} - used)
            raise AssertionError("grants never used: %s\namc log:\n%s" % (
                unused, amc.logs()))
        # AVI got the Bookinfo tree (amc really ran its whole loop).
        if DRIVER == "run":
            st, state = w.sim.control("GET", "/_sim/state")
            names = [o["name"] for o in
                     state["objects"].get("virtualservice", [])]
            assert any(n.startswith("amc--rbac--") for n in names), names
        else:
            print("note: driver amc kube-dump: the AVI side is not run")
        denied = [d for d in decisions_of(log, user) if not d["allowed"]]
        assert not denied, "denied calls: %s" % [
            (key_of(d), d["namespace"], d["name"]) for d in denied]
        assert all(bool(g["used"]) != (
            (g["apiGroup"], g["resource"], g["verb"]) in FALLBACK)
            for g in log["grants"] if g["subject"] == user), log["grants"]
        # The grants are exactly deploy/'s rules.
        granted = sorted({(g["apiGroup"], g["resource"], g["verb"])
                          for g in log["grants"] if g["subject"] == user})
        want = sorted({(g, r, v) for _, _, _, g, r, v in grants(w.rendered)})
        assert granted == want, (granted, want)
    finally:
        if amc:
            amc.stop()
        w.close()


def test_each_grant_is_needed():
    rendered = render(BASE)
    base_rbac = [o for o in rendered if o["kind"] in RBAC_KINDS]
    all_grants = [g for g in grants(rendered) if g[3:] not in FALLBACK]
    assert len(all_grants) >= 20, all_grants
    variants = []
    for i, gr in enumerate(all_grants):
        ns = "amc-v%02d" % i
        variants.append((ns, renamed(without(base_rbac, gr), ns,
                                     "-v%02d" % i), gr))
    w = World([(ns, objs) for ns, objs, _ in variants])
    procs = []
    try:
        pending = {}
        # A few at a time: the machine has 2 cores.
        batch = 6
        for start in range(0, len(variants), batch):
            group = variants[start:start + batch]
            for ns, _, gr in group:
                a = Amc(w.tmp, w.kf, w.sim, ns, "rbac-" + ns, w.rendered)
                procs.append(a)
                pending[ns] = (a, gr)

            def all_denied():
                log = w.rbac_log()
                for ns, _, gr in group:
                    a, (_, _, _, g, res, v) = pending[ns]
                    hit = [d for d in decisions_of(log, a.user)
                           if not d["allowed"] and key_of(d) == (g, res, v)]
                    if not hit:
                        return False
                return True
            try:
                wait_for(all_denied, "a 403 in every variant", timeout=45,
                         interval=0.25)
            except AssertionError:
                log = w.rbac_log()
                missing = []
                for ns, _, gr in group:
                    a = pending[ns][0]
                    if not [d for d in decisions_of(log, a.user)
                            if not d["allowed"] and key_of(d) == gr[3:]]:
                        missing.append((gr[3:], a.logs()[-800:]))
                raise AssertionError(
                    "removing these grants caused no denial: %s" % missing)
            for ns, _, _ in group:
                pending[ns][0].stop()
    finally:
        for a in procs:
            a.stop()
        w.close()


if __name__ == "__main__":
    assert DRIVER, "%s can run neither `amc run` in-cluster nor " \
        "`amc kube-dump`" % AMC
    print("driver: amc %s" % DRIVER)
    run_tests([test_full_role_used_and_sufficient, test_each_grant_is_needed])
