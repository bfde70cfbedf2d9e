#!/usr/bin/python3
"""The real kubectl against kubefake: create, apply, replace, get (-o yaml,
-o json, --watch), delete, and both credentials of the generated
kubeconfig. A fresh HOME and --cache-dir keep kubectl's discovery cache out
of the way."""

import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import KubeFake  # noqa: E402

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: %d, targetPort: 8080}
"""

VIRTUALSERVICE = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: %s
spec:
  hosts: [%s]
  http:
  - route:
    - destination: {host: web}
"""


class Kubectl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.kf = KubeFake("--token", "kubectl-token").start()
        cls.home = tempfile.mkdtemp(prefix="kubectl-home-")
        cls.env = dict(os.environ, HOME=cls.home,
                       KUBECONFIG=cls.kf.info["kubeconfig"])
        cls.env.pop("KUBE_FEATURE_WatchListClient", None)

    @classmethod
    def tearDownClass(cls):
        cls.kf.cleanup()
        shutil.rmtree(cls.home, ignore_errors=True)

    def kubectl(self, *args, stdin=None, ok=True):
        argv = [KUBECTL, "--cache-dir", os.path.join(self.home, "cache"),
                "--request-timeout", "10s"] + list(args)
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                           env=self.env, timeout=30)
        if ok and r.returncode != 0:
            self.fail("%s failed (%d): %s%s" % (" ".join(args), r.returncode,
                                                 r.stdout, r.stderr))
        return r

    def write(self, name, text):
        path = os.path.join(self.home, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def create_namespace(self, name):
        path = self.write("ns-%s.yaml" % name, "apiVersion: v1\nkind: "
                          "Namespace\nmetadata:\n  name: %s\n" % name)
        r = self.kubectl("create", "-f", path)
        self.assertEqual(r.stdout.strip(), "namespace/%s created" % name)

    def api(self, method, path, body=None):
        return self.kf.request(method, path, body)[:2]

    def requests(self):
        return self.kf.control("GET", "requests")["requests"]

    def test_create_get_replace_delete(self):
        svc = self.write("svc.yaml", SERVICE % 80)
        vsf = self.write("vs.yaml", VIRTUALSERVICE % ("vs1", "a.example.com"))
        r = self.kubectl("create", "-f", svc)
        self.assertEqual(r.stdout.strip(), "service/web created")
        r = self.kubectl("create", "-f", vsf)
        self.assertEqual(r.stdout.strip(),
                         "virtualservice.networking.istio.io/vs1 created")
        posts = [q for q in self.requests() if q["method"] == "POST"]
        self.assertIn("fieldValidation=Strict", posts[-1]["query"])
        r = self.kubectl("create", "-f", vsf, ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('Error from server (AlreadyExists): error when creating '
                      '"%s": virtualservices.networking.istio.io "vs1" already '
                      'exists' % vsf, r.stderr)
        # -o json / -o yaml
        out = json.loads(self.kubectl("get", "vs", "vs1", "-o", "json").stdout)
        self.assertEqual((out["kind"], out["spec"]["hosts"]),
                         ("VirtualService", ["a.example.com"]))
        out = yaml.safe_load(self.kubectl("get", "svc", "web", "-o",
                                          "yaml").stdout)
        self.assertEqual(out["spec"]["ports"][0]["port"], 80)
        lst = json.loads(self.kubectl("get", "svc", "-o", "json").stdout)
        self.assertEqual([i["metadata"]["name"] for i in lst["items"]],
                         ["web"])
        r = self.kubectl("get", "svc,vs")
        self.assertIn("service/web", r.stdout)
        self.assertIn("virtualservice.networking.istio.io/vs1", r.stdout)
        # replace
        self.write("vs.yaml", VIRTUALSERVICE % ("vs1", "b.example.com"))
        r = self.kubectl("replace", "-f", vsf)
        self.assertEqual(r.stdout.strip(),
                         "virtualservice.networking.istio.io/vs1 replaced")
        st, got = self.api("GET", "/apis/networking.istio.io/v1/namespaces/"
                           "default/virtualservices/vs1")
        self.assertEqual((got["spec"]["hosts"], got["metadata"]["generation"]),
                         (["b.example.com"], 2))
        puts = [q for q in self.requests() if q["method"] == "PUT"]
        self.assertEqual(puts[-1]["status"], 200)
        # delete, then NotFound
        r = self.kubectl("delete", "vs", "vs1")
        self.assertEqual(r.stdout.strip(),
                         'virtualservice.networking.istio.io "vs1" deleted')
        r = self.kubectl("delete", "-f", svc)
        self.assertEqual(r.stdout.strip(), 'service "web" deleted')
        r = self.kubectl("get", "vs", "vs1", ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('Error from server (NotFound): '
                      'virtualservices.networking.istio.io "vs1" not found',
                      r.stderr)
        # --validate=false skips openapi and asks the server to ignore
        r = self.kubectl("create", "--validate=false", "-f", vsf)
        self.assertEqual(r.returncode, 0)
        posts = [q for q in self.requests() if q["method"] == "POST"]
        self.assertIn("fieldValidation=Ignore", posts[-1]["query"])
        self.kubectl("delete", "-f", vsf)

    def test_apply(self):
        self.create_namespace("apply")
        svc = self.write("svc2.yaml", SERVICE % 80)
        vsf = self.write("vs2.yaml", VIRTUALSERVICE % ("vs2", "a.example.com"))
        for f, what in ((svc, "service/web"),
                        (vsf, "virtualservice.networking.istio.io/vs2")):
            r = self.kubectl("apply", "-n", "apply", "-f", f)
            self.assertEqual(r.stdout.strip(), what + " created")
            r = self.kubectl("apply", "-n", "apply", "-f", f)
            self.assertEqual(r.stdout.strip(), what + " unchanged")
        # change both: strategic merge patch (Service), merge patch (CR)
        self.write("svc2.yaml", SERVICE % 81)
        self.write("vs2.yaml", VIRTUALSERVICE % ("vs2", "c.example.com"))
        r = self.kubectl("apply", "-n", "apply", "-f", svc)
        self.assertEqual(r.stdout.strip(), "service/web configured")
        r = self.kubectl("apply", "-n", "apply", "-f", vsf)
        self.assertEqual(r.stdout.strip(),
                         "virtualservice.networking.istio.io/vs2 configured")
        st, s = self.api("GET", "/api/v1/namespaces/apply/services/web")
        self.assertEqual(s["spec"]["ports"], [
            {"name": "http", "port": 81, "targetPort": 8080}])
        self.assertIn("kubectl.kubernetes.io/last-applied-configuration",
                      s["metadata"]["annotations"])
        st, v = self.api("GET", "/apis/networking.istio.io/v1/namespaces/"
                         "apply/virtualservices/vs2")
        self.assertEqual(v["spec"]["hosts"], ["c.example.com"])
        patches = [(q["path"], q["contentType"]) for q in self.requests()
                   if q["method"] == "PATCH"]
        self.assertIn(("/api/v1/namespaces/apply/services/web",
                       "application/strategic-merge-patch+json"), patches)
        self.assertIn(("/apis/networking.istio.io/v1/namespaces/apply/"
                       "virtualservices/vs2", "application/merge-patch+json"),
                      patches)

    def test_watch_and_token_context(self):
        self.create_namespace("watch")
        proc = subprocess.Popen(
            [KUBECTL, "--cache-dir", os.path.join(self.home, "cache"),
             "get", "vs", "-n", "watch", "--watch", "--output-watch-events"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=self.env)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout],
                         daemon=True).start()

        def expect(word, name):
            deadline = time.time() + 15
            while time.time() < deadline:
                try:
                    line = lines.get(timeout=deadline - time.time())
                except queue.Empty:
                    break
                if line.split()[:2] == [word, name]:
                    return line
            self.fail("kubectl --watch printed no %s %s line" % (word, name))

        try:
            # wait until kubectl's watch is open, then make changes
            deadline = time.time() + 15
            while not any(q["query"].find("watch=true") >= 0 and
                          q["path"].endswith("/watch/virtualservices")
                          for q in self.requests()):
                self.assertLess(time.time(), deadline, "no watch request")
                time.sleep(0.1)
            vsf = self.write("vs3.yaml", VIRTUALSERVICE % ("vs3", "w.example"))
            self.kubectl("create", "-n", "watch", "-f", vsf)
            expect("ADDED", "vs3")
            self.write("vs3.yaml", VIRTUALSERVICE % ("vs3", "x.example"))
            self.kubectl("replace", "-n", "watch", "-f", vsf)
            expect("MODIFIED", "vs3")
            self.kubectl("delete", "-n", "watch", "vs", "vs3")
            expect("DELETED", "vs3")
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        # the token context of the generated kubeconfig
        r = self.kubectl("--context", "kubefake-token", "get", "ns", "watch",
                         "-o", "name")
        self.assertEqual(r.stdout.strip(), "namespace/watch")
        auths = {q["auth"] for q in self.requests()
                 if q["path"] == "/api/v1/namespaces/watch"}
        self.assertEqual(auths, {"token"})

    def test_typed_create_commands_send_protobuf(self):
        r = self.kubectl("create", "namespace", "typed")
        self.assertEqual(r.stdout.strip(), "namespace/typed created")
        self.kubectl("create", "serviceaccount", "-n", "typed", "bot")
        crt, key = self.kf.info["client_cert"], self.kf.info["client_key"]
        self.kubectl("create", "secret", "tls", "-n", "typed", "tls1",
                     "--cert", crt, "--key", key)
        st, sec = self.api("GET", "/api/v1/namespaces/typed/secrets/tls1")
        self.assertEqual(sec["type"], "kubernetes.io/tls")
        with open(crt, "rb") as f:
            self.assertEqual(base64.b64decode(sec["data"]["tls.crt"]),
                             f.read())
        ctypes = {q["contentType"] for q in self.requests()
                  if q["method"] == "POST" and "/typed/" in q["path"]}
        self.assertEqual(ctypes, {"application/vnd.kubernetes.protobuf"})
        tok = self.kubectl("create", "token", "-n", "typed", "bot").stdout
        st, _, _ = self.kf.request("GET", "/api", token=tok.strip())
        self.assertEqual(st, 200)
        users = [q["user"] for q in self.requests() if q["path"] == "/api"]
        self.assertEqual(users[-1], "system:serviceaccount:typed:bot")


RBAC = """apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: svc-reader, namespace: default}
rules:
- apiGroups: [""]
  resources: [services]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: svc-reader, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: svc-reader}
subjects:
- {kind: ServiceAccount, name: reader}
"""


class KubectlRbac(unittest.TestCase):
    def test_forbidden_as_printed_by_kubectl(self):
        home = tempfile.mkdtemp(prefix="kubectl-home-")
        manifest = os.path.join(home, "rbac.yaml")
        with open(manifest, "w") as f:
            f.write(RBAC)
        try:
            with KubeFake("--rbac", "--rbac-manifests", manifest, "--token",
                          "sa-token=system:serviceaccount:default:reader"
                          ) as kf:
                env = dict(os.environ, HOME=home,
                           KUBECONFIG=kf.info["kubeconfig"])

                def kubectl(*args):
                    return subprocess.run(
                        [KUBECTL, "--cache-dir", os.path.join(home, "cache"),
                         "--context", "kubefake-token"] +
                        list(args), capture_output=True, text=True, env=env,
                        timeout=30)

                r = kubectl("get", "svc", "-o", "name")
                self.assertEqual((r.returncode, r.stdout), (0, ""), r.stderr)
                r = kubectl("get", "pods")
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(
                    'Error from server (Forbidden): pods is forbidden: User '
                    '"system:serviceaccount:default:reader" cannot list '
                    'resource "pods" in API group "" in the namespace '
                    '"default"', r.stderr)
                denied = [d for d in kf.control("GET", "rbac-log")[
                    "decisions"] if not d["allowed"]]
                self.assertEqual([(d["verb"], d["resource"]) for d in denied],
                                 [("list", "pods")])
        finally:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
