"""`amc sync` never shows the AVI password, session cookies, the CSRF token
or private keys: not in debug logs, errors, dry-run output or summaries,
also when sessions expire, CSRF checks fail and logins fail."""
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_avi_sync import (AMC, CLUSTER, EXAMPLES, PASSWORD,  # noqa: E402
                           SimProcess)

# The session cookies and the CSRF token avisim hands out are 32 hex digits.
TOKEN_RE = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


def example_key_lines():
    """Lines of the private key in examples/ (decoded from the Secret)."""
    path = os.path.join(EXAMPLES, "bookinfo", "20-gateway.yaml")
    with open(path) as fh:
        m = re.search(r"tls\.key:\s*(\S+)", fh.read())
    pem = base64.b64decode(m.group(1)).decode()
    return [l for l in pem.splitlines() if l and not l.startswith("-----")]


class Secrets(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="amc-avi-secrets-")
        cls.pwfile = os.path.join(cls.tmp, "pw")
        with open(cls.pwfile, "w") as fh:
            fh.write(PASSWORD + "\n")
        cls.sim = SimProcess()
        cls.key_lines = example_key_lines()
        assert len(cls.key_lines) > 10

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        st, _ = self.sim.control("POST", "/_sim/reset", {})
        self.assertEqual(st, 200)

    def run_amc(self, *args, password_file=None):
        cmd = [AMC, "sync", "--log-level", "debug", "--avi",
               "https://127.0.0.1:%d" % self.sim.ports["https"],
               "--ca", self.sim.ports["ca"], "--username", "admin",
               "--password-file", password_file or self.pwfile,
               "--cluster", CLUSTER, "--backoff", "20"] + list(args) + \
            [EXAMPLES]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout + p.stderr

    def assert_clean(self, out, password=PASSWORD):
        self.assertIn("avi.call", out)  # debug logging was on
        self.assertNotIn(password, out)
        self.assertIsNone(TOKEN_RE.search(out), TOKEN_RE.findall(out)[:3])
        for word in ("csrftoken=", "sessionid=", "X-CSRFToken", "Cookie:"):
            self.assertNotIn(word, out)
        self.assertNotIn("PRIVATE KEY", out)
        for line in self.key_lines:
            self.assertNotIn(line, out)

    def test_sync_with_relogins_and_retries(self):
        self.sim.control("POST", "/_sim/faults", {
            "method": "POST", "path": "^/api/pool$", "status": 401,
            "body": "CSRF token missing or incorrect.", "times": 1})
        self.sim.control("POST", "/_sim/faults", {
            "method": "POST", "path": "^/api/sslkeyandcertificate$",
            "status": 503, "times": 1})
        self.sim.control("POST", "/_sim/faults", {
            "method": "POST", "path": "^/api/virtualservice$",
            "status": 419, "times": 1})
        rc, out = self.run_amc()
        self.assertEqual(rc, 0, out)
        self.assertIn("avi.session_lost", out)
        self.assert_clean(out)
        # A second run: only reads, and the certificates come back as
        # "<sensitive>" from the controller, which must not cause a PUT.
        rc, out = self.run_amc()
        self.assertEqual(rc, 0, out)
        self.assertIn("PUT 0", out)
        self.assert_clean(out)

    def test_failed_login(self):
        bad = os.path.join(self.tmp, "bad")
        wrong = "Wr0ng-s3cret-pw"
        with open(bad, "w") as fh:
            fh.write(wrong)
        rc, out = self.run_amc(password_file=bad)
        self.assertEqual(rc, 1)
        self.assertIn("login failed", out)
        self.assertNotIn(wrong, out)
        self.assertNotIn(PASSWORD, out)

    def test_errors_from_the_controller(self):
        # A permanent error on a certificate write: the error is reported
        # with the controller's message, without the key.
        self.sim.control("POST", "/_sim/faults", {
            "method": "POST", "path": "^/api/sslkeyandcertificate$",
            "status": 500, "body": '{"error":"Import error: bad key"}',
            "times": 0})
        rc, out = self.run_amc()
        self.assertEqual(rc, 1)
        self.assertIn("Import error: bad key", out)
        self.assert_clean(out)

    def test_dry_run(self):
        rc, out = self.run_amc("--dry-run")
        self.assertEqual(rc, 0, out)
        self.assertIn('"key":"<sensitive>"', out)
        self.assert_clean(out)


if __name__ == "__main__":
    prog = unittest.main(module="__main__", exit=False, verbosity=2)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
