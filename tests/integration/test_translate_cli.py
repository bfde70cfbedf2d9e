"""amc translate / amc rules test through the real binary.

Bad input must give a clear message naming the file (and line/column where
there is one), a non-zero exit status and no crash; good input must give
the same bytes every time. Runs against $AMC_BIN (plain and ASan builds).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

AMC = os.environ.get("AMC_BIN", "build/amc")
SRC = os.environ.get("AMC_SOURCE_DIR", os.getcwd())
RULES = os.path.join(SRC, "rules")

GATEWAY = """\
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports:
  - {name: http, port: 80, targetPort: 8080}
"""

VIRTUALSERVICE = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: shop, namespace: shop}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - route:
    - destination: {host: web}
"""

ENDPOINTS = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
- {name: http, port: 8080, protocol: TCP}
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: true}
"""


def run(*args, stdin=None, cwd=None):
    p = subprocess.run([AMC, *args], input=stdin, capture_output=True,
                       timeout=60, cwd=cwd)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class TranslateCli(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="amc-translate-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def translate(self, *args):
        return run("translate", "--rules", RULES, *args)

    def assert_input_error(self, rc, err, *fragments):
        self.assertEqual(rc, 2, err)
        self.assertNotIn("AddressSanitizer", err)
        for frag in fragments:
            self.assertIn(frag, err)

    # -- bad input --------------------------------------------------------

    def test_malformed_yaml(self):
        p = self.write("bad.yaml", GATEWAY + "---\nkind: Service\n  x: [\n")
        rc, out, err = self.translate(p)
        self.assert_input_error(rc, err, p + ":11:4: ")
        self.assertEqual(out, "")

    def test_malformed_json(self):
        p = self.write("bad.json", '{"apiVersion": "v1",\n "kind": }')
        rc, out, err = self.translate(p)
        self.assert_input_error(
            rc, err, p + ": line 2, column 10: unexpected character '}'")

    def test_missing_name(self):
        p = self.write("noname.yaml",
                       GATEWAY + "---\napiVersion: v1\nkind: Service\n"
                       "metadata: {namespace: x}\n")
        rc, _, err = self.translate(p)
        self.assert_input_error(
            rc, err, p + ":10:1: document 2: Service has no metadata.name")

    def test_not_an_object(self):
        p = self.write("list.yaml", "- a\n- b\n")
        rc, _, err = self.translate(p)
        self.assert_input_error(rc, err, "expected a Kubernetes object")

    def test_nonexistent_path(self):
        rc, _, err = self.translate(os.path.join(self.tmp, "nope.yaml"))
        self.assert_input_error(rc, err, "nope.yaml: No such file or directory")

    def test_duplicate_object(self):
        a = self.write("in/a.yaml", SERVICE)
        self.write("in/b.yaml", SERVICE)
        rc, _, err = self.translate(os.path.join(self.tmp, "in"))
        self.assert_input_error(rc, err, "duplicate Service shop/web",
                                "first defined at " + a + ":1")

    def test_usage(self):
        rc, _, err = run("translate")
        self.assertEqual(rc, 2)
        self.assertIn("no PATH given", err)
        rc, _, err = run("translate", "--frobnicate", "x")
        self.assertEqual(rc, 2)
        self.assertIn("unknown option '--frobnicate'", err)
        rc, out, _ = run("translate", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("usage: amc translate", out)

    def test_bad_settings(self):
        s = self.write("settings.yaml", "cluster: [a]\n")
        p = self.write("in.yaml", GATEWAY)
        rc, _, err = self.translate("--settings", s, p)
        self.assert_input_error(rc, err,
                                s + ": cluster must be a non-empty string")

    # -- rule errors ------------------------------------------------------

    def test_rule_error_exit_1(self):
        rules = os.path.join(self.tmp, "rules")
        self.write("rules/gateway.lua",
                   "return { api_version = 1, kind = 'Gateway',\n"
                   "  translate = function(gw, rt)\n"
                   "    return gw.spec.nope.x\n"
                   "  end }\n")
        p = self.write("in.yaml", GATEWAY)
        rc, out, err = run("translate", "--rules", rules, p)
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, "")
        self.assertIn("rules/gateway.lua:3: attempt to index a nil value "
                      "(field 'nope') while translating "
                      "Gateway/istio-system/gw", err)
        self.write("rules/gateway.lua", "return {\n")
        rc, _, err = run("translate", "--rules", rules, p)
        self.assertEqual(rc, 1)
        self.assertIn("rules/gateway.lua:2:", err)

    # -- good input -------------------------------------------------------

    def test_deterministic_and_unknown_kinds_ignored(self):
        d = os.path.join(self.tmp, "mesh")
        self.write("mesh/gw.yaml", GATEWAY)
        self.write("mesh/shop.yaml", "---\n".join(
            [SERVICE, VIRTUALSERVICE, ENDPOINTS]))
        rc1, out1, err1 = self.translate(d)
        self.assertEqual(rc1, 0, err1)
        rc2, out2, _ = self.translate(d)
        self.assertEqual(rc2, 0)
        self.assertEqual(out1, out2)
        doc = json.loads(out1)
        self.assertIn("diagnostics", doc)
        self.assertIn("virtualservice", doc)
        for objs in doc.values():
            names = [o.get("name") for o in objs if "name" in o]
            self.assertEqual(names, sorted(names))
        self.assertTrue(all("amc--default--" in o["name"]
                            for o in doc["virtualservice"]))
        self.assertTrue(out1.endswith("}\n"))
        # An unknown kind is loaded and ignored by the rules.
        self.write("mesh/other.yaml",
                   "apiVersion: example.com/v1\nkind: Frobnicator\n"
                   "metadata: {name: f, namespace: shop}\nspec: {x: 1}\n")
        rc3, out3, err3 = self.translate(d)
        self.assertEqual(rc3, 0, err3)
        self.assertEqual(out3, out1)
        # The same objects as JSON, from stdin, in another order: same bytes.
        rc4, out4, err4 = run("translate", "--rules", RULES, "-", stdin=(
            "---\n".join([ENDPOINTS, VIRTUALSERVICE, SERVICE, GATEWAY])
        ).encode())
        self.assertEqual(rc4, 0, err4)
        self.assertEqual(out4, out1)
        # Cluster name from the flag.
        rc5, out5, _ = self.translate("--cluster", "east", d)
        self.assertEqual(rc5, 0)
        self.assertIn("amc--east--", out5)
        self.assertNotIn("amc--default--", out5)

    def test_secrets_redacted(self):
        case = os.path.join(SRC, "tests/golden/cases/https-redirect")
        if not os.path.isdir(case):
            self.skipTest("no https golden case")
        inp = os.path.join(case, "input.yaml")
        rc, out, err = self.translate(inp)
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        certs = doc.get("sslkeyandcertificate", [])
        self.assertTrue(certs)
        self.assertTrue(all(c["key"] == "<sensitive>" for c in certs))
        self.assertNotIn("PRIVATE KEY", out)
        rc, out, _ = self.translate("--show-secrets", inp)
        self.assertEqual(rc, 0)
        self.assertIn("PRIVATE KEY", out)

    # -- amc rules test ---------------------------------------------------

    def test_rules_test_update_pass_fail(self):
        cases = os.path.join(self.tmp, "cases")
        self.write("cases/one/input.yaml", "---\n".join(
            [GATEWAY, SERVICE, VIRTUALSERVICE, ENDPOINTS]))
        self.write("cases/two/input/gw.yaml", GATEWAY)
        self.write("cases/two/settings.json", '{"cluster": "west"}')
        rc, out, err = run("rules", "test", "--rules", RULES, cases)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("run with --update to create it", out)
        self.assertIn("0 passed, 2 failed", out)
        rc, out, _ = run("rules", "test", "--rules", RULES, "--update", cases)
        self.assertEqual(rc, 0, out)
        self.assertIn("UPDATED one", out)
        rc, out, _ = run("rules", "test", "--rules", RULES, cases)
        self.assertEqual(rc, 0, out)
        self.assertIn("PASS one\nPASS two\n2 passed, 0 failed", out)
        with open(os.path.join(cases, "one/expected.json")) as f:
            self.assertIn("amc--golden--", f.read())
        with open(os.path.join(cases, "two/expected.json")) as f:
            expected = f.read()
        self.assertIn("amc--west--", expected)
        with open(os.path.join(cases, "two/expected.json"), "w") as f:
            f.write(expected.replace('"amc-west"', '"amc-other"', 1))
        rc, out, _ = run("rules", "test", "--rules", RULES, cases)
        self.assertEqual(rc, 1)
        self.assertIn("FAIL two", out)
        self.assertIn("    -", out)
        self.assertIn("    +", out)
        self.assertIn('"amc-west"', out)
        self.assertIn("1 passed, 1 failed", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
