"""Shared helpers for the packaging tests (test_dockerfile.py,
test_deploy_*.py, test_docs_commands.py): paths, a tiny test runner,
rendering deploy/ with kubectl kustomize, and kubefake/avisim processes.

Not a test itself (the file name does not start with test_)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

SRC = os.path.abspath(os.environ.get(
    "AMC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("AMC_BUILD_DIR", os.path.join(SRC, "build"))
AMC = os.environ.get("AMC_BIN", os.path.join(BUILD, "amc"))
PY = os.environ.get("AMC_PYTHON", "/usr/bin/python3")
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

sys.path.insert(0, os.path.join(SRC, "tests", "fakes", "kube"))


def run_tests(tests):
    """Runs each test function (no arguments); prints one line per test and
    the closing 'N passed, N failed' line; exits 1 on any failure."""
    passed = failed = 0
    for t in tests:
        t0 = time.monotonic()
        try:
            t()
        except Exception:  # noqa: BLE001 - report every failure
            failed += 1
            print("FAIL %s" % t.__name__)
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print("ok   %s (%.1fs)" % (t.__name__, time.monotonic() - t0))
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


def sh(args, check=True, timeout=60, **kw):
    """Runs a command, returns CompletedProcess with text output."""
    p = subprocess.run(args, capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), p.returncode, p.stdout[-4000:], p.stderr[-4000:]))
    return p


def kubectl_env(home):
    """kubectl with a scratch HOME and cache: no user config leaks in."""
    env = dict(os.environ)
    env["HOME"] = home
    env.pop("KUBECONFIG", None)
    return env


def render(kdir, home=None):
    """`kubectl kustomize DIR` -> list of objects (offline)."""
    import yaml
    if home is None:
        with tempfile.TemporaryDirectory(prefix="amc-kz-") as scratch:
            return render(kdir, scratch)
    p = sh([KUBECTL, "kustomize", kdir], env=kubectl_env(home))
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def find(objs, kind, name=None):
    out = [o for o in objs if o["kind"] == kind and
           (name is None or o["metadata"]["name"] == name)]
    return out


def one(objs, kind, name=None):
    out = find(objs, kind, name)
    assert len(out) == 1, "want one %s %s, got %d" % (kind, name, len(out))
    return out[0]


class Fatal(AssertionError):
    """Raised by a wait_for condition to stop waiting at once."""


def wait_for(fn, what, timeout=20.0, interval=0.05):
    """Polls fn() until it returns a truthy value; raises after timeout.
    Exceptions from fn() are retried, except Fatal."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Fatal:
            raise
        except Exception as e:  # noqa: BLE001 - keep polling
            last = e
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last error: %r)" %
                         (what, last))


def amc_has_run():
    """True when this amc has a real `amc run` (not the placeholder)."""
    p = subprocess.run([AMC, "run", "--help"], capture_output=True,
                       text=True, timeout=20)
    return p.returncode == 0 and "--admin-port" in p.stdout + p.stderr


def run_help():
    p = subprocess.run([AMC, "run", "--help"], capture_output=True,
                       text=True, timeout=20)
    return p.stdout + p.stderr


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


def kubelet_layout(dest, cm, items):
    """Lays a ConfigMap out as the kubelet's atomic writer does:
    DEST/..<timestamp>/<paths>, DEST/..data -> that dir, and one symlink per
    top-level name -> ..data/<name>. Calling it again swaps ..data."""
    n = len([x for x in os.listdir(dest) if x.startswith("..2026")])
    ts = os.path.join(dest, "..2026_01_01_00_00_00.%d" % n)
    for key, path in items.items():
        p = os.path.join(ts, path)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(cm[key])
    tmp = os.path.join(dest, "..data_tmp")
    os.symlink(os.path.basename(ts), tmp)
    os.rename(tmp, os.path.join(dest, "..data"))  # atomic swap
    for name in {p.split("/")[0] for p in items.values()}:
        link = os.path.join(dest, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..data", name), link)
    return ts


def materialize_pod(rendered, root, password, amc_yaml_overrides=None):
    """Lays out what the Deployment's pod sees under /etc/amc/ at
    ROOT/etc-amc/ (config ConfigMap, rules ConfigMap as the kubelet mounts
    it, the Secret's password) and returns (args, amc_yaml): the container's
    args and config with /etc/amc/ remapped. $(POD_NAMESPACE) is left for
    the caller."""
    import yaml
    etc = os.path.join(root, "etc-amc") + "/"
    dep = one(rendered, "Deployment", "amc")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    cfg = one(rendered, "ConfigMap", "amc-config")["data"]
    os.makedirs(etc + "config")
    amc_yaml = yaml.safe_load(cfg["amc.yaml"])
    amc_yaml.update(amc_yaml_overrides or {})
    amc_yaml = {k: v.replace("/etc/amc/", etc) if isinstance(v, str) else v
                for k, v in amc_yaml.items()}
    with open(etc + "config/amc.yaml", "w") as f:
        f.write(yaml.safe_dump(amc_yaml))
    with open(etc + "config/settings.yaml", "w") as f:
        f.write(cfg["settings.yaml"])
    os.makedirs(etc + "avi")
    with open(etc + "avi/password", "w") as f:
        f.write(password)
    rules = one(rendered, "ConfigMap", "amc-rules")["data"]
    vol = [v for v in dep["spec"]["template"]["spec"]["volumes"]
           if v["name"] == "rules"][0]["configMap"]
    os.makedirs(etc + "rules")
    kubelet_layout(etc + "rules", rules,
                   {i["key"]: i["path"] for i in vol["items"]})
    args = [a.replace("/etc/amc/", etc) for a in c["args"]]
    return args, amc_yaml
