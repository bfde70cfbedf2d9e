"""Test helpers shared by tests/integration/test_mcp_*.py and the fake's own
tests: start/stop the fake MCP server and `amc mcp-dump`, wait for events
with deadlines, and a tiny test runner. Every process started here is
stopped by `close()` (the runner calls it, also on failure)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("AMC_SOURCE_DIR",
                        os.path.abspath(os.path.join(HERE, "..", "..", "..")))
PYTHON = os.environ.get("AMC_PYTHON", "/usr/bin/python3")
FIXTURES = os.path.join(HERE, "fixtures")
KINDS = ["Gateway", "VirtualService", "DestinationRule", "ServiceEntry"]


def amc_bin():
    b = os.environ.get("AMC_BIN")
    if not b:
        b = os.path.join(os.environ.get("AMC_BUILD_DIR",
                                        os.path.join(SOURCE, "build")), "amc")
    return b


def fixture_objects():
    objs = []
    for n in sorted(os.listdir(FIXTURES)):
        if n.endswith(".yaml"):
            with open(os.path.join(FIXTURES, n)) as f:
                objs += [d for d in yaml.safe_load_all(f) if d]
    return objs


def wait_until(pred, timeout=15.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))


class McpServer:
    def __init__(self, tmp, *extra, fixtures=FIXTURES):
        self.tmp = tmp
        self.extra = list(extra)
        self.port_file = os.path.join(tmp, "mcp-port-%d.json" % id(self))
        self.log = open(os.path.join(tmp, "mcpserver.log"), "a")
        self.proc = subprocess.Popen(
            [PYTHON, os.path.join(HERE, "mcpserver.py"), "--fixtures",
             fixtures, "--port-file", self.port_file] + self.extra,
            stdout=self.log, stderr=self.log)
        wait_until(lambda: os.path.exists(self.port_file) or
                   self.proc.poll() is not None, 20, "the MCP server port file")
        if self.proc.poll() is not None:
            raise RuntimeError("mcpserver exited; see " + self.log.name)
        with open(self.port_file) as f:
            ports = json.load(f)
        self.port = ports["port"]
        self.control_port = ports["control_port"]

    def control(self, path, body=None):
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.control_port, path), data=data,
            method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def state(self):
        with urllib.request.urlopen(
                "http://127.0.0.1:%d/state" % self.control_port,
                timeout=10) as r:
            return json.load(r)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Dump:
    """`amc mcp-dump` streaming JSON lines; events are collected in order."""

    def __init__(self, tmp, url, *args):
        self.events = []
        self.lock = threading.Lock()
        self.stderr = open(os.path.join(tmp, "mcp-dump.stderr"), "a+")
        self.proc = subprocess.Popen(
            [amc_bin(), "mcp-dump", "--mcp-url", url, "--backoff-ms", "100"]
            + list(args), stdout=subprocess.PIPE, stderr=self.stderr)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            ev = json.loads(line)
            with self.lock:
                self.events.append(ev)

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def mark(self):
        return len(self.snapshot())

    def since(self, mark):
        return self.snapshot()[mark:]

    def wait_event(self, pred, mark=0, timeout=15.0, what="event"):
        def find():
            for e in self.since(mark):
                if pred(e):
                    return e
            if self.proc.poll() is not None:
                raise AssertionError("amc mcp-dump exited with %s while "
                                     "waiting for %s" % (self.proc.returncode,
                                                         what))
            return None
        return wait_until(find, timeout, what)

    def wait_synced_all(self, mark=0, timeout=15.0):
        for k in KINDS:
            self.wait_event(lambda e, k=k: e["event"] == "synced" and
                            e["kind"] == k, mark, timeout, "synced " + k)

    def stderr_text(self):
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        self.proc.stdout.close()
        rc = self.proc.returncode
        text = self.stderr_text()
        self.stderr.close()
        # a clean shutdown on SIGTERM exits 0; sanitizer reports fail the test
        if "AddressSanitizer" in text or "runtime error:" in text or \
                "LeakSanitizer" in text:
            raise AssertionError("sanitizer report from amc:\n" + text[-4000:])
        if rc not in (0, 1):
            raise AssertionError("amc mcp-dump exited with %s" % rc)
        return rc


def state_of(events):
    """Replays dump events into {(kind, ns, name): object}."""
    st = {}
    for e in events:
        if e["event"] == "upsert":
            st[(e["kind"], e["namespace"], e["name"])] = e["object"]
        elif e["event"] == "delete":
            st.pop((e["kind"], e["namespace"], e["name"]), None)
    return st


def run(tests):
    """Runs test functions, each with a fresh temp dir and a list to which it
    appends objects to close. Prints TAP-like lines; exits 1 on failure."""
    failed = 0
    only = os.environ.get("MCP_TEST_ONLY")
    for t in tests:
        if only and only not in t.__name__:
            continue
        tmp = tempfile.mkdtemp(prefix="amc-mcp-test-")
        cleanup = []
        t0 = time.monotonic()
        try:
            t(tmp, cleanup)
            print("ok   %s (%.1fs)" % (t.__name__, time.monotonic() - t0))
        except Exception:
            failed += 1
            print("FAIL %s" % t.__name__)
            traceback.print_exc()
            for name in ("mcpserver.log", "mcp-dump.stderr"):
                p = os.path.join(tmp, name)
                if os.path.exists(p):
                    with open(p) as f:
                        sys.stdout.write("--- %s (tail)\n%s\n" %
                                         (name, f.read()[-3000:]))
        finally:
            for c in reversed(cleanup):
                try:
                    c.close()
                except Exception:
                    failed += 1
                    print("FAIL %s (cleanup)" % t.__name__)
                    traceback.print_exc()
            shutil.rmtree(tmp, ignore_errors=True)
        sys.stdout.flush()
    sys.exit(1 if failed else 0)
