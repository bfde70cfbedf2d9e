"""Helpers for the simulator's own tests: start/stop avisim, a small client.

Not a test file itself (no test_ prefix). Each test module starts one
simulator per class (setUpClass) and resets it per test through /_sim/reset.
"""
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
AVISIM = os.path.join(HERE, "avisim.py")
PYTHON = os.environ.get("AMC_PYTHON") or "/usr/bin/python3"
PASSWORD = "test-secret-pw"


class SimProcess:
    """An avisim subprocess on ephemeral ports, found through its port file."""

    def __init__(self, *extra, https=True, state_file=None):
        self.dir = tempfile.mkdtemp(prefix="avisim-test-")
        self.port_file = os.path.join(self.dir, "ports.json")
        self.log = os.path.join(self.dir, "requests.log")
        self.state_file = state_file
        self.clients = []
        cmd = [PYTHON, AVISIM, "--port-file", self.port_file,
               "--password", PASSWORD, "--log", self.log,
               "--exit-with-parent"]
        if not https:
            cmd.append("--no-https")
        if state_file:
            cmd += ["--state-file", state_file]
        cmd += list(extra)
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None:
                raise RuntimeError("avisim exited with %s"
                                   % self.proc.returncode)
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("avisim did not write its port file")
            time.sleep(0.02)
        with open(self.port_file) as fh:
            self.ports = json.load(fh)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode

    def client(self, scheme="http", login=True, **kw):
        c = Client(self, scheme, **kw)
        self.clients.append(c)
        if login:
            c.login()
        return c

    def control(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["http"],
                                          timeout=10)
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        conn.close()
        return r.status, json.loads(raw) if raw else None


class Response:
    def __init__(self, r, raw):
        self.status = r.status
        self.headers = r.headers
        self.raw = raw
        self.text = raw.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.raw)

    @property
    def error(self):
        return self.json()["error"]


class Client:
    """Session client like the AVI SDKs: login cookies, X-CSRFToken,
    Referer, X-Avi-Version; one keep-alive connection."""

    def __init__(self, sim, scheme="http", version="22.1.6", tenant=None):
        self.sim = sim
        self.scheme = scheme
        self.version = version
        self.tenant = tenant
        self.cookies = {}
        self.csrf = None
        self.conn = None
        self.connects = 0

    def _conn(self):
        if self.conn is None:
            port = self.sim.ports[self.scheme]
            if self.scheme == "https":
                ctx = ssl.create_default_context(cafile=self.sim.ports["ca"])
                self.conn = http.client.HTTPSConnection(
                    "127.0.0.1", port, context=ctx, timeout=10)
            else:
                self.conn = http.client.HTTPConnection("127.0.0.1", port,
                                                       timeout=10)
            self.connects += 1
        return self.conn

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, headers=None, raw_body=None,
                csrf=True, referer=True, cookies=True, version=True):
        h = {}
        if cookies and self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv
                                    for kv in self.cookies.items())
        if csrf and self.csrf:
            h["X-CSRFToken"] = self.csrf
        if referer:
            h["Referer"] = "%s://127.0.0.1" % self.scheme
        if version and self.version:
            h["X-Avi-Version"] = self.version
        if self.tenant:
            h["X-Avi-Tenant"] = self.tenant
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        conn = self._conn()
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            raw = r.read()
        except (ConnectionError, http.client.HTTPException, OSError):
            self.close()
            raise
        for sc in r.headers.get_all("Set-Cookie") or []:
            kv = sc.split(";", 1)[0]
            k, _, v = kv.partition("=")
            self.cookies[k.strip()] = v
            if k.strip() == "csrftoken":
                self.csrf = v
        if r.headers.get("Connection", "").lower() == "close":
            self.close()
        return Response(r, raw)

    def login(self, password=PASSWORD):
        r = self.request("POST", "/login", {"username": "admin",
                                            "password": password},
                         csrf=False)
        if r.status != 200:
            raise AssertionError("login failed: %d %s" % (r.status, r.text))
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body, **kw):
        return self.request("PUT", path, body, **kw)

    def patch(self, path, body, **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def create(self, t, body, **kw):
        r = self.post("/api/" + t, body, **kw)
        if r.status != 201:
            raise AssertionError("create %s failed: %d %s" % (t, r.status,
                                                              r.text))
        return r.json()


def path_of(url):
    """Full URL (maybe with #name) -> '/api/<type>/<uuid>'."""
    return urllib.parse.urlsplit(url.split("#")[0]).path


class SimTestCase(unittest.TestCase):
    """One simulator per test class, reset before every test."""

    sim_args = ()
    https = False
    scheme = "http"   # of self.c; "https" needs https = True

    @classmethod
    def setUpClass(cls):
        cls.sim = SimProcess(*cls.sim_args, https=cls.https)

    @classmethod
    def tearDownClass(cls):
        rc = cls.sim.stop()
        if rc != 0:
            raise AssertionError("avisim exited with %s on SIGTERM" % rc)

    def setUp(self):
        status, _ = self.sim.control("POST", "/_sim/reset", {})
        self.assertEqual(status, 200)
        self.c = self.sim.client(self.scheme)

    def tearDown(self):
        for c in self.sim.clients:
            c.close()
        self.sim.clients.clear()

    def base(self):
        return "%s://127.0.0.1:%d" % (self.scheme,
                                      self.sim.ports[self.scheme])


def main():
    prog = unittest.main(module="__main__", exit=False, verbosity=2)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
