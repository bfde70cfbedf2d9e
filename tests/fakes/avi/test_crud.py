#!/usr/bin/python3
"""avisim: CRUD on every object type, references, system objects, errors
with the controller's codes and texts, cross-object rules."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from avisim_testlib import SimTestCase, main, path_of  # noqa: E402

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"

CERT_PEM = """-----BEGIN CERTIFICATE-----
MIIBfTCCASOgAwIBAgIUQ0Rlc3RDZXJ0aWZpY2F0ZUZvckF2aXNpbTAKBggqhkjO
PQQDAjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwHhcNMjQwMTAxMDAwMDAwWhcNMzQw
MTAxMDAwMDAwWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3Q=
-----END CERTIFICATE-----
"""
KEY_PEM = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n" \
    "-----END PRIVATE KEY-----\n"


class CrudTest(SimTestCase):

    def sysref(self, t, name):
        r = self.c.get("/api/%s?name=%s" % (t, name))
        self.assertEqual(r.json()["count"], 1, (t, name))
        return r.json()["results"][0]

    # ------------------------------------------------------- system objects
    def test_system_objects_seeded(self):
        expected = {
            "applicationprofile": ["System-HTTP", "System-Secure-HTTP",
                                   "System-L4-Application",
                                   "System-SSL-Application"],
            "networkprofile": ["System-TCP-Proxy", "System-TCP-Fast-Path",
                               "System-UDP-Fast-Path"],
            "sslprofile": ["System-Standard", "System-Standard-PFS"],
            "healthmonitor": ["System-HTTP", "System-HTTPS", "System-Ping",
                              "System-TCP", "System-UDP"],
            "analyticsprofile": ["System-Analytics-Profile"],
            "cloud": ["Default-Cloud"],
            "serviceenginegroup": ["Default-Group"],
            "vrfcontext": ["global", "management"],
            "tenant": ["admin"],
        }
        for t, names in expected.items():
            got = [o["name"]
                   for o in self.c.get("/api/" + t).json()["results"]]
            self.assertEqual(sorted(got), sorted(names), t)
        admin = self.c.get("/api/tenant/admin").json()
        self.assertEqual(admin["uuid"], "admin")
        cloud = self.sysref("cloud", "Default-Cloud")
        self.assertEqual(cloud["vtype"], "CLOUD_NONE")
        self.assertRegex(cloud["uuid"], "^cloud-" + UUID4 + "$")
        ap = self.sysref("applicationprofile", "System-L4-Application")
        self.assertEqual(ap["type"], "APPLICATION_PROFILE_TYPE_L4")

    def test_system_objects_read_only(self):
        cloud = self.sysref("cloud", "Default-Cloud")
        path = path_of(cloud["url"])
        r = self.c.delete(path)
        self.assertEqual((r.status, r.error),
                         (403, "Cannot delete system default object"))
        r = self.c.put(path, {"name": "Default-Cloud", "vtype": "CLOUD_NONE"})
        self.assertEqual((r.status, r.error),
                         (403, "Cannot modify system default object"))
        hm = self.sysref("healthmonitor", "System-HTTP")
        r = self.c.patch(path_of(hm["url"]),
                         {"replace": {"send_interval": 30}})
        self.assertEqual(r.status, 403)
        r = self.c.post("/api/serviceenginegroup", {"name": "x"})
        self.assertEqual(r.status, 403)
        # The global VRF takes PATCHes (AKO adds static routes) but is
        # still not deletable.
        vrf = self.sysref("vrfcontext", "global")
        route = {"route_id": "1",
                 "prefix": {"ip_addr": {"addr": "10.1.0.0", "type": "V4"},
                            "mask": 16},
                 "next_hop": {"addr": "10.0.0.1", "type": "V4"}}
        r = self.c.patch(path_of(vrf["url"]),
                         {"add": {"static_routes": [route]}})
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.json()["static_routes"][0]["route_id"], "1")
        self.assertEqual(self.c.delete(path_of(vrf["url"])).status, 403)

    # -------------------------------------------------------------- create
    def test_post_201_location_uuid_defaults(self):
        r = self.c.post("/api/pool", {
            "name": "p1", "servers": [{"ip": {"addr": "10.0.0.1",
                                              "type": "V4"}}]})
        self.assertEqual(r.status, 201)
        p = r.json()
        self.assertRegex(p["uuid"], "^pool-" + UUID4 + "$")
        self.assertEqual(r.headers["Location"],
                         "%s/api/pool/%s#p1" % (self.base(), p["uuid"]))
        self.assertEqual(p["url"], "%s/api/pool/%s#p1" % (self.base(),
                                                          p["uuid"]))
        self.assertRegex(p["_last_modified"], r"^\d{16}$")
        # swagger defaults
        self.assertEqual(p["lb_algorithm"], "LB_ALGORITHM_LEAST_CONNECTIONS")
        self.assertEqual(p["default_server_port"], 80)
        self.assertIs(p["enabled"], True)
        self.assertEqual(p["servers"][0]["ratio"], 1)
        self.assertEqual(p["servers"][0]["hostname"], "10.0.0.1")
        # tenant and cloud
        self.assertEqual(p["tenant_ref"],
                         self.base() + "/api/tenant/admin#admin")
        cloud = self.sysref("cloud", "Default-Cloud")
        self.assertEqual(p["cloud_ref"],
                         "%s/api/cloud/%s#Default-Cloud" % (self.base(),
                                                            cloud["uuid"]))
        # GET returns the same object without #name unless include_name.
        g = self.c.get("/api/pool/" + p["uuid"]).json()
        self.assertEqual(g["cloud_ref"], "%s/api/cloud/%s" % (self.base(),
                                                              cloud["uuid"]))
        self.assertEqual(g["_last_modified"], p["_last_modified"])
        g = self.c.get("/api/pool/%s?include_name" % p["uuid"]).json()
        self.assertTrue(g["cloud_ref"].endswith("#Default-Cloud"))

    def test_slug_forces_uuid(self):
        r = self.c.post("/api/pool", {"name": "forced"},
                        headers={"Slug": "pool-force-42"})
        self.assertEqual(r.status, 201)
        self.assertEqual(r.json()["uuid"], "pool-force-42")
        self.assertEqual(self.c.get("/api/pool/pool-force-42").status, 200)
        # uuid in the body is ignored (use_uuid_from_input is false)
        r = self.c.post("/api/pool", {"name": "b", "uuid": "pool-mine"})
        self.assertNotEqual(r.json()["uuid"], "pool-mine")

    def test_vs_defaults(self):
        vip = self.c.create("vsvip", {"name": "vip1", "vip": [
            {"ip_address": {"addr": "10.10.10.10", "type": "V4"}}]})
        self.assertEqual(vip["vip"][0]["vip_id"], "0")
        self.assertTrue(vip["vrf_context_ref"].endswith("#global"))
        vs = self.c.create("virtualservice", {
            "name": "vs1", "vsvip_ref": "/api/vsvip?name=vip1",
            "services": [{"port": 80}]})
        self.assertTrue(vs["application_profile_ref"].endswith(
            "#System-HTTP"))
        self.assertTrue(vs["network_profile_ref"].endswith(
            "#System-TCP-Proxy"))
        self.assertTrue(vs["se_group_ref"].endswith("#Default-Group"))
        self.assertTrue(vs["vrf_context_ref"].endswith("#global"))
        self.assertTrue(vs["cloud_ref"].endswith("#Default-Cloud"))
        self.assertIs(vs["enabled"], True)
        self.assertIs(vs["traffic_enabled"], True)
        self.assertEqual(vs["type"], "VS_TYPE_NORMAL")
        self.assertEqual(vs["vsvip_ref"], "%s/api/vsvip/%s#vip1"
                         % (self.base(), vip["uuid"]))

    # ---------------------------------------------------------- references
    def test_reference_input_forms(self):
        hm = self.c.create("healthmonitor", {"name": "hm1",
                                             "type": "HEALTH_MONITOR_TCP"})
        want = "%s/api/healthmonitor/%s" % (self.base(), hm["uuid"])
        forms = [want,                                     # full URL
                 want + "#hm1",                            # with #name
                 "https://other-host/api/healthmonitor/" + hm["uuid"],
                 "/api/healthmonitor/" + hm["uuid"],       # relative
                 "/api/healthmonitor?name=hm1",            # by name
                 "/api/healthmonitor/?name=hm1"]
        for i, ref in enumerate(forms):
            p = self.c.create("pool", {"name": "p%d" % i,
                                       "health_monitor_refs": [ref]})
            self.assertEqual(p["health_monitor_refs"], [want + "#hm1"], ref)
            g = self.c.get("/api/pool/" + p["uuid"]).json()
            self.assertEqual(g["health_monitor_refs"], [want], ref)

    def test_unresolvable_references(self):
        r = self.c.post("/api/poolgroup", {"name": "pg", "members": [
            {"pool_ref":
             "/api/pool/pool-00000000-0000-4000-8000-000000000000"}]})
        self.assertEqual((r.status, r.error), (404, "Pool object not found!"))
        r = self.c.post("/api/virtualservice", {
            "name": "vs", "vsvip_ref": "/api/vsvip?name=missing"})
        self.assertEqual((r.status, r.error), (400, "VsVip object not found!"))
        r = self.c.post("/api/pool", {"name": "p", "health_monitor_refs": [
            "/api/pool?name=p"]})   # wrong type
        self.assertEqual(r.status, 404)
        self.assertEqual(r.error, "HealthMonitor object not found!")
        r = self.c.post("/api/vsvip", {"name": "v", "vrf_context_ref":
                                       "/api/vrfcontext?name=nope"})
        self.assertEqual((r.status, r.error),
                         (400, "VrfContext object not found!"))
        self.assertEqual(self.c.get("/api/pool").json()["count"], 0)

    # ---------------------------------------------------------- read/update
    def test_get_unknown_404(self):
        r = self.c.get("/api/pool/pool-nope")
        self.assertEqual((r.status, r.error), (404, "Pool object not found!"))
        self.assertEqual(self.c.get("/api/nosuchtype").status, 404)

    def test_put_full_replace(self):
        p = self.c.create("pool", {"name": "p", "lb_algorithm":
                                   "LB_ALGORITHM_ROUND_ROBIN",
                                   "description": "d",
                                   "default_server_port": 8080})
        path = "/api/pool/" + p["uuid"]
        r = self.c.put(path, {"name": "p", "default_server_port": 9090})
        self.assertEqual(r.status, 200)
        q = r.json()
        self.assertEqual(q["default_server_port"], 9090)
        self.assertEqual(q["lb_algorithm"], "LB_ALGORITHM_LEAST_CONNECTIONS")
        self.assertNotIn("description", q)
        self.assertEqual(q["uuid"], p["uuid"])
        self.assertGreater(int(q["_last_modified"]), int(p["_last_modified"]))
        self.assertTrue(q["tenant_ref"].endswith("#admin"))
        r = self.c.put("/api/pool/pool-nope", {"name": "x"})
        self.assertEqual(r.status, 404)

    def test_put_rename_and_duplicate(self):
        a = self.c.create("pool", {"name": "a"})
        self.c.create("pool", {"name": "b"})
        r = self.c.put("/api/pool/" + a["uuid"], {"name": "b"})
        self.assertEqual(r.status, 409)
        r = self.c.put("/api/pool/" + a["uuid"], {"name": "a2"})
        self.assertEqual(r.json()["name"], "a2")

    def test_duplicate_name_409(self):
        self.c.create("pool", {"name": "dup"})
        r = self.c.post("/api/pool", {"name": "dup"})
        self.assertEqual(r.status, 409)
        self.assertIn("already exists", r.error)
        # other types may reuse the name
        self.c.create("poolgroup", {"name": "dup"})

    def test_stale_last_modified_412(self):
        vip = self.c.create("vsvip", {"name": "v1"})
        path = "/api/vsvip/" + vip["uuid"]
        fresh = self.c.get(path).json()
        r = self.c.put(path, dict(fresh, east_west_placement=True))
        self.assertEqual(r.status, 200)
        r = self.c.put(path, dict(fresh, east_west_placement=False))
        self.assertEqual((r.status, r.error),
                         (412, "Need to reload object data VsVip v1"))
        # A PUT without _last_modified is unconditional.
        body = dict(fresh)
        del body["_last_modified"]
        self.assertEqual(self.c.put(path, body).status, 200)
        # _last_modified changes on every write, read-only in input.
        lm = [self.c.get(path).json()["_last_modified"]]
        for _ in range(3):
            body = self.c.get(path).json()
            lm.append(self.c.put(path, body).json()["_last_modified"])
        self.assertEqual(len(set(lm)), 4)
        self.assertEqual(lm, sorted(lm, key=int))

    def test_patch_add_replace_delete(self):
        hm1 = self.c.create("healthmonitor", {"name": "h1", "type":
                                              "HEALTH_MONITOR_TCP"})
        self.c.create("healthmonitor", {"name": "h2", "type":
                                        "HEALTH_MONITOR_TCP"})
        srv = {"ip": {"addr": "10.0.0.1", "type": "V4"}, "port": 80}
        p = self.c.create("pool", {"name": "p", "servers": [srv],
                                   "health_monitor_refs": [hm1["url"]]})
        path = "/api/pool/" + p["uuid"]
        r = self.c.patch(path, {"add": {
            "servers": [{"ip": {"addr": "10.0.0.2", "type": "V4"},
                         "port": 80},
                        dict(srv, ratio=5)],
            "health_monitor_refs": ["/api/healthmonitor?name=h2"]}})
        self.assertEqual(r.status, 200, r.text)
        q = r.json()
        self.assertEqual([s["ip"]["addr"] for s in q["servers"]],
                         ["10.0.0.1", "10.0.0.2"])
        self.assertEqual(q["servers"][0]["ratio"], 5)
        self.assertEqual([x.split("#")[1] for x in q["health_monitor_refs"]],
                         ["h1", "h2"])
        r = self.c.patch(path, {"delete": {
            "servers": [srv], "health_monitor_refs": [hm1["url"]],
            "default_server_port": 1}})
        q = r.json()
        self.assertEqual([s["ip"]["addr"] for s in q["servers"]],
                         ["10.0.0.2"])
        self.assertEqual(len(q["health_monitor_refs"]), 1)
        r = self.c.patch(path, {"replace": {"servers": [],
                                            "default_server_port": 8443}})
        q = r.json()
        self.assertEqual(q["servers"], [])
        self.assertEqual(q["default_server_port"], 8443)
        r = self.c.patch(path, {"delete": {"default_server_port": 0}})
        self.assertEqual(r.json()["default_server_port"], 80)  # default
        r = self.c.patch(path, {"json_patch": [
            {"op": "add", "path": "/servers/-", "value": srv},
            {"op": "replace", "path": "/description", "value": "jp"}]})
        self.assertEqual(r.status, 400)  # replace of a missing member
        r = self.c.patch(path, {"json_patch": [
            {"op": "add", "path": "/servers/-", "value": srv},
            {"op": "add", "path": "/description", "value": "jp"}]})
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.json()["servers"][0]["hostname"], "10.0.0.1")
        self.assertEqual(r.json()["description"], "jp")
        r = self.c.patch(path, {"json_patch": [
            {"op": "remove", "path": "/servers/0"}]})
        self.assertEqual(r.json()["servers"], [])
        r = self.c.patch(path, {"frobnicate": {}})
        self.assertEqual(r.status, 400)
        r = self.c.patch(path, {"replace": {"lb_algorithm": "NOPE"}})
        self.assertEqual(r.status, 400)

    # -------------------------------------------------------------- delete
    def test_delete_204_and_404(self):
        p = self.c.create("pool", {"name": "p"})
        r = self.c.delete("/api/pool/" + p["uuid"])
        self.assertEqual(r.status, 204)
        self.assertEqual(r.headers["Content-Length"], "0")
        self.assertEqual(r.raw, b"")
        r = self.c.delete("/api/pool/" + p["uuid"])
        self.assertEqual((r.status, r.error), (404, "Pool object not found!"))
        # the name is free again
        self.c.create("pool", {"name": "p"})

    def test_deleted_name_hold_409(self):
        self.sim.control("POST", "/_sim/config",
                         {"deleted_name_hold_ms": 60000})
        p = self.c.create("pool", {"name": "p"})
        self.c.delete("/api/pool/" + p["uuid"])
        self.assertEqual(self.c.post("/api/pool", {"name": "p"}).status, 409)

    def test_delete_referenced_403(self):
        p = self.c.create("pool", {"name": "custom-pool"})
        pg = self.c.create("poolgroup", {"name": "pg", "members": [
            {"pool_ref": "/api/pool?name=custom-pool"}]})
        self.c.create("virtualservice", {"name": "custom-vs",
                                         "pool_ref": p["url"]})
        r = self.c.delete("/api/pool/" + p["uuid"])
        self.assertEqual(r.status, 403)
        self.assertEqual(r.error, "Cannot delete, object is referred by: "
                         "['PoolGroup pg', 'VirtualService custom-vs']")
        hm = self.c.create("healthmonitor", {"name": "hm", "type":
                                             "HEALTH_MONITOR_PING"})
        self.c.create("pool", {"name": "p2", "health_monitor_refs":
                               [hm["url"]]})
        r = self.c.delete("/api/healthmonitor/" + hm["uuid"])
        self.assertEqual((r.status, r.error), (403, "Cannot delete, object "
                                               "is referred by: ['Pool p2']"))
        self.assertEqual(self.c.delete("/api/poolgroup/" + pg["uuid"]).status,
                         204)
        # A cloud in use answers 400 with the same text.
        cloud = self.c.create("cloud", {"name": "c2", "vtype": "CLOUD_NONE"})
        self.c.create("pool", {"name": "p3", "cloud_ref": cloud["url"]})
        r = self.c.delete("/api/cloud/" + cloud["uuid"])
        self.assertEqual((r.status, r.error), (400, "Cannot delete, object "
                                               "is referred by: ['Pool p3']"))

    # ---------------------------------------------------- every CRUD type
    def test_crud_each_type(self):
        bodies = {
            "vsvip": {"name": "o", "vip": [{"vip_id": "0", "ip_address": {
                "addr": "1.1.1.1", "type": "V4"}}]},
            "pool": {"name": "o"},
            "poolgroup": {"name": "o", "members": [
                {"pool_ref": "/api/pool?name=o", "ratio": 3}]},
            "httppolicyset": {"name": "o", "http_request_policy": {"rules": [
                {"name": "r", "index": 1, "match": {"path": {
                    "match_criteria": "BEGINS_WITH", "match_str": ["/a"]}},
                 "switching_action": {
                     "action": "HTTP_SWITCHING_SELECT_POOLGROUP",
                     "pool_group_ref": "/api/poolgroup?name=o"}}]}},
            "sslkeyandcertificate": {"name": "o", "key": KEY_PEM,
                                     "certificate": {
                                         "certificate": CERT_PEM}},
            "healthmonitor": {"name": "o", "type": "HEALTH_MONITOR_HTTP",
                              "http_monitor": {"http_response_code":
                                               ["HTTP_2XX"]}},
            "virtualservice": {"name": "o", "vsvip_ref": "/api/vsvip?name=o",
                               "services": [{"port": 443,
                                             "enable_ssl": True}],
                               "pool_group_ref": "/api/poolgroup?name=o",
                               "http_policies": [{
                                   "index": 11, "http_policy_set_ref":
                                   "/api/httppolicyset?name=o"}],
                               "ssl_key_and_certificate_refs": [
                                   "/api/sslkeyandcertificate?name=o"]},
            "stringgroup": {"name": "o", "type": "SG_TYPE_STRING",
                            "kv": [{"key": "a"}]},
            "pkiprofile": {"name": "o"},
            "applicationprofile": {"name": "o", "type":
                                   "APPLICATION_PROFILE_TYPE_HTTP"},
            "networkprofile": {"name": "o", "profile": {
                "type": "PROTOCOL_TYPE_TCP_PROXY"}},
            "vrfcontext": {"name": "o"},
            "tenant": {"name": "o"},
        }
        made = []
        for t, body in bodies.items():
            r = self.c.post("/api/" + t, body)
            self.assertEqual(r.status, 201, (t, r.text))
            o = r.json()
            self.assertRegex(o["uuid"], "^%s-%s$" % (t, UUID4))
            made.append((t, o["uuid"]))
            g = self.c.get("/api/%s/%s" % (t, o["uuid"]))
            self.assertEqual(g.status, 200)
            r = self.c.put("/api/%s/%s" % (t, o["uuid"]), g.json())
            self.assertEqual(r.status, 200, (t, r.text))
            r = self.c.patch("/api/%s/%s" % (t, o["uuid"]),
                             {"replace": {"name": "o"}})
            self.assertEqual(r.status, 200, (t, r.text))
        vs = self.c.get("/api/virtualservice?name=o&include_name").json()[
            "results"][0]
        self.assertTrue(vs["http_policies"][0]["http_policy_set_ref"]
                        .endswith("#o"))
        # delete in reverse dependency order
        for t, u in reversed(made):
            r = self.c.delete("/api/%s/%s" % (t, u))
            self.assertEqual(r.status, 204, (t, r.text))

    def test_sslkeyandcertificate_secrets(self):
        r = self.c.post("/api/sslkeyandcertificate", {
            "name": "cert", "key": KEY_PEM,
            "certificate": {"certificate": CERT_PEM}})
        self.assertEqual(r.status, 201)
        o = r.json()
        self.assertNotIn("key", o)
        self.assertNotIn("certificate", o["certificate"])
        self.assertNotIn("PRIVATE KEY", r.text)
        self.assertEqual(o["type"], "SSL_CERTIFICATE_TYPE_VIRTUALSERVICE")
        self.assertEqual(o["format"], "SSL_PEM")
        g = self.c.get("/api/sslkeyandcertificate/" + o["uuid"]).json()
        self.assertEqual(g["key"], "<sensitive>")
        self.assertEqual(g["certificate"]["certificate"], CERT_PEM)
        # Round trip with "<sensitive>" keeps the stored key.
        r = self.c.put("/api/sslkeyandcertificate/" + o["uuid"], g)
        self.assertEqual(r.status, 200)
        st, state = self.sim.control("GET", "/_sim/state")
        self.assertEqual(state["objects"]["sslkeyandcertificate"][0]["key"],
                         "<sensitive>")
        r = self.c.post("/api/sslkeyandcertificate", {"name": "nocert"})
        self.assertEqual(r.status, 400)
        self.assertIn("certificate", r.error)

    # --------------------------------------------------- cross-object rules
    def test_healthmonitor_timeout_rule(self):
        r = self.c.post("/api/healthmonitor", {
            "name": "h", "type": "HEALTH_MONITOR_TCP", "send_interval": 5,
            "receive_timeout": 5})
        self.assertEqual(r.status, 400)
        self.assertIn("receive timeout", r.error)
        r = self.c.post("/api/healthmonitor", {
            "name": "h", "type": "HEALTH_MONITOR_TCP", "send_interval": 3})
        self.assertEqual(r.status, 400)  # default receive_timeout 4 >= 3

    def test_l4_vs_with_http_policy(self):
        self.c.create("httppolicyset", {"name": "ps"})
        r = self.c.post("/api/virtualservice", {
            "name": "l4", "application_profile_ref":
            "/api/applicationprofile?name=System-L4-Application",
            "http_policies": [{"index": 1, "http_policy_set_ref":
                               "/api/httppolicyset?name=ps"}]})
        self.assertEqual((r.status, r.error), (400, "Layer-4 virtual service "
                                               "should not refer to any HTTP "
                                               "policyset"))

    def test_vrf_mismatch(self):
        vrf = self.c.create("vrfcontext", {"name": "blue"})
        self.c.create("pool", {"name": "bp", "vrf_ref": vrf["url"]})
        self.c.create("poolgroup", {"name": "bpg", "members": [
            {"pool_ref": "/api/pool?name=bp"}]})
        r = self.c.post("/api/virtualservice", {
            "name": "vs", "pool_group_ref": "/api/poolgroup?name=bpg"})
        self.assertEqual((r.status, r.error),
                         (400, "VRF Context for vs and pool bp different"))
        r = self.c.post("/api/virtualservice", {
            "name": "vs", "pool_ref": "/api/pool?name=bp",
            "vrf_context_ref": "/api/vrfcontext?name=blue"})
        self.assertEqual(r.status, 201, r.text)

    def test_pool_serves_one_vs(self):
        self.c.create("pool", {"name": "p"})
        self.c.create("poolgroup", {"name": "pg", "members": [
            {"pool_ref": "/api/pool?name=p"}]})
        self.c.create("virtualservice", {"name": "vs1",
                                         "pool_ref": "/api/pool?name=p"})
        r = self.c.post("/api/virtualservice", {
            "name": "vs2", "pool_group_ref": "/api/poolgroup?name=pg"})
        self.assertEqual((r.status, r.error),
                         (400, "Pool p is already used by VirtualService "
                          "vs1"))
        # updating vs1 itself is fine; the check can be switched off
        vs1 = self.c.get("/api/virtualservice?name=vs1").json()["results"][0]
        self.assertEqual(self.c.put(path_of(vs1["url"]), vs1).status, 200)
        self.sim.control("POST", "/_sim/config", {"pool_single_vs": False})
        r = self.c.post("/api/virtualservice", {
            "name": "vs2", "pool_group_ref": "/api/poolgroup?name=pg"})
        self.assertEqual(r.status, 201)

    def test_vh_child_needs_parent(self):
        r = self.c.post("/api/virtualservice", {
            "name": "child", "type": "VS_TYPE_VH_CHILD"})
        self.assertEqual(r.status, 400)
        normal = self.c.create("virtualservice", {"name": "normal"})
        r = self.c.post("/api/virtualservice", {
            "name": "child", "type": "VS_TYPE_VH_CHILD",
            "vh_parent_vs_ref": normal["url"]})
        self.assertEqual(r.status, 400)
        self.c.create("virtualservice", {"name": "parent",
                                         "type": "VS_TYPE_VH_PARENT"})
        child = self.c.create("virtualservice", {
            "name": "child", "type": "VS_TYPE_VH_CHILD",
            "vh_parent_vs_ref": "/api/virtualservice?name=parent",
            "vh_domain_name": ["a.example.com"]})
        self.assertNotIn("vrf_context_ref", child)
        r = self.c.delete(path_of(child["vh_parent_vs_ref"]))
        self.assertEqual((r.status, r.error),
                         (403, "Cannot delete, object is referred by: "
                          "['VirtualService child']"))

    def test_vip_id_change(self):
        v = self.c.create("vsvip", {"name": "v", "vip": [
            {"ip_address": {"addr": "1.1.1.1", "type": "V4"}}]})
        path = "/api/vsvip/" + v["uuid"]
        body = self.c.get(path).json()
        body["vip"][0]["vip_id"] = "7"
        r = self.c.put(path, body)
        self.assertEqual((r.status, r.error),
                         (400, "Changing an existing VIP's vip_id is not "
                          "supported"))
        del body["vip"][0]["vip_id"]
        body.pop("_last_modified")
        r = self.c.put(path, body)
        self.assertEqual(r.json()["vip"][0]["vip_id"], "0")


class CrudTestHTTPS(CrudTest):
    """The same tests over HTTPS (certificate verified with the port file's
    CA); URLs, Location and refs then use https://."""
    https = True
    scheme = "https"


if __name__ == "__main__":
    main()
