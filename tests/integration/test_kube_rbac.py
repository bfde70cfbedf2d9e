#!/usr/bin/python3
"""amc's Kubernetes side needs exactly the permissions docs/kubernetes.md
lists: with the fake API server enforcing RBAC and the manifest in
tests/unit/fixtures/kube/rbac.yaml, an in-cluster `amc kube-dump` (all
resources, leader election, status write-back) is never denied, and every
granted rule is used: all of them on a cluster with EndpointSlices but
`endpoints`, and on one without (kubefake --no-endpointslices) all but
`endpointslices`."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_kube_source import (KUBEFAKE, SRC, Dump, Fake,  # noqa: E402
                              wait_until)

SA = "system:serviceaccount:amc-system:amc"
MANIFEST = os.path.join(SRC, "tests", "unit", "fixtures", "kube", "rbac.yaml")


# The (apiGroup, resource) read only on a cluster with (True) or without
# (False) EndpointSlices.
ONLY = {True: ("discovery.k8s.io", "endpointslices"),
        False: ("", "endpoints")}


def scenario(slices):
    tmp = tempfile.mkdtemp(prefix="amc-rbac-")
    extra = [] if slices else ["--no-endpointslices"]
    fake = Fake(tmp, "--rbac", "--rbac-manifests", MANIFEST, "--token",
                "sa-token=%s|system:serviceaccounts,"
                "system:serviceaccounts:amc-system" % SA, *extra)
    ok = False
    d = None
    try:
        fake.ns("app")
        base = "/apis/networking.istio.io/v1/namespaces/app/"
        fake.ok("POST", base + "gateways", {
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "app"},
            "spec": {"servers": []}})
        fake.ok("POST", base + "virtualservices", {
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "vs", "namespace": "app"},
            "spec": {"hosts": ["a.example"]}})
        sa = os.path.join(tmp, "sa")
        os.makedirs(sa)
        shutil.copy(fake.info["ca"], os.path.join(sa, "ca.crt"))
        with open(os.path.join(sa, "token"), "w") as f:
            f.write("sa-token\n")
        with open(os.path.join(sa, "namespace"), "w") as f:
            f.write("amc-system\n")
        fake.ok("DELETE", "/_fake/rbac-log")
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
               "KUBERNETES_SERVICE_PORT": str(fake.info["port"]),
               "AMC_SERVICEACCOUNT_DIR": sa}
        d = Dump(tmp, ["--in-cluster", "--lease-name", "amc",
                       "--identity", "amc-0", "--lease-duration", "3",
                       "--renew-deadline", "2", "--retry-period", "0.5",
                       "--write-status"], env=env, name="rbac")
        d.wait(event="synced")
        d.wait(event="leading")
        d.wait(event="status", name="gw", result="written")
        d.wait(event="status", name="vs", result="written")
        wait_until(lambda: len(d.find(event="status", result="unchanged"))
                   >= 2, 10, "a renewal cycle")
        d.stop()
        log = fake.ok("GET", "/_fake/rbac-log")
        mine = [x for x in log["decisions"] if x["user"] == SA]
        denied = [x for x in mine if not x["allowed"]]
        assert mine and not denied, denied
        grants = [g for g in log["grants"] if g["subject"] == SA]
        unused = sorted((g["apiGroup"], g["resource"], g["verb"])
                        for g in grants if not g["used"])
        # Every verb on every granted resource was needed, but the endpoint
        # kind this cluster does not use.
        group, res = ONLY[not slices]
        assert grants and unused == [(group, res, "list"),
                                     (group, res, "watch")], unused
        # The lease lives in amc-system (namespace from the service account).
        lease = fake.ok("GET", "/apis/coordination.k8s.io/v1/namespaces/"
                        "amc-system/leases/amc")
        assert lease["spec"]["holderIdentity"] == "", lease  # released
        ok = True
    finally:
        if d and d.proc.poll() is None:
            d.stop()
        fake.stop()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept %s for inspection" % tmp)
    print("ok   rbac (%s)" % ("endpointslices" if slices else "endpoints"))




def main():
    if not os.path.exists(KUBEFAKE):
        print("kubefake not found at %s" % KUBEFAKE)
        return 1
    scenario(slices=True)
    scenario(slices=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
