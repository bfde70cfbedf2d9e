#!/usr/bin/python3
"""avisim: login, cookies, CSRF/Referer, session expiry, auth modes, TLS,
keep-alive."""
import base64
import http.client
import json
import os
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from avisim_testlib import PASSWORD, SimTestCase, main  # noqa: E402

CSRF_TEXT = "CSRF token missing or incorrect."


def set_cookies(r):
    out = {}
    for sc in r.headers.get_all("Set-Cookie") or []:
        name = sc.split("=", 1)[0]
        out[name] = sc
    return out


class SessionTest(SimTestCase):
    https = True

    def test_login_json_body_and_cookies(self):
        c = self.sim.client(login=False)
        r = c.login()
        self.assertEqual(r.status, 200)
        body = r.json()
        self.assertEqual(body["version"]["Version"], "22.1.6")
        self.assertEqual(body["user"]["uuid"], "user-1")
        self.assertEqual(body["user"]["username"], "admin")
        self.assertIn("admin", [t["name"] for t in body["tenants"]])
        pc = body["system_config"]["portal_configuration"]
        self.assertIs(pc["allow_basic_authentication"], False)
        self.assertIs(pc["use_uuid_from_input"], False)
        self.assertEqual(pc["api_force_timeout"], 24)
        self.assertEqual(body["controller"]["api_idle_timeout"], 15)
        self.assertEqual(body["session_cookie_name"], "avi-sessionid")
        sc = set_cookies(r)
        self.assertEqual(set(sc), {"csrftoken", "sessionid", "avi-sessionid"})
        self.assertIn("Max-Age=31449600", sc["csrftoken"])
        self.assertIn("Max-Age=86400", sc["sessionid"])
        self.assertIn("HttpOnly", sc["avi-sessionid"])
        self.assertIn("Path=/", sc["sessionid"])
        self.assertEqual(len(c.cookies["csrftoken"]), 32)
        self.assertEqual(len(c.cookies["sessionid"]), 32)
        self.assertEqual(c.cookies["sessionid"], c.cookies["avi-sessionid"])
        self.assertEqual(c.get("/api/pool").status, 200)

    def test_login_form_encoded(self):
        c = self.sim.client(login=False)
        r = c.request("POST", "/login",
                      raw_body=("username=admin&password=%s" % PASSWORD)
                      .encode(),
                      headers={"Content-Type":
                               "application/x-www-form-urlencoded"},
                      csrf=False)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["user"]["username"], "admin")
        self.assertEqual(c.get("/api/pool").status, 200)

    def test_bad_credentials(self):
        c = self.sim.client(login=False)
        r = c.request("POST", "/login", {"username": "admin",
                                         "password": "wrong"}, csrf=False)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.error, "Invalid credentials")
        self.assertEqual(set_cookies(r), {})

    def test_no_session_401(self):
        c = self.sim.client(login=False)
        r = c.get("/api/pool")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.error,
                         "Authentication credentials were not provided.")
        c.cookies = {"sessionid": "0" * 32, "avi-sessionid": "0" * 32}
        self.assertEqual(c.get("/api/pool").status, 401)

    def test_either_session_cookie_name(self):
        sid = self.c.cookies["sessionid"]
        for name in ("sessionid", "avi-sessionid"):
            r = self.c.get("/api/pool", cookies=False,
                           headers={"Cookie": "%s=%s" % (name, sid)})
            self.assertEqual(r.status, 200, name)

    def test_session_cookies_resent_on_every_response(self):
        for path in ("/api/pool", "/api/cloud?name=Default-Cloud"):
            sc = set_cookies(self.c.get(path))
            self.assertIn("sessionid", sc)
            self.assertIn("avi-sessionid", sc)

    def test_csrf_required_on_writes(self):
        body = {"name": "p1"}
        for kw in ({"csrf": False}, {"referer": False},
                   {"headers": {"X-CSRFToken": "f" * 32}}):
            r = self.c.post("/api/pool", body, **kw)
            self.assertEqual(r.status, 401, kw)
            self.assertEqual(r.text, CSRF_TEXT)
            self.assertEqual(r.headers["Content-Type"], "application/json")
        pool = self.c.create("pool", body)
        # PUT, PATCH and DELETE are checked too; GET is not.
        path = "/api/pool/" + pool["uuid"]
        self.assertEqual(self.c.put(path, body, csrf=False).status, 401)
        self.assertEqual(self.c.patch(path, {"replace": {}},
                                      csrf=False).status, 401)
        self.assertEqual(self.c.delete(path, csrf=False).text, CSRF_TEXT)
        self.assertEqual(self.c.get(path, csrf=False, referer=False).status,
                         200)
        self.assertEqual(self.c.delete(path).status, 204)

    def test_idle_timeout(self):
        st, cfg = self.sim.control("POST", "/_sim/config",
                                   {"session_idle_timeout": 0.3})
        self.assertEqual(st, 200)
        self.assertEqual(cfg["session_idle_timeout"], 0.3)
        self.assertEqual(self.c.get("/api/pool").status, 200)
        time.sleep(0.45)
        self.assertEqual(self.c.get("/api/pool").status, 401)
        self.c.login()
        self.assertEqual(self.c.get("/api/pool").status, 200)

    def test_expire_sessions(self):
        self.assertEqual(self.sim.control("POST", "/_sim/expire-sessions",
                                          {})[0], 200)
        self.assertEqual(self.c.get("/api/pool").status, 401)

    def test_logout(self):
        r = self.c.post("/logout", {}, csrf=False)
        self.assertEqual((r.status, r.text), (401, CSRF_TEXT))
        self.assertEqual(self.c.post("/logout", {}).status, 200)
        self.assertEqual(self.c.get("/api/pool").status, 401)

    def test_injected_419_then_ok(self):
        st, f = self.sim.control("POST", "/_sim/faults",
                                 {"method": "GET", "path": "^/api/pool$",
                                  "status": 419, "body": "session expired"})
        self.assertEqual(st, 200)
        r = self.c.get("/api/pool")
        self.assertEqual((r.status, r.text), (419, "session expired"))
        self.assertEqual(self.c.get("/api/pool").status, 200)

    def test_basic_auth(self):
        cred = base64.b64encode(("admin:" + PASSWORD).encode()).decode()
        hdr = {"Authorization": "Basic " + cred}
        c = self.sim.client(login=False)
        self.assertEqual(c.get("/api/pool", headers=hdr).status, 401)
        self.sim.control("POST", "/_sim/config", {"allow_basic_auth": True})
        self.assertEqual(c.get("/api/pool", headers=hdr).status, 200)
        r = c.post("/api/pool", {"name": "basic"}, headers=hdr,
                   referer=False)
        self.assertEqual(r.status, 201)
        bad = base64.b64encode(b"admin:nope").decode()
        self.assertEqual(c.get("/api/pool", headers={
            "Authorization": "Basic " + bad}).status, 401)

    def test_token_login(self):
        r = self.c.post("/api/user-token", {"hours": "2"})
        self.assertEqual(r.status, 200)
        tok = r.json()["token"]
        c = self.sim.client(login=False)
        r = c.request("POST", "/login", {"username": "admin", "token": tok},
                      csrf=False)
        self.assertEqual(r.status, 200)
        self.assertEqual(c.get("/api/pool").status, 200)
        r = c.request("POST", "/login", {"username": "admin",
                                         "token": "nope"}, csrf=False)
        self.assertEqual(r.status, 401)

    def test_initial_data_and_version_header(self):
        c = self.sim.client(login=False)
        r = c.get("/api/initial-data", version=False)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["version"]["Version"], "22.1.6")
        self.assertEqual(r.headers["AVI_API_VERSION"], "22.1.6")
        r = self.c.get("/api/pool", headers={"X-Avi-Version": "20.1.1"})
        self.assertEqual(r.headers["AVI_API_VERSION"], "20.1.1")

    def test_singletons(self):
        r = self.c.get("/api/systemconfiguration")
        self.assertEqual(r.status, 200)
        self.assertIs(r.json()["portal_configuration"][
            "allow_basic_authentication"], False)
        r = self.c.get("/api/controllerproperties")
        self.assertEqual(r.json()["api_idle_timeout"], 15)
        self.assertEqual(r.json()["portal_request_rate_limit"], 0)

    def test_https_verified_with_generated_ca(self):
        c = self.sim.client("https")
        self.assertEqual(c.get("/api/cloud").status, 200)
        r = c.post("/api/pool", {"name": "tls-pool"})
        self.assertEqual(r.status, 201)
        base = "https://127.0.0.1:%d" % self.sim.ports["https"]
        self.assertTrue(r.json()["url"].startswith(base + "/api/pool/pool-"))
        self.assertTrue(r.headers["Location"].startswith(base))
        # Cookies are Secure over HTTPS.
        r = c.get("/api/pool")
        for sc in r.headers.get_all("Set-Cookie"):
            self.assertIn("Secure", sc)
        c.close()
        # Without the CA the certificate does not verify.
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.sim.ports["https"],
            context=ssl.create_default_context(), timeout=5)
        with self.assertRaises(ssl.SSLCertVerificationError):
            conn.request("GET", "/api/initial-data")
        conn.close()

    def test_keep_alive_across_all_answers(self):
        c = self.c
        pool = c.create("pool", {"name": "ka"})
        path = "/api/pool/" + pool["uuid"]
        seen = []
        for method, p, body, kw in (
                ("GET", "/api/pool", None, {}),
                ("POST", "/api/pool", {"name": "ka"}, {}),        # 409
                ("GET", "/api/pool/pool-nope", None, {}),         # 404
                ("POST", "/api/pool", {"name": "x"}, {"csrf": False}),  # 401
                ("DELETE", path, None, {}),                       # 204
                ("GET", path, None, {})):                         # 404
            r = c.request(method, p, body, **kw)
            seen.append(r.status)
            self.assertEqual(int(r.headers["Content-Length"]), len(r.raw))
        self.assertEqual(seen, [200, 409, 404, 401, 204, 404])
        self.assertEqual(c.connects, 1)
        for c2 in (self.sim.client("https"),):
            for _ in range(3):
                self.assertEqual(c2.get("/api/pool").status, 200)
            self.assertEqual(c2.connects, 1)
            c2.close()

    def test_lowercase_patch_rejected(self):
        pool = self.c.create("pool", {"name": "lc"})
        r = self.c.request("patch", "/api/pool/" + pool["uuid"],
                           {"replace": {"enabled": False}})
        self.assertEqual(r.status, 400)


if __name__ == "__main__":
    main()
