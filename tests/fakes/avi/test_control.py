#!/usr/bin/python3
"""avisim: test controls (faults, request log, state dump, reset, seeding,
config), rate limiting, --state-file restarts, port file, SIGTERM."""
import http.client
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from avisim_testlib import (PASSWORD, SimProcess, SimTestCase,  # noqa: E402
                            main)


class ControlTest(SimTestCase):
    https = True

    def test_port_file(self):
        p = self.sim.ports
        self.assertEqual(set(p), {"http", "https", "ca", "pid"})
        self.assertEqual(p["pid"], self.sim.proc.pid)
        self.assertTrue(os.path.isfile(p["ca"]))
        with open(p["ca"]) as fh:
            self.assertIn("BEGIN CERTIFICATE", fh.read())

    def test_fault_status_body_times(self):
        st, f = self.sim.control("POST", "/_sim/faults", {
            "method": "POST", "path": "^/api/pool$", "status": 503,
            "body": "controller not ready", "times": 2})
        self.assertIsInstance(f["id"], int)
        for _ in range(2):
            r = self.c.post("/api/pool", {"name": "p"})
            self.assertEqual((r.status, r.text), (503, "controller not ready"))
        self.assertEqual(self.c.get("/api/pool").status, 200)  # GET: no match
        self.assertEqual(self.c.post("/api/pool", {"name": "p"}).status, 201)
        st, fl = self.sim.control("GET", "/_sim/faults")
        self.assertEqual(fl["faults"], [])

    def test_request_time_is_arrival_not_read(self):
        # Two pipelined requests in one write; the first is held 300 ms, so
        # the handler reads the second one 300 ms after it arrived. Its
        # "time" is when it arrived (the kernel's receive time on Linux).
        self.sim.control("POST", "/_sim/faults", {
            "method": "GET", "path": "^/api/first$", "delay_ms": 300})
        self.sim.control("DELETE", "/_sim/requests")
        s = socket.create_connection(("127.0.0.1", self.sim.ports["http"]))
        try:
            t0 = time.time()
            s.sendall(b"GET /api/first HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /api/second HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + 10
            while True:
                reqs = self.sim.control("GET", "/_sim/requests")[1][
                    "requests"]
                if len(reqs) == 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        finally:
            s.close()
        self.assertEqual([e["path"] for e in reqs],
                         ["/api/first", "/api/second"])
        self.assertGreaterEqual(reqs[0]["duration_ms"], 300)
        for e in reqs:
            self.assertGreaterEqual(e["time"], t0 - 0.001)
            self.assertLess(e["time"] - t0, 0.15)

    def test_fault_sticky_and_clear(self):
        self.sim.control("POST", "/_sim/faults", {
            "method": "*", "path": "/api/vsvip", "status": 500, "times": 0})
        for _ in range(4):
            self.assertEqual(self.c.get("/api/vsvip").status, 500)
        self.assertEqual(self.sim.control("DELETE", "/_sim/faults")[0], 200)
        self.assertEqual(self.c.get("/api/vsvip").status, 200)
        st, f = self.sim.control("POST", "/_sim/faults", {
            "path": "/api/vsvip", "status": 502, "times": 0})
        self.sim.control("DELETE", "/_sim/faults/%d" % f["id"])
        self.assertEqual(self.c.get("/api/vsvip").status, 200)

    def test_fault_delay(self):
        self.sim.control("POST", "/_sim/faults", {
            "method": "GET", "path": "^/api/pool", "delay_ms": 300})
        t0 = time.monotonic()
        r = self.c.get("/api/pool")
        self.assertEqual(r.status, 200)  # delayed, then answered normally
        self.assertGreaterEqual(time.monotonic() - t0, 0.29)

    def test_fault_reset_http_and_https(self):
        for scheme in ("http", "https"):
            c = self.sim.client(scheme)
            self.sim.control("POST", "/_sim/faults", {
                "method": "GET", "path": "^/api/pool$", "reset": True})
            with self.assertRaises((ConnectionError,
                                    http.client.RemoteDisconnected,
                                    OSError)):
                c.get("/api/pool")
            # one-shot: the next request (new connection) works
            self.assertEqual(c.get("/api/pool").status, 200)
        log = self.sim.control("GET", "/_sim/requests")[1]["requests"]
        self.assertEqual([e["status"] for e in log
                          if e["path"] == "/api/pool"], [0, 200, 0, 200])

    def test_fault_on_login(self):
        self.sim.control("POST", "/_sim/faults", {
            "method": "POST", "path": "^/login$", "status": 401,
            "body": '{"error": "Invalid credentials"}'})
        c = self.sim.client(login=False)
        r = c.request("POST", "/login", {"username": "admin",
                                         "password": PASSWORD}, csrf=False)
        self.assertEqual(r.status, 401)
        c.login()

    def test_request_log(self):
        self.sim.control("DELETE", "/_sim/requests")
        c = self.sim.client(tenant="admin")
        c.create("pool", {"name": "p"})
        c.get("/api/pool?name=p")
        st, log = self.sim.control("GET", "/_sim/requests")
        reqs = log["requests"]
        self.assertEqual([(e["method"], e["path"], e["query"], e["status"])
                          for e in reqs],
                         [("POST", "/login", "", 200),
                          ("POST", "/api/pool", "", 201),
                          ("GET", "/api/pool", "name=p", 200)])
        self.assertEqual(reqs[1]["body"], {"name": "p"})
        self.assertNotIn("body", reqs[0])   # never the login body
        for e in reqs:
            self.assertEqual(e["tenant"], "admin")
            self.assertEqual(e["avi_version"], "22.1.6")
            self.assertIsInstance(e["time"], float)
        self.assertEqual([e["seq"] for e in reqs],
                         sorted(e["seq"] for e in reqs))
        dump = json.dumps(log)
        self.assertNotIn(PASSWORD, dump)
        self.assertNotIn(c.cookies["sessionid"], dump)
        self.assertNotIn(c.csrf, dump)
        with open(self.sim.log) as fh:
            text = fh.read()
        self.assertIn("POST /api/pool 201", text)
        self.assertNotIn(PASSWORD, text)
        self.assertNotIn(c.cookies["sessionid"], text)
        self.sim.control("DELETE", "/_sim/requests")
        self.assertEqual(self.sim.control("GET", "/_sim/requests")[1],
                         {"requests": []})

    def test_request_log_redacts_secrets(self):
        self.sim.control("DELETE", "/_sim/requests")
        self.c.post("/api/sslkeyandcertificate", {
            "name": "c", "key": "-----BEGIN PRIVATE KEY-----x",
            "key_passphrase": "pp", "certificate": {"certificate": "x"}})
        st, log = self.sim.control("GET", "/_sim/requests")
        body = log["requests"][0]["body"]
        self.assertEqual(body["key"], "<redacted>")
        self.assertEqual(body["key_passphrase"], "<redacted>")
        self.assertNotIn("PRIVATE", json.dumps(log))

    def test_state_dump_and_reset(self):
        self.sim.control("POST", "/_sim/objects", {"type": "tenant",
                                                   "object": {"name": "t9"}})
        t9 = self.sim.client(tenant="t9")
        t9.create("pool", {"name": "p"})
        st, state = self.sim.control("GET", "/_sim/state")
        self.assertEqual(st, 200)
        pools = state["objects"]["pool"]
        self.assertEqual([p["name"] for p in pools], ["p"])
        self.assertTrue(pools[0]["tenant_ref"].endswith("#t9"))
        self.assertIn("t9", state["tenants"].values())
        self.assertEqual(state["tenants"]["admin"], "admin")
        self.assertIn("Default-Cloud",
                      [c["name"] for c in state["objects"]["cloud"]])
        self.assertGreaterEqual(state["sessions"], 2)
        self.sim.control("POST", "/_sim/reset", {})
        st, state = self.sim.control("GET", "/_sim/state")
        self.assertNotIn("pool", state["objects"])
        self.assertEqual(list(state["tenants"].values()), ["admin"])
        self.assertEqual(state["sessions"], 0)
        # system uuids are stable across resets
        c = self.sim.client()
        self.assertEqual(len(c.get("/api/cloud").json()["results"]), 1)

    def test_seed_foreign_object(self):
        st, o = self.sim.control("POST", "/_sim/objects", {
            "type": "pool", "tenant": "admin",
            "object": {"name": "foreign", "created_by": "someone-else",
                       "markers": [{"key": "x", "values": ["y"]}]}})
        self.assertEqual(st, 201)
        self.assertRegex(o["uuid"], "^pool-")
        r = self.c.get("/api/pool?name=foreign")
        self.assertEqual(r.json()["results"][0]["created_by"], "someone-else")
        st, o = self.sim.control("POST", "/_sim/objects", {
            "type": "pool", "object": {"name": "forced"},
            "uuid": "pool-fixed-1"})
        self.assertEqual(o["uuid"], "pool-fixed-1")
        # objects of types with no schema (e.g. network) can be seeded
        st, n = self.sim.control("POST", "/_sim/objects", {
            "type": "network", "object": {"name": "net1"}})
        self.assertEqual(st, 201)
        p = self.c.create("vsvip", {"name": "v", "vip": [{
            "ipam_network_subnet": {"network_ref": "/api/network?name=net1"},
            "auto_allocate_ip": True}]})
        self.assertTrue(p["vip"][0]["ipam_network_subnet"]["network_ref"]
                        .endswith("#net1"))
        st, err = self.sim.control("POST", "/_sim/objects", {
            "type": "pool", "object": {"name": "foreign"}})
        self.assertEqual(st, 409)
        st, err = self.sim.control("POST", "/_sim/objects", {
            "type": "pool", "tenant": "nope", "object": {"name": "z"}})
        self.assertEqual(st, 400)

    def test_config(self):
        st, cfg = self.sim.control("GET", "/_sim/config")
        self.assertEqual(cfg["rate_limit"], 0)
        self.assertEqual(cfg["unknown_fields"], "ignore")
        self.assertEqual(cfg["session_idle_timeout"], 900)
        st, err = self.sim.control("POST", "/_sim/config", {"nope": 1})
        self.assertEqual(st, 400)

    def test_rate_limit_429(self):
        self.sim.control("POST", "/_sim/config", {"rate_limit": 5,
                                                  "burst": 5})
        statuses = [self.c.get("/api/pool").status for _ in range(12)]
        self.assertEqual(statuses[:5], [200] * 5)
        self.assertIn(429, statuses)
        r = self.c.get("/api/pool")
        if r.status == 429:
            self.assertEqual(r.error, "Too many requests")
        time.sleep(0.5)  # refills ~2.5 tokens
        self.assertEqual(self.c.get("/api/pool").status, 200)
        self.sim.control("POST", "/_sim/config", {"rate_limit": 0})
        self.assertEqual([self.c.get("/api/pool").status
                          for _ in range(20)], [200] * 20)


class ConcurrencyTest(SimTestCase):

    def test_parallel_writers(self):
        errors = []
        made = []

        def worker(n):
            try:
                c = self.sim.client()
                for i in range(15):
                    o = c.create("pool", {"name": "w%d-%d" % (n, i)})
                    made.append((o["uuid"], o["_last_modified"]))
            except Exception as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=worker, args=(n,))
                   for n in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(len(made), 60)
        self.assertEqual(len({u for u, _ in made}), 60)
        self.assertEqual(len({lm for _, lm in made}), 60)
        self.assertEqual(self.c.get("/api/pool?page_size=1").json()["count"],
                         60)


class StateFileTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="avisim-state-")
        self.state = os.path.join(self.dir, "state.json")
        self.sims = []

    def tearDown(self):
        for s in self.sims:
            s.stop()
            for c in s.clients:
                c.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, *extra):
        s = SimProcess(*extra, https=False, state_file=self.state)
        self.sims.append(s)
        return s

    def test_restart_keeps_state(self):
        s = self.start("--tenant", "t1")
        c = s.client(tenant="t1")
        p = c.create("pool", {"name": "p", "created_by": "amc-x"})
        cloud = c.get("/api/cloud").json()["results"][0]
        self.assertEqual(s.stop(), 0)
        s2 = self.start()   # no --tenant: t1 comes from the state file
        c2 = s2.client(tenant="t1")
        r = c2.get("/api/pool/" + p["uuid"])
        self.assertEqual(r.status, 200)
        q = r.json()
        self.assertEqual(q["_last_modified"], p["_last_modified"])
        self.assertEqual(q["created_by"], "amc-x")
        self.assertEqual(c2.get("/api/cloud").json()["results"][0]["uuid"],
                         cloud["uuid"])
        self.assertEqual(c2.post("/api/pool", {"name": "p"}).status, 409)
        r = c2.put("/api/pool/" + p["uuid"], dict(q, description="x"))
        self.assertEqual(r.status, 200)
        self.assertGreater(int(r.json()["_last_modified"]),
                           int(q["_last_modified"]))

    def test_sigterm_exits_zero(self):
        s = self.start()
        self.assertEqual(s.stop(), 0)
        self.assertTrue(os.path.exists(self.state))


if __name__ == "__main__":
    main()
