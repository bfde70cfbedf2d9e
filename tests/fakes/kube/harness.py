"""Start, stop and talk to kubefake from Python tests.

    from harness import KubeFake
    with KubeFake("--token", "t0") as kf:
        status, body = kf.request("GET", "/api/v1/namespaces")
        with kf.watch("/api/v1/namespaces?watch=1") as w:
            ev = w.next_event(timeout=5)

Every request opens its own HTTPS connection (CA-verified), authenticated
with the admin client certificate unless `token=` or `cert=` says otherwise.
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

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "kubefake.py")
PYTHON = os.environ.get("AMC_PYTHON") or "/usr/bin/python3"


class KubeFake:
    def __init__(self, *args, state_dir=None):
        self.args = list(args)
        self.tmp = tempfile.mkdtemp(prefix="kubefake-test-")
        self.state_dir = state_dir or os.path.join(self.tmp, "state")
        self.port_file = os.path.join(self.tmp, "port.json")
        self.proc = None
        self.info = None

    # ---- lifecycle

    def start(self, timeout=20):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.log = open(os.path.join(self.tmp, "server.log"), "ab")
        self.proc = subprocess.Popen(
            [PYTHON, SERVER, "--port-file", self.port_file, "--state-dir",
             self.state_dir] + self.args,
            stdout=self.log, stderr=self.log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    self.info = json.load(f)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("kubefake exited: " + self.server_log())
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("kubefake did not start: " + self.server_log())

    def server_log(self):
        try:
            with open(os.path.join(self.tmp, "server.log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def restart(self, sig=signal.SIGKILL):
        self.stop(sig)
        return self.start()

    def cleanup(self):
        self.stop()
        log = self.server_log()
        if "Traceback" in log:   # a bug in the fake: show it
            sys.stderr.write("kubefake server log:\n" + log)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    # ---- HTTP

    @property
    def port(self):
        return self.info["port"]

    def context(self, cert="admin"):
        ctx = ssl.create_default_context(cafile=self.info["ca"])
        if "--server-names" in self.args:
            # The certificate does not name 127.0.0.1 then; the chain is
            # still verified.
            ctx.check_hostname = False
        if cert == "admin":
            ctx.load_cert_chain(self.info["client_cert"],
                                self.info["client_key"])
        elif cert:
            ctx.load_cert_chain(cert[0], cert[1])
        return ctx

    def connect(self, token=None, cert="admin", timeout=10):
        if token is not None and cert == "admin":
            cert = None
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context(cert),
            timeout=timeout)

    def request(self, method, path, body=None, ctype="application/json",
                token=None, cert="admin", headers=None, raw=False):
        """Returns (status, decoded JSON body or text, headers)."""
        conn = self.connect(token, cert)
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else \
                json.dumps(body)
            hdrs["Content-Type"] = ctype
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read().decode()
            status, rh = resp.status, dict(resp.getheaders())
        finally:
            conn.close()
        if raw:
            return status, text, rh
        try:
            return status, json.loads(text) if text else None, rh
        except ValueError:
            return status, text, rh

    def control(self, method, path, body=None):
        status, out, _ = self.request(method, "/_fake/" + path, body,
                                      cert=None, token=None)
        if status != 200:
            raise RuntimeError("control %s %s: %s %s" % (method, path,
                                                          status, out))
        return out

    def watch(self, path, token=None, cert="admin"):
        return Watch(self, path, token, cert)


class Watch:
    """A streaming watch; next_event() returns one decoded event or None
    at a clean end of stream (the server's final chunk)."""

    def __init__(self, kf, path, token, cert):
        self.conn = kf.connect(token, cert, timeout=30)
        hdrs = {"Authorization": "Bearer " + token} if token else {}
        self.conn.request("GET", path, headers=hdrs)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.buf = b""
        self.done = False
        if self.status != 200:
            self.body = json.loads(self.resp.read() or b"null")

    def next_event(self, timeout=10):
        """One event; None at the clean end (final chunk); ConnectionError
        if the stream breaks without it (e.g. after /_fake/drop)."""
        self.conn.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            if self.done:
                return None
            try:
                self._read_chunk()
            except TimeoutError:
                raise
            except (OSError, ValueError) as e:
                if isinstance(e, ConnectionError):
                    raise
                raise ConnectionError("watch stream broken: %r" % e)
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def _read_chunk(self):
        fp = self.resp.fp
        size_line = fp.readline()
        if not size_line:
            raise ConnectionError("watch stream broken (no final chunk)")
        n = int(size_line.split(b";")[0].strip(), 16)
        if n == 0:
            fp.readline()
            self.done = True
            return
        data = fp.read(n)
        if len(data) < n:
            raise ConnectionError("watch stream broken mid-chunk")
        fp.readline()
        self.buf += data

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_main(testcase_module_name):
    import unittest
    sys.exit(0 if unittest.main(module=testcase_module_name, exit=False,
                                verbosity=2).result.wasSuccessful() else 1)
