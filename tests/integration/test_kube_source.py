#!/usr/bin/python3
"""The Kubernetes source against the fake API server (tests/fakes/kube).

Drives `amc kube-dump`, which prints every store event as a JSON line, and
checks: paginated initial list, watch events, bookmarks as resume points,
410 in both forms -> relist (with deletes only for objects really gone),
connection drops resumed without a relist, a server restart, token rotation
(401 -> the token file is re-read), a slow list, a failing list that deletes
nothing, client-certificate and in-cluster token auth, namespace and label
filters, the Secret filter, and status write-back only when changed.

The helpers (Fake, Dump) are also used by test_kube_lease.py.
"""
import json
import os
import queue
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SRC = os.environ.get("AMC_SOURCE_DIR", os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..")))
AMC = os.environ.get("AMC_BIN", os.path.join(SRC, "build", "amc"))
PY = os.environ.get("AMC_PYTHON", "/usr/bin/python3")
KUBEFAKE = os.path.join(SRC, "tests", "fakes", "kube", "kubefake.py")


def wait_until(pred, timeout=20.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


class Fake:
    """One kubefake process (restartable on the same state dir and port)."""

    def __init__(self, tmp, *args):
        self.tmp = tmp
        self.args = list(args)
        self.state = os.path.join(tmp, "fake-state")
        self.port_file = os.path.join(tmp, "fake-port.json")
        self.proc = None
        self.start()

    def start(self):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.log = open(os.path.join(self.tmp, "fake.log"), "a")
        self.proc = subprocess.Popen(
            [PY, KUBEFAKE, "--port-file", self.port_file, "--state-dir",
             self.state] + self.args, stdout=self.log, stderr=self.log)
        wait_until(lambda: os.path.exists(self.port_file), 20, "kubefake")
        with open(self.port_file) as f:
            self.info = json.load(f)
        self.base = "https://127.0.0.1:%d" % self.info["port"]
        self.ctx = ssl.create_default_context(cafile=self.info["ca"])
        self.ctx.load_cert_chain(self.info["client_cert"],
                                 self.info["client_key"])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()

    def call(self, method, path, body=None, ctype="application/json"):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data,
                                     method=method)
        if data is not None:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, context=self.ctx,
                                        timeout=20) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def ok(self, method, path, body=None, ctype="application/json"):
        st, obj = self.call(method, path, body, ctype)
        assert 200 <= st < 300, "%s %s -> %s %s" % (method, path, st, obj)
        return obj

    def ns(self, name):
        self.ok("POST", "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": name}})

    def service(self, ns, name, labels=None):
        return self.ok("POST", "/api/v1/namespaces/%s/services" % ns, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns,
                         "labels": labels or {}},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}]}})

    def delete(self, path):
        return self.ok("DELETE", path)

    def requests(self):
        return self.ok("GET", "/_fake/requests")["requests"]

    def clear_requests(self):
        self.ok("DELETE", "/_fake/requests")

    def fault(self, **f):
        self.ok("POST", "/_fake/faults", f)

    def clear_faults(self):
        self.ok("DELETE", "/_fake/faults")

    def rv(self):
        return int(self.ok("GET", "/_fake/state")["rv"])


class Dump:
    """A running `amc kube-dump`; its JSON lines are collected."""

    def __init__(self, tmp, args, env=None, name="dump"):
        self.events = []
        self.lock = threading.Lock()
        self.err = open(os.path.join(tmp, name + ".log"), "w")
        e = dict(os.environ)
        e.update(env or {})
        e.setdefault("AMC_LOG_LEVEL", "debug")
        self.proc = subprocess.Popen([AMC, "kube-dump"] + args,
                                     stdout=subprocess.PIPE, stderr=self.err,
                                     env=e, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            ev = json.loads(line)
            with self.lock:
                self.events.append(ev)

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def find(self, **kw):
        return [e for e in self.snapshot()
                if all(e.get(k) == v for k, v in kw.items())]

    def wait(self, timeout=20.0, **kw):
        return wait_until(lambda: self.find(**kw), timeout,
                          "event %s" % kw)[-1]

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.reader.join(5)
        self.err.close()
        with open(self.err.name) as f:
            log = f.read()
        # Sanitizer reports (the ASan build) fail the test.
        assert "AddressSanitizer" not in log and "runtime error" not in log, \
            log[-3000:]
        if sig != signal.SIGKILL:
            assert rc == 0, "kube-dump exited %s: %s" % (rc, log[-2000:])
        # Every delivered object went into the store.
        bad = [e for e in self.snapshot() if "store_error" in e]
        assert not bad, bad
        return rc

    def stats(self):
        s = self.find(event="stats")
        return s[-1] if s else None


def objects(dump, kind):
    """The objects of `kind` as the event stream leaves them: name -> rv."""
    cur = {}
    for e in dump.snapshot():
        if e.get("kind") != kind:
            continue
        key = "%s/%s" % (e.get("namespace", ""), e["name"]) \
            if "name" in e else None
        if e["event"] == "upsert":
            cur[key] = e["rv"]
        elif e["event"] == "delete":
            cur.pop(key, None)
    return cur


def watch_requests(fake, plural):
    return [r for r in fake.requests() if r["method"] == "GET" and
            r["path"].endswith("/" + plural) and "watch=1" in r["query"]]


def list_requests(fake, plural):
    return [r for r in fake.requests() if r["method"] == "GET" and
            r["path"].endswith("/" + plural) and
            "watch=1" not in r["query"]]


# ------------------------------------------------------------------ tests --

def test_paginated_list_client_cert(tmp, fake):
    fake.ns("pages")
    for i in range(7):
        fake.service("pages", "svc-%d" % i)
    fake.clear_requests()
    d = Dump(tmp, ["--kubeconfig", fake.info["kubeconfig"], "--once",
                   "--resources", "services", "--page-limit", "3"],
             name="pages")
    assert d.proc.wait(20) == 0
    d.stop()
    got = objects(d, "Service")
    assert sorted(got) == ["pages/svc-%d" % i for i in range(7)], got
    lists = list_requests(fake, "services")
    assert len(lists) == 3, lists  # 3 + 3 + 1
    assert sum("continue=" in r["query"] for r in lists) == 2
    assert all(r["user"] == "admin" for r in lists)  # client certificate
    assert d.find(event="synced")
    assert all(e["changed"] for e in d.find(event="upsert"))
    assert d.find(event="store")[0]["objects"] == 7


def test_continue_expired_restarts_list(tmp, fake):
    fake.ns("ce")
    for i in range(5):
        fake.service("ce", "s%d" % i)
    fake.fault(path="/services$", query="continue=", status=410, count=1)
    fake.clear_requests()
    d = Dump(tmp, ["--kubeconfig", fake.info["kubeconfig"], "--once",
                   "--resources", "services", "--page-limit", "2"],
             name="continue")
    assert d.proc.wait(20) == 0
    d.stop()
    assert sorted(objects(d, "Service")) == ["ce/s%d" % i for i in range(5)]
    lists = list_requests(fake, "services")
    # page 1, page 2 -> 410, then the whole list again (3 pages).
    assert [r["status"] for r in lists] == [200, 410, 200, 200, 200], lists
    assert "continue=" not in lists[2]["query"]
    assert len(d.find(event="relisted")) == 1
    assert not d.find(event="delete")
    assert d.stats()["list_failures"] == 1


def start_dump(tmp, fake, *extra, name):
    d = Dump(tmp, ["--kubeconfig", fake.info["kubeconfig"],
                   "--backoff-ms", "100", "--watch-timeout", "30"] +
             list(extra), name=name)
    d.wait(event="synced")
    return d


def test_watch_events_bookmarks_drop(tmp, fake):
    fake.ns("w")
    fake.service("w", "a")
    d = start_dump(tmp, fake, "--resources", "services", "--namespaces", "w",
                   name="watch")
    try:
        assert objects(d, "Service") == {"w/a": d.find(name="a")[0]["rv"]}
        # ADDED, MODIFIED, DELETED.
        fake.service("w", "b")
        d.wait(event="upsert", name="b")
        fake.ok("PATCH", "/api/v1/namespaces/w/services/b",
                {"metadata": {"labels": {"x": "1"}}},
                "application/merge-patch+json")
        wait_until(lambda: len(d.find(event="upsert", name="b")) == 2)
        assert d.find(event="upsert", name="b")[-1]["labels"] == {"x": "1"}
        fake.delete("/api/v1/namespaces/w/services/a")
        d.wait(event="delete", name="a")
        # A bookmark moves the resume point: after a drop, the watch resumes
        # from the bookmark's RV, without a relist.
        lists_before = len(list_requests(fake, "services"))
        sent = fake.ok("GET", "/_fake/state")["bookmarks_sent"]
        bm_rv = fake.ok("POST", "/_fake/bookmark")["rv"]
        # Wait until the fake has written the bookmark to the stream (a fixed
        # sleep was too short under load); the drop below closes the stream
        # gracefully, so amc still reads the bookmark before the EOF.
        wait_until(lambda: fake.ok("GET", "/_fake/state")["bookmarks_sent"]
                   > sent, 10, "bookmark sent")
        fake.clear_requests()
        fake.ok("POST", "/_fake/drop")
        wait_until(lambda: watch_requests(fake, "services"), 10, "re-watch")
        w = watch_requests(fake, "services")[0]
        assert "resourceVersion=%s" % bm_rv in w["query"], (w, bm_rv)
        assert "allowWatchBookmarks=true" in w["query"]
        fake.service("w", "c")
        d.wait(event="upsert", name="c")
        assert len(list_requests(fake, "services")) == 0  # no relist
        assert len(d.find(event="relisted")) == 1
        assert lists_before >= 1
        assert sorted(objects(d, "Service")) == ["w/b", "w/c"]
    finally:
        d.stop()
    s = d.stats()
    assert s["bookmarks"] >= 1 and s["relists_410"] == 0, s


def gone_scenario(tmp, fake, mode):
    """Objects change while the watch is down and history is compacted: the
    re-watch gets 410 (as `mode`), the relist applies the changes and deletes
    exactly the object that is gone."""
    ns = "gone-" + mode
    fake.ns(ns)
    fake.service(ns, "keep")
    fake.service(ns, "vanish")
    fake.ok("POST", "/_fake/config", {"gone_mode": mode})
    d = start_dump(tmp, fake, "--resources", "services", "--namespaces", ns,
                   name="dump-" + mode)
    try:
        # Keep the watch down: every watch request fails for now.
        fake.fault(path="/services$", query="watch=1", status=500, count=-1)
        fake.ok("POST", "/_fake/drop")
        time.sleep(0.3)
        fake.delete("/api/v1/namespaces/%s/services/vanish" % ns)
        fake.service(ns, "new")
        fake.ok("POST", "/_fake/compact", {})
        assert not d.find(event="delete")
        fake.clear_faults()
        d.wait(event="delete", name="vanish")
        d.wait(event="upsert", name="new")
        wait_until(lambda: len(d.find(event="relisted")) == 2)
        rel = d.find(event="relisted")[-1]
        assert rel["items"] == 2 and rel["deleted"] == 1, rel
        assert sorted(objects(d, "Service")) == [ns + "/keep", ns + "/new"]
        # The unchanged object was not delivered again by the relist.
        assert len(d.find(event="upsert", name="keep")) == 1
    finally:
        d.stop()
        fake.clear_faults()
    assert d.stats()["relists_410"] == 1, d.stats()


def test_410_event_form(tmp, fake):
    gone_scenario(tmp, fake, "event")


def test_410_http_form(tmp, fake):
    gone_scenario(tmp, fake, "http")


def test_failing_list_deletes_nothing(tmp, fake):
    fake.ns("fl")
    for n in ("a", "b", "c"):
        fake.service("fl", n)
    d = start_dump(tmp, fake, "--resources", "services", "--namespaces", "fl",
                   name="failing-list")
    try:
        # Every list fails from now on; force a relist (compact + drop).
        fake.fault(path="/services$", query="limit=", status=500, count=-1)
        fake.fault(path="/services$", query="watch=1", status=410, count=1)
        fake.ok("POST", "/_fake/drop")
        wait_until(lambda: len([r for r in list_requests(fake, "services")
                                if r["status"] == 500]) >= 3, 10,
                   "failing lists")
        assert not d.find(event="delete"), d.find(event="delete")
        assert len(d.find(event="relisted")) == 1
        # Once lists work again, the relist changes nothing.
        fake.clear_faults()
        wait_until(lambda: len(d.find(event="relisted")) == 2)
        assert d.find(event="relisted")[-1]["deleted"] == 0
        assert not d.find(event="delete")
        assert sorted(objects(d, "Service")) == ["fl/a", "fl/b", "fl/c"]
    finally:
        d.stop()
        fake.clear_faults()
    assert d.stats()["list_failures"] >= 3


def test_slow_list(tmp, fake):
    fake.ns("slow")
    fake.service("slow", "s")
    fake.fault(path="/services$", query="limit=", delay=1.5, count=1)
    t0 = time.time()
    d = Dump(tmp, ["--kubeconfig", fake.info["kubeconfig"], "--once",
                   "--resources", "services", "--namespaces", "slow"],
             name="slow")
    assert d.proc.wait(30) == 0
    d.stop()
    assert time.time() - t0 >= 1.5
    assert list(objects(d, "Service")) == ["slow/s"]
    fake.clear_faults()


def test_server_restart(tmp, fake):
    fake.ns("rs")
    fake.service("rs", "before")
    d = start_dump(tmp, fake, "--resources", "services", "--namespaces", "rs",
                   name="restart")
    try:
        fake.stop()
        time.sleep(0.5)
        fake.start()
        fake.service("rs", "after")
        d.wait(event="upsert", name="after", timeout=20)
        assert not d.find(event="delete")
        assert sorted(objects(d, "Service")) == ["rs/after", "rs/before"]
    finally:
        d.stop()


def test_filters_and_secrets(tmp, fake):
    for n in ("inc", "exc"):
        fake.ns(n)
    gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
          "spec": {"selector": {"istio": "ingressgateway"}, "servers": []}}
    for ns in ("inc", "exc"):
        for name, team in (("g1", "a"), ("g2", "b")):
            o = json.loads(json.dumps(gw))
            o["metadata"] = {"name": name, "namespace": ns,
                             "labels": {"team": team}}
            fake.ok("POST", "/apis/networking.istio.io/v1/namespaces/%s/"
                    "gateways" % ns, o)
    secrets = [("tls", "kubernetes.io/tls", {"tls.crt": "QQ==",
                                             "tls.key": "QQ=="}),
               ("generic", "Opaque", {"cert": "QQ==", "key": "QQ=="}),
               ("other", "Opaque", {"password": "QQ=="})]
    for name, typ, data in secrets:
        fake.ok("POST", "/api/v1/namespaces/inc/secrets",
                {"apiVersion": "v1", "kind": "Secret", "type": typ,
                 "metadata": {"name": name, "namespace": "inc"},
                 "data": data})
    d = Dump(tmp, ["--kubeconfig", fake.info["kubeconfig"], "--once",
                   "--resources", "gateways,secrets",
                   "--exclude-namespaces", "exc",
                   "--label-selector", "team=a"], name="filters")
    assert d.proc.wait(20) == 0
    d.stop()
    assert list(objects(d, "Gateway")) == ["inc/g1"]
    assert sorted(objects(d, "Secret")) == ["inc/generic", "inc/tls"]
    assert d.find(event="synced")[0]["istio_version"] == "v1"
    gw_lists = list_requests(fake, "gateways")
    assert "labelSelector=team%3Da" in gw_lists[-1]["query"]


def test_status_write_back(tmp, fake):
    fake.ns("st")
    base = "/apis/networking.istio.io/v1/namespaces/st/"
    fake.ok("POST", base + "gateways", {
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "st"},
        "spec": {"servers": []}})
    fake.ok("POST", base + "virtualservices", {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "vs", "namespace": "st"},
        "spec": {"hosts": ["a.example"]}})
    fake.clear_requests()
    d = start_dump(tmp, fake, "--resources", "gateways,virtualservices",
                   "--namespaces", "st", "--write-status", name="status")
    try:
        d.wait(event="status", name="gw", result="written")
        d.wait(event="status", name="vs", result="written")
        # Written once; later syncs find it unchanged.
        d.wait(event="status", name="gw", result="unchanged")
        time.sleep(1.2)
        patches = [r for r in fake.requests() if r["method"] == "PATCH"]
        assert len(patches) == 2, patches
        assert all(r["path"].endswith("/status") and
                   r["contentType"] == "application/merge-patch+json"
                   for r in patches)
        gw = fake.ok("GET", base + "gateways/gw")
        conds = {c["type"]: c for c in gw["status"]["conditions"]}
        assert conds["Accepted"]["status"] == "True"
        assert conds["Programmed"]["status"] == "True"
        assert conds["Programmed"]["reason"] == "Programmed"
    finally:
        d.stop()


def test_status_error_and_events(tmp, fake):
    fake.ns("ev")
    fake.ok("POST", "/apis/networking.istio.io/v1/namespaces/ev/gateways", {
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "ev"},
        "spec": {"servers": []}})
    d = start_dump(tmp, fake, "--resources", "gateways", "--namespaces", "ev",
                   "--status-error", "AVI: pool ev-p1: 400 bad port",
                   "--events", name="events")
    try:
        d.wait(event="status", name="gw", result="written")
        wait_until(lambda: len(d.find(event="status", result="unchanged"))
                   >= 3, 10, "later syncs")
        gw = fake.ok("GET", "/apis/networking.istio.io/v1/namespaces/ev/"
                     "gateways/gw")
        conds = {c["type"]: c for c in gw["status"]["conditions"]}
        assert conds["Accepted"]["status"] == "True"
        assert conds["Programmed"]["status"] == "False"
        assert conds["Programmed"]["reason"] == "ProgrammingFailed"
        assert conds["Programmed"]["message"] == \
            "AVI: pool ev-p1: 400 bad port"
        evs = fake.ok("GET", "/api/v1/namespaces/ev/events")["items"]
        assert len(evs) == 1, evs  # once per distinct error
        e = evs[0]
        assert e["type"] == "Warning" and e["reason"] == "ProgrammingFailed"
        assert e["involvedObject"]["kind"] == "Gateway"
        assert e["involvedObject"]["name"] == "gw"
        assert e["message"] == "AVI: pool ev-p1: 400 bad port"
    finally:
        d.stop()


def test_istio_version_discovery(tmp, fake_unused):
    """A cluster that serves only v1alpha3 is read (and written) there."""
    sub = os.path.join(tmp, "old-istio")
    os.makedirs(sub)
    fake = Fake(sub, "--istio-versions", "v1alpha3")
    try:
        fake.ns("old")
        fake.ok("POST", "/apis/networking.istio.io/v1alpha3/namespaces/old/"
                "gateways", {
                    "apiVersion": "networking.istio.io/v1alpha3",
                    "kind": "Gateway",
                    "metadata": {"name": "gw", "namespace": "old"},
                    "spec": {"servers": []}})
        d = start_dump(tmp, fake, "--resources", "gateways", "--namespaces",
                       "old", "--write-status", name="v1alpha3")
        try:
            assert d.find(event="synced")[0]["istio_version"] == "v1alpha3"
            d.wait(event="status", name="gw", result="written")
            assert list(objects(d, "Gateway")) == ["old/gw"]
            paths = {r["path"] for r in fake.requests()
                     if r["user"] == "admin"}
            assert "/apis/networking.istio.io/v1alpha3/gateways" in paths
            assert "/apis/networking.istio.io/v1alpha3/namespaces/old/" \
                "gateways/gw/status" in paths
        finally:
            d.stop()
    finally:
        fake.stop()


def test_in_cluster_token_rotation(tmp, fake_unused):
    """In-cluster mode: token file + CA from the service-account dir. The
    token rotates; the next request gets 401, re-reads the file and goes
    on."""
    sa = os.path.join(tmp, "sa")
    os.makedirs(sa)
    tokens = os.path.join(tmp, "fake-tokens")
    with open(tokens, "w") as f:
        f.write("token-one\n")
    tokdir = os.path.join(tmp, "tok")
    os.makedirs(tokdir)
    fake = Fake(tokdir, "--token-file", tokens)
    try:
        shutil.copy(fake.info["ca"], os.path.join(sa, "ca.crt"))
        with open(os.path.join(sa, "token"), "w") as f:
            f.write("token-one\n")
        with open(os.path.join(sa, "namespace"), "w") as f:
            f.write("amc-system")
        fake.ns("tr")
        fake.service("tr", "one")
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
               "KUBERNETES_SERVICE_PORT": str(fake.info["port"]),
               "AMC_SERVICEACCOUNT_DIR": sa}
        d = Dump(tmp, ["--in-cluster", "--resources", "services",
                       "--namespaces", "tr", "--backoff-ms", "100",
                       "--watch-timeout", "30"], env=env, name="incluster")
        try:
            d.wait(event="synced")
            assert list(objects(d, "Service")) == ["tr/one"]
            # The watch is up with the old token before the rotation ("synced"
            # comes before the watch request: a watch sent after the rotation
            # got its 401 before the log below was cleared).
            wait_until(lambda: [r for r in watch_requests(fake, "services")
                                if r["status"] == 200], 10, "the watch")
            # Rotate: the server only accepts the new token from now on.
            with open(tokens, "w") as f:
                f.write("token-two\n")
            with open(os.path.join(sa, "token.tmp"), "w") as f:
                f.write("token-two\n")
            os.replace(os.path.join(sa, "token.tmp"),
                       os.path.join(sa, "token"))
            fake.clear_requests()
            fake.ok("POST", "/_fake/drop")
            fake.service("tr", "two")
            d.wait(event="upsert", name="two", timeout=15)
            reqs = [r for r in fake.requests() if r["path"].endswith(
                "/services") and r["user"] != "_fake"]
            assert any(r["status"] == 401 for r in reqs), reqs
            assert reqs[-1]["status"] == 200
            assert not d.find(event="delete")
        finally:
            d.stop()
        s = d.stats()
        assert s["unauthorized"] >= 1 and s["token_reads"] >= 2, s
        with open(os.path.join(tmp, "incluster.log")) as f:
            log = f.read()
        assert "token-one" not in log and "token-two" not in log
    finally:
        fake.stop()


def main():
    if not os.path.exists(KUBEFAKE):
        print("kubefake not found at %s" % KUBEFAKE)
        return 1
    tmp = tempfile.mkdtemp(prefix="amc-kube-")
    fake = Fake(tmp, "--bookmark-interval", "0")
    failed = []
    tests = [(n, f) for n, f in sorted(globals().items())
             if n.startswith("test_") and callable(f)]
    only = sys.argv[1:]
    try:
        for name, fn in tests:
            if only and name not in only:
                continue
            t0 = time.time()
            try:
                fake.ok("POST", "/_fake/reset")
                fn(tmp, fake)
                print("ok   %s (%.1fs)" % (name, time.time() - t0))
            except Exception:  # report every failure, then fail
                import traceback
                traceback.print_exc()
                print("FAIL %s" % name)
                failed.append(name)
            sys.stdout.flush()
    finally:
        fake.stop()
    if failed:
        print("kept %s for inspection" % tmp)
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
