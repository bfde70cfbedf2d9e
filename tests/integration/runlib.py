"""Helpers for the `amc run` integration tests (not a test file itself).

AmcRun starts `amc run` on an fs:// directory (dry run or against the AVI
simulator) with the admin server on 127.0.0.1:0, finds its port through
--admin-port-file, and stops it with SIGTERM (the exit status must be 0).
parse_prometheus() is a strict parser of the Prometheus text format 0.0.4,
so /metrics is checked by a parser, not by eye.
"""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

SOURCE_DIR = os.environ.get("AMC_SOURCE_DIR") or os.getcwd()
AMC_BIN = os.environ.get("AMC_BIN") or os.path.join(SOURCE_DIR, "build", "amc")
PYTHON = os.environ.get("AMC_PYTHON") or "/usr/bin/python3"
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "fakes", "avi"))


def wait_for(cond, timeout=10.0, what="condition", interval=0.01):
    """Polls cond() until it returns a true value; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(interval)


class AmcRun:
    """One `amc run` process."""

    def __init__(self, fs_dir, *extra, rules=None, dry_run=False, sim=None,
                 env=None, workdir=None, source=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="amc-run-test-")
        self.port_file = os.path.join(self.dir, "admin-port")
        self.log_path = os.path.join(self.dir, "amc.log")
        self.out_path = os.path.join(self.dir, "amc.out")
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        cmd = [AMC_BIN, "run", "--source", source or "fs://" + fs_dir,
               "--admin-addr", "127.0.0.1", "--admin-port", "0",
               "--admin-port-file", self.port_file,
               "--rules", rules or os.path.join(SOURCE_DIR, "rules"),
               "--rules-debounce-ms", "50", "--fs-debounce-ms", "10",
               "--log-level", "debug"]
        e = dict(os.environ)
        for k in ("CTRL_IPADDRESS", "CTRL_USERNAME", "CTRL_PASSWORD",
                  "CTRL_VERSION", "MCP_URL"):
            e.pop(k, None)
        if dry_run:
            cmd.append("--dry-run")
        if sim is not None:
            cmd += ["--avi-url", "http://127.0.0.1:%d" % sim.ports["http"],
                    "--avi-username", "admin"]
            e["CTRL_PASSWORD"] = sim_password()
        cmd += list(extra)
        e.update(env or {})
        self.cmd = cmd
        self.log = open(self.log_path, "ab")
        self.out = open(self.out_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.log,
                                     env=e, cwd=SOURCE_DIR)
        try:
            wait_for(lambda: self.proc.poll() is not None
                     or os.path.exists(self.port_file), 20, "admin port file")
            if self.proc.poll() is not None:
                raise AssertionError("amc run exited early (%s):\n%s"
                                     % (self.proc.returncode, self.logs()))
            with open(self.port_file) as fh:
                self.port = int(fh.read().strip())
        except BaseException:
            self.kill()
            raise

    # -- process
    def stop(self, timeout=20):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("amc run did not stop on SIGTERM")
        self.log.close()
        self.out.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.out.close()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def logs(self):
        with open(self.log_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def output(self):
        with open(self.out_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def log_events(self, event):
        """Parsed logfmt lines with event=`event`."""
        return [parse_logfmt(l) for l in self.logs().splitlines()
                if (" event=%s " % event) in l + " "]

    # -- admin HTTP
    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode("utf-8"), r.getheader(
                "Content-Type")
        finally:
            c.close()

    def readyz(self):
        status, body, _ = self.get("/readyz")
        return status, json.loads(body)

    def metrics(self):
        status, body, ctype = self.get("/metrics")
        assert status == 200, status
        assert ctype.startswith("text/plain; version=0.0.4"), ctype
        return parse_prometheus(body)

    def metric(self, name, **labels):
        """Value of one series (0 when absent)."""
        fams = self.metrics()
        for fam in fams.values():
            for s in fam["samples"]:
                if s[0] == name and all(s[1].get(k) == v
                                        for k, v in labels.items()):
                    return s[2]
        return 0.0

    def wait_idle(self, timeout=10):
        """Waits until nothing is queued or being reconciled."""
        wait_for(lambda: self.metric("amc_queue_depth") == 0
                 and self.metric("amc_queue_in_flight") == 0, timeout,
                 "an idle queue")

    def wait_ready(self, timeout=30):
        def ready():
            try:
                status, d = self.readyz()
            except (OSError, ValueError):
                return False
            return status == 200 and d.get("ready")
        try:
            wait_for(ready, timeout, "/readyz 200")
        except AssertionError:
            raise AssertionError("not ready; logs:\n" + self.logs()[-4000:])


def sim_password():
    import avisim_testlib
    return avisim_testlib.PASSWORD


def start_sim(*extra, state_file=None):
    import avisim_testlib
    return avisim_testlib.SimProcess(*extra, https=False,
                                     state_file=state_file)


def sim_control(sim, method, path, body=None):
    """The simulator's control API; returns the decoded answer (2xx)."""
    status, data = sim.control(method, path, body)
    assert 200 <= status < 300, (method, path, status, data)
    return data


def sim_clear_requests(sim):
    """Empties the simulator's request log."""
    sim_control(sim, "DELETE", "/_sim/requests")


def sim_writes(sim):
    """Write requests (POST/PUT/PATCH/DELETE on /api) in the request log."""
    reqs = sim_control(sim, "GET", "/_sim/requests")["requests"]
    return [r for r in reqs if r["method"] in ("POST", "PUT", "PATCH",
                                                "DELETE")
            and r["path"].startswith("/api/")]


def sim_objects(sim, t):
    state = sim_control(sim, "GET", "/_sim/state")
    return {o["name"]: o for o in state["objects"].get(t, [])}


def parse_logfmt(line):
    out = {}
    for m in re.finditer(r'(\w[\w.]*)=("((?:[^"\\]|\\.)*)"|\S*)', line):
        v = m.group(3) if m.group(3) is not None else m.group(2)
        out[m.group(1)] = v
    return out


def copy_tree(src, dst):
    shutil.copytree(src, dst, dirs_exist_ok=True)


# -- Prometheus text format 0.0.4 ------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"


def _parse_value(s):
    if s in ("+Inf", "Inf"):
        return float("inf")
    if s == "-Inf":
        return float("-inf")
    if s == "NaN":
        return float("nan")
    return float(s)


def _parse_labels(s, lineno):
    labels = {}
    i = 0
    while i < len(s):
        m = re.match(r"(%s)=\"" % _LABEL, s[i:])
        if not m:
            raise ValueError("line %d: bad label at %r" % (lineno, s[i:]))
        name = m.group(1)
        i += m.end()
        val = []
        while True:
            if i >= len(s):
                raise ValueError("line %d: unterminated label value" % lineno)
            c = s[i]
            if c == "\\":
                n = s[i + 1]
                if n == "n":
                    val.append("\n")
                elif n in "\\\"":
                    val.append(n)
                else:
                    raise ValueError("line %d: bad escape \\%s" % (lineno, n))
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise ValueError("line %d: newline in label value" % lineno)
            else:
                val.append(c)
                i += 1
        if name in labels:
            raise ValueError("line %d: duplicate label %s" % (lineno, name))
        labels[name] = "".join(val)
        if i < len(s):
            if s[i] != ",":
                raise ValueError("line %d: expected ',' in labels" % lineno)
            i += 1
    return labels


def parse_prometheus(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, value)]}}
    and raises ValueError on anything the format does not allow."""
    if text and not text.endswith("\n"):
        raise ValueError("the exposition must end with a newline")
    fams = {}
    current = None
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if line == "":
            continue
        if line.startswith("#"):
            m = re.match(r"# (HELP|TYPE) (%s) ?(.*)$" % _NAME, line)
            if not m:
                continue  # a plain comment
            kind, name, rest = m.groups()
            fam = fams.setdefault(name, {"type": "untyped", "help": None,
                                         "samples": []})
            if kind == "HELP":
                if fam["help"] is not None:
                    raise ValueError("line %d: second HELP for %s"
                                     % (lineno, name))
                if re.search(r"\\[^n\\]", rest):
                    raise ValueError("line %d: bad escape in HELP" % lineno)
                fam["help"] = rest.replace("\\n", "\n").replace("\\\\", "\\")
            else:
                if fam["samples"]:
                    raise ValueError("line %d: TYPE after samples" % lineno)
                if rest not in ("counter", "gauge", "histogram", "summary",
                                "untyped"):
                    raise ValueError("line %d: bad type %r" % (lineno, rest))
                fam["type"] = rest
            current = name
            continue
        m = re.match(r"(%s)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$" % _NAME, line)
        if not m:
            raise ValueError("line %d: bad sample %r" % (lineno, line))
        name, labels, value = m.group(1), m.group(2), m.group(3)
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in fams and \
                    fams[name[:-len(suffix)]]["type"] in ("histogram",
                                                         "summary"):
                base = name[:-len(suffix)]
        if base != current:
            raise ValueError("line %d: sample %s outside its family %s"
                             % (lineno, name, current))
        fam = fams[base]
        if fam["type"] == "histogram" and base == name:
            raise ValueError("line %d: bare histogram sample" % lineno)
        lab = _parse_labels(labels or "", lineno)
        v = _parse_value(value)
        if fam["type"] == "counter" and v < 0:
            raise ValueError("line %d: negative counter" % lineno)
        fam["samples"].append((name, lab, v))
    for name, fam in fams.items():
        if fam["type"] == "histogram":
            _check_histogram(name, fam)
    return fams


def _check_histogram(name, fam):
    series = {}
    for sname, lab, v in fam["samples"]:
        key = tuple(sorted((k, x) for k, x in lab.items() if k != "le"))
        s = series.setdefault(key, {"buckets": [], "sum": None,
                                    "count": None})
        if sname == name + "_bucket":
            if "le" not in lab:
                raise ValueError("%s: bucket without le" % name)
            s["buckets"].append((_parse_value(lab["le"]), v))
        elif sname == name + "_sum":
            s["sum"] = v
        elif sname == name + "_count":
            s["count"] = v
    for key, s in series.items():
        les = [b[0] for b in s["buckets"]]
        if les != sorted(les) or not les or les[-1] != float("inf"):
            raise ValueError("%s%s: buckets not increasing to +Inf"
                             % (name, key))
        counts = [b[1] for b in s["buckets"]]
        if counts != sorted(counts):
            raise ValueError("%s%s: bucket counts not cumulative"
                             % (name, key))
        if s["count"] is None or s["sum"] is None:
            raise ValueError("%s%s: missing _sum or _count" % (name, key))
        if counts[-1] != s["count"]:
            raise ValueError("%s%s: +Inf bucket != _count" % (name, key))


# A VirtualService for examples/bookinfo's gateway that the examples do not
# have (tests add it as a new file).
EXTRA_VS = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: extra, namespace: bookinfo}
spec:
  hosts: [extra.example.com]
  gateways: [istio-system/bookinfo-gateway]
  http:
  - route:
    - destination: {host: ratings, port: {number: 80}}
"""


def atomic_write(path, text):
    """Replaces the file as editors do: writes a hidden temporary file
    beside it, then renames it over the original."""
    tmp = os.path.join(os.path.dirname(path),
                       "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
    os.rename(tmp, path)


class SimTestCase(unittest.TestCase):
    """Tests that share one AVI simulator: started before the class's first
    test, stopped after its last; each test starts with it reset (no
    objects, no request log). Subclasses that define setUp call
    super().setUp() first."""

    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def setUp(self):
        sim_control(self.sim, "POST", "/_sim/reset")
