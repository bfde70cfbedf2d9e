"""deploy/: the manifests render (kubectl kustomize, offline), are what the
generator makes from rules/, pass a schema check of the Kubernetes fields
they use, are accepted by an API server (kubectl apply and apply
--dry-run=server against kubefake), and hang together: probes on the admin
port amc listens on, the user the image runs as, the paths amc reads, the
Secret referenced and never inlined, flags and config keys that `amc run`
knows. The rules ConfigMap, laid out as the kubelet mounts it (..data
symlinks, lib/ via items), translates like rules/ itself."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_testlib import (AMC, KUBECTL, SRC, Fatal, find,  # noqa: E402
                            kubectl_env, kubelet_layout, materialize_pod, one,
                            render, run_help, run_tests, sh, wait_for)

BASE = os.path.join(SRC, "deploy", "base")
NS = "amc-system"
_render = None


def objs():
    global _render
    if _render is None:
        _render = render(BASE)
    return _render


def deployment():
    return one(objs(), "Deployment", "amc")


def container():
    c = deployment()["spec"]["template"]["spec"]["containers"]
    assert len(c) == 1, c
    return c[0]


def config_files():
    cm = one(objs(), "ConfigMap", "amc-config")
    return (yaml.safe_load(cm["data"]["amc.yaml"]),
            yaml.safe_load(cm["data"]["settings.yaml"]))


# --- a schema of the Kubernetes fields deploy/ uses -------------------------
# Field names as in the Kubernetes API reference (apps/v1, core/v1,
# rbac.authorization.k8s.io/v1); a field not listed here is a typo or needs
# adding here deliberately. Types: str, int, bool, "q" (int or string),
# "map" (string -> string), [schema] (list), {..} (object).

META = {"name": str, "namespace": str, "labels": "map",
        "annotations": "map"}
SELECTOR = {"matchLabels": "map"}
PROBE = {"httpGet": {"path": str, "port": "q", "scheme": str},
         "initialDelaySeconds": int, "periodSeconds": int,
         "timeoutSeconds": int, "failureThreshold": int,
         "successThreshold": int}
KEYREF = {"name": str, "key": str, "optional": bool}
CONTAINER = {
    "name": str, "image": str, "imagePullPolicy": str, "args": [str],
    "command": [str],
    "env": [{"name": str, "value": str, "valueFrom": {
        "fieldRef": {"fieldPath": str, "apiVersion": str},
        "secretKeyRef": KEYREF, "configMapKeyRef": KEYREF}}],
    "ports": [{"name": str, "containerPort": int, "protocol": str}],
    "livenessProbe": PROBE, "readinessProbe": PROBE, "startupProbe": PROBE,
    "resources": {"requests": "map", "limits": "map"},
    "securityContext": {"allowPrivilegeEscalation": bool,
                        "readOnlyRootFilesystem": bool,
                        "runAsNonRoot": bool, "runAsUser": int,
                        "runAsGroup": int, "privileged": bool,
                        "capabilities": {"drop": [str], "add": [str]},
                        "seccompProfile": {"type": str}},
    "volumeMounts": [{"name": str, "mountPath": str, "readOnly": bool,
                      "subPath": str}],
}
ITEMS = [{"key": str, "path": str, "mode": int}]
VOLUME = {"name": str,
          "configMap": {"name": str, "items": ITEMS, "defaultMode": int,
                        "optional": bool},
          "secret": {"secretName": str, "items": ITEMS, "defaultMode": int,
                     "optional": bool},
          "emptyDir": {"medium": str, "sizeLimit": "q"}}
POD = {
    "serviceAccountName": str, "automountServiceAccountToken": bool,
    "terminationGracePeriodSeconds": int,
    "securityContext": {"runAsNonRoot": bool, "runAsUser": int,
                        "runAsGroup": int, "fsGroup": int,
                        "seccompProfile": {"type": str}},
    "affinity": {"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": int, "podAffinityTerm": {
                "topologyKey": str, "labelSelector": SELECTOR}}]}},
    "containers": [CONTAINER], "volumes": [VOLUME],
    "priorityClassName": str, "nodeSelector": "map",
}
RULE = {"apiGroups": [str], "resources": [str], "verbs": [str],
        "resourceNames": [str]}
ROLEREF = {"apiGroup": str, "kind": str, "name": str}
SUBJECT = {"kind": str, "name": str, "namespace": str, "apiGroup": str}


def top(**spec):
    return dict({"apiVersion": str, "kind": str, "metadata": META}, **spec)


SCHEMA = {
    ("v1", "Namespace"): top(),
    ("v1", "ServiceAccount"): top(),
    ("v1", "ConfigMap"): top(data="map"),
    ("v1", "Secret"): top(type=str, data="map", stringData="map"),
    ("v1", "Service"): top(spec={
        "type": str, "selector": "map",
        "ports": [{"name": str, "port": int, "targetPort": "q",
                   "protocol": str}]}),
    ("apps/v1", "Deployment"): top(spec={
        "replicas": int, "revisionHistoryLimit": int, "selector": SELECTOR,
        "strategy": {"type": str, "rollingUpdate": {"maxUnavailable": "q",
                                                    "maxSurge": "q"}},
        "template": {"metadata": META, "spec": POD}}),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): top(rules=[RULE]),
    ("rbac.authorization.k8s.io/v1", "Role"): top(rules=[RULE]),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"):
        top(roleRef=ROLEREF, subjects=[SUBJECT]),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"):
        top(roleRef=ROLEREF, subjects=[SUBJECT]),
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*"
                     r"[a-z0-9])?)*$")


def check(schema, v, where):
    """Raises AssertionError naming the path of the first bad field."""
    if schema == "map":
        assert isinstance(v, dict), "%s: want a map" % where
        for k, x in v.items():
            assert isinstance(k, str) and isinstance(x, str), \
                "%s.%s: want a string value, got %r" % (where, k, x)
    elif schema == "q":
        assert isinstance(v, (int, str)) and not isinstance(v, bool), \
            "%s: want an int or a string" % where
    elif schema in (str, int, bool):
        ok = isinstance(v, schema) and (schema is bool or
                                        not isinstance(v, bool))
        assert ok, "%s: want %s, got %r" % (where, schema.__name__, v)
    elif isinstance(schema, list):
        assert isinstance(v, list), "%s: want a list" % where
        for i, x in enumerate(v):
            check(schema[0], x, "%s[%d]" % (where, i))
    else:
        assert isinstance(v, dict), "%s: want an object" % where
        for k, x in v.items():
            assert k in schema, "%s: unknown field %r" % (where, k)
            check(schema[k], x, "%s.%s" % (where, k))


def validate(o):
    key = (o.get("apiVersion"), o.get("kind"))
    assert key in SCHEMA, "unexpected object type %s" % (key,)
    name = "%s/%s" % (o["kind"], o["metadata"].get("name"))
    check(SCHEMA[key], o, name)
    assert DNS1123.match(o["metadata"]["name"]), name
    if o["kind"] in CLUSTER_SCOPED:
        assert "namespace" not in o["metadata"], name
    else:
        assert o["metadata"].get("namespace") == NS, \
            "%s is not in %s" % (name, NS)


# --- tests ------------------------------------------------------------------

def test_schema_check_catches_typos():
    def typo(d):
        c = d["spec"]["template"]["spec"]["containers"][0]
        c["readinessprobe"] = c.pop("readinessProbe")

    for mutate, want in (
            (typo, "unknown field 'readinessprobe'"),
            (lambda d: d["spec"].__setitem__("replicas", "2"), "want int"),
            (lambda d: d["metadata"].__setitem__("name", "Amc"), "Amc"),
            (lambda d: d["metadata"].__setitem__("namespace", "x"), "not in")):
        d = json.loads(json.dumps(deployment()))
        validate(d)
        mutate(d)
        try:
            validate(d)
        except AssertionError as e:
            assert want in str(e), (want, str(e))
        else:
            raise AssertionError("schema check missed: %s" % want)


def test_render_and_schema():
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objs())
    assert kinds == sorted([
        ("Namespace", NS), ("ServiceAccount", "amc"),
        ("ClusterRole", "amc"), ("ClusterRoleBinding", "amc"),
        ("Role", "amc-leader-election"),
        ("RoleBinding", "amc-leader-election"),
        ("ConfigMap", "amc-config"), ("ConfigMap", "amc-rules"),
        ("Deployment", "amc"), ("Service", "amc-metrics")]), kinds
    for o in objs():
        validate(o)
    # The example Secret (kept out of the base) is valid too.
    ex = yaml.safe_load(open(os.path.join(SRC, "deploy", "examples",
                                          "avi-credentials.yaml")))
    validate(ex)


def test_generated_files_are_current():
    p = subprocess.run([os.path.join(SRC, "scripts", "gen-rules-configmap.sh"),
                        "--check"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    # The ConfigMap holds every rule file byte for byte, and the volume
    # items map every key back to its path under rules/.
    cm = one(objs(), "ConfigMap", "amc-rules")["data"]
    files = {}
    for root, _, fns in os.walk(os.path.join(SRC, "rules")):
        for fn in fns:
            if fn.endswith(".lua"):
                p = os.path.join(root, fn)
                files[os.path.relpath(p, os.path.join(SRC, "rules"))] = \
                    open(p).read()
    vol = [v for v in deployment()["spec"]["template"]["spec"]["volumes"]
           if v["name"] == "rules"][0]["configMap"]
    items = {i["key"]: i["path"] for i in vol["items"]}
    assert set(items) == set(cm), (set(items) ^ set(cm))
    assert {items[k]: v for k, v in cm.items()} == files
    # The plain manifest is the rendered base.
    plain = [d for d in yaml.safe_load_all(
        open(os.path.join(SRC, "deploy", "amc.yaml"))) if d]
    assert plain == objs()


def test_generator_detects_stale_files():
    tmp = tempfile.mkdtemp(prefix="amc-gen-")
    try:
        rules = os.path.join(tmp, "rules")
        shutil.copytree(os.path.join(SRC, "rules"), rules)
        out = os.path.join(tmp, "deploy", "base")
        shutil.copytree(BASE, out)
        gen = os.path.join(SRC, "scripts", "gen-rules-configmap.sh")
        with open(os.path.join(rules, "lib", "extra.lua"), "w") as f:
            f.write("return {}\n\n")
        p = subprocess.run([gen, "--check", rules, out], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 1 and "out of date" in p.stderr, p.stderr
        sh([gen, rules, out], timeout=60)
        cm = yaml.safe_load(open(os.path.join(out, "rules-configmap.yaml")))
        assert cm["data"]["lib__extra.lua"] == "return {}\n\n"
        vol = yaml.safe_load(open(os.path.join(out, "rules-volume.yaml")))
        items = vol["spec"]["template"]["spec"]["volumes"][0]["configMap"][
            "items"]
        assert {"key": "lib__extra.lua", "path": "lib/extra.lua"} in items
        # A file name that cannot be a ConfigMap key is refused.
        open(os.path.join(rules, "bad name.lua"), "w").write("return {}\n")
        p = subprocess.run([gen, rules, out], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 1 and "bad name.lua" in p.stderr, p.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def amc_can_translate():
    p = subprocess.run([AMC, "translate", "--help"], capture_output=True,
                       text=True, timeout=20)
    return p.returncode == 0


def test_rules_configmap_mount_translates_like_rules_dir():
    assert amc_can_translate(), "%s has no `amc translate`" % AMC
    cm = one(objs(), "ConfigMap", "amc-rules")["data"]
    vol = [v for v in deployment()["spec"]["template"]["spec"]["volumes"]
           if v["name"] == "rules"][0]["configMap"]
    items = {i["key"]: i["path"] for i in vol["items"]}
    tmp = tempfile.mkdtemp(prefix="amc-cm-")
    try:
        mnt = os.path.join(tmp, "rules")
        os.makedirs(mnt)
        kubelet_layout(mnt, cm, items)
        assert os.path.isfile(os.path.join(mnt, "lib", "avi.lua"))
        ex = os.path.join(SRC, "examples")
        want = sh([AMC, "translate", "--rules", os.path.join(SRC, "rules"),
                   ex]).stdout
        got = sh([AMC, "translate", "--rules", mnt, ex]).stdout
        assert got == want, "the mounted ConfigMap translates differently"
        assert json.loads(got)["virtualservice"], got[:500]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def dockerfile_facts():
    text = open(os.path.join(SRC, "Dockerfile")).read()
    user = re.findall(r"^USER\s+(\d+)(?::(\d+))?\s*$", text, re.M)[-1]
    expose = [int(p) for p in re.findall(r"^EXPOSE\s+(\d+)", text, re.M)]
    return int(user[0]), int(user[1] or user[0]), expose


def test_deployment_shape():
    d = deployment()
    spec = d["spec"]
    pod = spec["template"]["spec"]
    c = container()
    amc_yaml, settings = config_files()
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"].items() <= \
        spec["template"]["metadata"]["labels"].items()
    # Leader election: on, with a Lease in the pod's namespace.
    args = c["args"]
    assert "--leader-elect=true" in args, args
    assert "--lease-namespace=$(POD_NAMESPACE)" in args, args
    env = {e["name"]: e for e in c.get("env", [])}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.name", "POD_NAME is the lease identity"
    # Probes on the admin port, which is where amc listens and what the
    # image exposes.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    uid, gid, expose = dockerfile_facts()
    assert ports["admin"] == amc_yaml["admin-port"], (ports, amc_yaml)
    assert ports["admin"] in expose, (ports, expose)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz",
                                             "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz",
                                              "port": "admin"}
    # Resources.
    r = c["resources"]
    assert {"cpu", "memory"} <= set(r["requests"]) and "memory" in r["limits"]
    # Security: non-root as the image's user, read-only root, no
    # capabilities, no privilege escalation, RuntimeDefault seccomp.
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == uid and \
        psc["runAsGroup"] == gid and psc["fsGroup"] == gid, psc
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert pod["serviceAccountName"] == "amc"
    # Mounts: every path amc.yaml names is inside a mount of the right
    # volume; the rules are a directory mount (no subPath).
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}

    def volume_of(path):
        best = max((m for m in mounts if path == m or
                    path.startswith(m.rstrip("/") + "/")), key=len)
        return mounts[best], vols[mounts[best]["name"]]

    cfg_arg = [a for a in args if a.startswith("--config=")]
    assert cfg_arg, args
    m, v = volume_of(cfg_arg[0].split("=", 1)[1])
    assert v["configMap"]["name"] == "amc-config"
    assert cfg_arg[0].endswith("/amc.yaml")
    m, v = volume_of(amc_yaml["settings"])
    assert v["configMap"]["name"] == "amc-config" and \
        amc_yaml["settings"].endswith("/settings.yaml")
    m, v = volume_of(amc_yaml["rules"])
    assert m["mountPath"] == amc_yaml["rules"] and "subPath" not in m
    assert v["configMap"]["name"] == "amc-rules"
    m, v = volume_of(amc_yaml["avi-password-file"])
    assert v["secret"]["secretName"] == "amc-avi-credentials"
    assert os.path.basename(amc_yaml["avi-password-file"]) in \
        [i["path"] for i in v["secret"]["items"]]
    assert all(m.get("readOnly") for p, m in mounts.items() if p != "/tmp")
    assert vols[mounts["/tmp"]["name"]].get("emptyDir") is not None
    assert not [m for m in mounts.values() if "subPath" in m]


def test_settings_and_secret_reference():
    amc_yaml, settings = config_files()
    for k in ("avi-url", "avi-version", "avi-tenant", "cloud", "cluster"):
        assert amc_yaml.get(k), "amc.yaml sets %s" % k
    assert amc_yaml["source"] == "kube"
    assert isinstance(settings["ingress_selector"], dict) and \
        settings["ingress_selector"], settings
    # Credentials: referenced, never inlined anywhere in deploy/.
    assert not find(objs(), "Secret"), "no Secret in the base"
    for k in amc_yaml:
        assert k not in ("avi-password", "avi-username"), k
    env = {e["name"]: e for e in container().get("env", [])}
    assert env["CTRL_USERNAME"]["valueFrom"]["secretKeyRef"] == {
        "name": "amc-avi-credentials", "key": "username"}
    assert "CTRL_PASSWORD" not in env or "value" not in env["CTRL_PASSWORD"]
    for e in env.values():
        assert "value" not in e or not re.search(
            "PASS|TOKEN|SECRET", e["name"]), e
    ex = yaml.safe_load(open(os.path.join(SRC, "deploy", "examples",
                                          "avi-credentials.yaml")))
    assert ex["metadata"]["name"] == "amc-avi-credentials"
    assert set(ex["stringData"]) == {"username", "password"}
    assert all(v.startswith("REPLACE-") for v in ex["stringData"].values())


def test_rbac_shape():
    cr = one(objs(), "ClusterRole", "amc")
    writes = {"create", "update", "patch", "delete", "deletecollection"}
    for r in cr["rules"]:
        for f in ("apiGroups", "resources", "verbs"):
            assert "*" not in r[f], "no wildcards: %s" % r
        assert "get" not in r["verbs"] or r["resources"] == ["leases"], r
        if writes & set(r["verbs"]):
            assert set(r["verbs"]) <= {"patch"} and all(
                x.endswith("/status") for x in r["resources"]) or (
                r["resources"] == ["events"] and r["verbs"] == ["create"]), \
                "a write outside status and events: %s" % r
    role = one(objs(), "Role", "amc-leader-election")
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"],
                              "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}]
    for kind, name in (("ClusterRoleBinding", "amc"),
                       ("RoleBinding", "amc-leader-election")):
        b = one(objs(), kind, name)
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "amc",
                                  "namespace": NS}], b
    svc = one(objs(), "Service", "amc-metrics")
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] == "admin"


# The Deployment's leader-election and Events flags belong to the in-cluster
# part of `amc run` (the Kubernetes source), which may land after the rest
# of `amc run`: they are checked once `amc run --help` lists --lease-name.
IN_CLUSTER_FLAGS = {"leader-elect", "lease-name", "lease-namespace", "events"}


def test_flags_and_config_keys_known_to_amc_run():
    help_text = run_help()
    if "--admin-port" not in help_text:
        print("note: this amc has no `amc run --help` yet; not checked")
        return
    amc_yaml, _ = config_files()
    flags = set(re.findall(r"--([a-z][a-z0-9-]*)", help_text))
    for k in amc_yaml:
        assert k in flags, "amc.yaml key %r is not an `amc run` option" % k
    in_cluster = "lease-name" in flags
    if not in_cluster:
        print("note: `amc run` has no --lease-name yet (no Kubernetes "
              "source): %s not checked" % sorted(IN_CLUSTER_FLAGS))
    for a in container()["args"]:
        name = a[2:].split("=", 1)[0]
        if name in IN_CLUSTER_FLAGS and not in_cluster:
            continue
        assert name in flags, "arg %s is not an `amc run` option" % a


def test_amc_run_with_the_deployment_config():
    """The Deployment's args, amc.yaml, settings.yaml, rules mount and
    password file (paths remapped, AVI = the simulator) work in `amc run`:
    /readyz turns 200 and AVI gets the examples' tree, named with the
    configured cluster, in the configured tenant. (fs source instead of
    the cluster.)"""
    import http.client
    sys.path.insert(0, os.path.join(SRC, "tests", "fakes", "avi"))
    from avisim_testlib import SimProcess
    if "--admin-port" not in run_help():
        print("note: this amc has no `amc run` yet; not checked")
        return
    flags = set(re.findall(r"--([a-z][a-z0-9-]*)", run_help()))
    tmp = tempfile.mkdtemp(prefix="amc-pod-")
    proc = sim = None
    try:
        sim = SimProcess("--password", "pod-test-pw")
        args, amc_yaml = materialize_pod(objs(), tmp, "pod-test-pw", {
            "avi-url": "https://127.0.0.1:%d" % sim.ports["https"],
            "avi-ca-file": sim.ports["ca"]})
        # Leader election and Events need the Kubernetes source, which
        # test_deploy_rbac.py runs; here the source is the example files.
        args = [a.replace("$(POD_NAMESPACE)", NS) for a in args
                if a[2:].split("=", 1)[0] in flags and
                a[2:].split("=", 1)[0] not in IN_CLUSTER_FLAGS]
        portf = os.path.join(tmp, "port")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CTRL_", "KUBE"))}
        env.update({"POD_NAME": "amc-0", "POD_NAMESPACE": NS,
                    "CTRL_USERNAME": "admin"})
        log = open(os.path.join(tmp, "log"), "w")
        proc = subprocess.Popen(
            [AMC, "run"] + args + [
                "--source=fs://" + os.path.join(SRC, "examples"),
                "--admin-addr=127.0.0.1", "--admin-port=0",
                "--admin-port-file=" + portf],
            env=env, stdout=subprocess.DEVNULL, stderr=log)

        def ready():
            if proc.poll() is not None:
                raise Fatal("amc run exited %s: %s" % (
                    proc.returncode, open(log.name).read()[-2000:]))
            if not os.path.exists(portf):
                return False
            c = http.client.HTTPConnection(
                "127.0.0.1", int(open(portf).read()), timeout=5)
            c.request("GET", "/readyz")
            r = c.getresponse()
            body = r.read().decode()
            return r.status == 200 and body
        body = json.loads(wait_for(ready, "/readyz 200 with the "
                                   "Deployment's config", timeout=30))
        assert body["ready"] is True, body
        st, state = sim.control("GET", "/_sim/state")
        vs = [o for o in state["objects"].get("virtualservice", [])
              if o.get("created_by") == "amc-" + amc_yaml["cluster"]]
        assert vs, "no virtual service owned by amc-%s: %s" % (
            amc_yaml["cluster"], [o["name"] for o in
                                  state["objects"].get("virtualservice", [])])
        for o in vs:
            assert o["name"].startswith("amc--%s--" % amc_yaml["cluster"])
            assert o["tenant_ref"].endswith("#" + amc_yaml["avi-tenant"]), o
            assert o["cloud_ref"].endswith("#" + amc_yaml["cloud"]), o
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if sim:
            sim.stop()
        shutil.rmtree(tmp, ignore_errors=True)


DEPLOYMENT_CRD = {
    # kubefake serves no apps/v1: a CRD makes Deployments servable there,
    # so kubectl can send the whole base (schema checked above).
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "deployments.apps"},
    "spec": {"group": "apps", "scope": "Namespaced",
             "names": {"plural": "deployments", "singular": "deployment",
                       "kind": "Deployment", "listKind": "DeploymentList"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {
                               "type": "object",
                               "x-kubernetes-preserve-unknown-fields": True}},
                           "subresources": {"status": {}}}]}}


def test_apply_to_api_server():
    from harness import KubeFake
    kf = KubeFake().start()
    home = tempfile.mkdtemp(prefix="amc-kubectl-")
    try:
        env = kubectl_env(home)

        def kubectl(*a, ok=True, stdin=None):
            p = subprocess.run(
                [KUBECTL, "--kubeconfig", kf.info["kubeconfig"],
                 "--cache-dir", os.path.join(home, "cache"),
                 "--request-timeout", "15s"] + list(a),
                input=stdin, capture_output=True, text=True, env=env,
                timeout=60)
            if ok:
                assert p.returncode == 0, "kubectl %s: %s%s" % (
                    " ".join(a), p.stdout, p.stderr)
            return p

        kubectl("create", "-f", "-", stdin=json.dumps(DEPLOYMENT_CRD))
        # Namespaced objects need their namespace to exist, also for a
        # server-side dry run: apply for real, then dry-run again.
        out = kubectl("apply", "-k", BASE).stdout
        assert len(re.findall(r"\b(created|configured)\b", out)) == 10, out
        dry = kubectl("apply", "--dry-run=server", "-k", BASE).stdout
        assert dry.count("(server dry run)") == 10, dry
        # The plain manifest is the same objects: nothing changes.
        same = kubectl("apply", "-f",
                       os.path.join(SRC, "deploy", "amc.yaml")).stdout
        assert "configured" not in same and same.count("unchanged") == 10, \
            same
        kubectl("apply", "-f", os.path.join(SRC, "deploy", "examples",
                                            "avi-credentials.yaml"))
        got = json.loads(kubectl("get", "-n", NS, "deployment", "amc",
                                 "-o", "json").stdout)
        assert got["spec"] == deployment()["spec"]
        got = json.loads(kubectl("get", "-n", NS, "configmap", "amc-rules",
                                 "-o", "json").stdout)
        assert got["data"] == one(objs(), "ConfigMap", "amc-rules")["data"]
        got = json.loads(kubectl("get", "clusterrole", "amc",
                                 "-o", "json").stdout)
        assert got["rules"] == one(objs(), "ClusterRole", "amc")["rules"]
        # A broken manifest is refused: the server checks what it can.
        bad = json.loads(json.dumps(one(objs(), "ConfigMap", "amc-config")))
        bad["metadata"]["namespace"] = "no-such-namespace"
        p = kubectl("apply", "--dry-run=server", "-f", "-",
                    stdin=json.dumps(bad), ok=False)
        assert p.returncode != 0 and "not found" in p.stderr, p.stderr
    finally:
        kf.cleanup()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_schema_check_catches_typos,
               test_render_and_schema,
               test_generated_files_are_current,
               test_generator_detects_stale_files,
               test_rules_configmap_mount_translates_like_rules_dir,
               test_deployment_shape,
               test_settings_and_secret_reference,
               test_rbac_shape,
               test_flags_and_config_keys_known_to_amc_run,
               test_amc_run_with_the_deployment_config,
               test_apply_to_api_server])
