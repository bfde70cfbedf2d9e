#!/usr/bin/python3
"""avisim: X-Avi-Version handling, tenants, schema validation."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from avisim_testlib import SimTestCase, main, path_of  # noqa: E402


class VersionTest(SimTestCase):

    def test_field_newer_than_version(self):
        # Pool.delete_server_on_dns_refresh: "Field introduced in 18.2.3."
        r = self.c.post("/api/pool", {"name": "p",
                                      "delete_server_on_dns_refresh": False},
                        headers={"X-Avi-Version": "18.2.2"})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.error, "Incoming request (v18_2_2) has field "
                         "(delete_server_on_dns_refresh) introduced in later "
                         "versions(v18_2_3).")
        r = self.c.post("/api/pool", {"name": "p",
                                      "delete_server_on_dns_refresh": False},
                        headers={"X-Avi-Version": "18.2.3"})
        self.assertEqual(r.status, 201)

    def test_nested_field_and_release_trains(self):
        # PoolGroup.markers "20.1.5"; VsVip.vsvip_cloud_config_cksum
        # "17.2.9, 18.1.2" (one version per release train).
        r = self.c.post("/api/poolgroup", {"name": "g", "markers": [
            {"key": "clustername", "values": ["c1"]}]},
            headers={"X-Avi-Version": "20.1.4"})
        self.assertEqual(r.error, "Incoming request (v20_1_4) has field "
                         "(markers) introduced in later versions(v20_1_5).")
        r = self.c.post("/api/vsvip", {"name": "v",
                                       "vsvip_cloud_config_cksum": "x"},
                        headers={"X-Avi-Version": "18.1.1"})
        self.assertEqual(r.error, "Incoming request (v18_1_1) has field "
                         "(vsvip_cloud_config_cksum) introduced in later "
                         "versions(v18_1_2).")
        r = self.c.post("/api/vsvip", {"name": "v",
                                       "vsvip_cloud_config_cksum": "x"},
                        headers={"X-Avi-Version": "17.2.9"})
        self.assertEqual(r.status, 201)
        # A nested versioned field: Vip.prefix_length "introduced in 20.1.1".
        r = self.c.post("/api/vsvip", {"name": "v2", "vip": [
            {"vip_id": "0", "prefix_length": 32}]},
            headers={"X-Avi-Version": "17.1.1"})
        self.assertEqual(r.status, 400)
        self.assertIn("(prefix_length) introduced in later versions",
                      r.error)

    def test_invalid_version(self):
        r = self.c.get("/api/pool", headers={"X-Avi-Version": "latest"})
        self.assertEqual(r.status, 400)
        self.assertIn("Invalid version", r.error)

    def test_absent_version_assumes_16_4_1(self):
        r = self.c.post("/api/pool", {"name": "p", "markers": []},
                        version=False)
        self.assertEqual(r.error, "Incoming request (v16_4_1) has field "
                         "(markers) introduced in later versions(v20_1_5).")
        r = self.c.post("/api/pool", {"name": "p"}, version=False)
        self.assertEqual(r.status, 201)

    def test_output_follows_version(self):
        p = self.c.create("pool", {"name": "p", "markers": [
            {"key": "k", "values": ["v"]}]})
        self.assertIn("pool_type", p)  # 22.1.1 field, default filled
        old = self.c.get("/api/pool/" + p["uuid"],
                         headers={"X-Avi-Version": "20.1.1"}).json()
        self.assertNotIn("pool_type", old)
        self.assertNotIn("markers", old)
        self.assertEqual(old["uuid"], p["uuid"])
        # A GET/PUT round trip at an older version is accepted.
        r = self.c.put("/api/pool/" + p["uuid"], old,
                       headers={"X-Avi-Version": "20.1.1"})
        self.assertEqual(r.status, 200, r.text)


class TenantTest(SimTestCase):
    sim_args = ("--tenant", "t1")

    def test_unknown_tenant_403(self):
        for hdr in ({"X-Avi-Tenant": "nope"}, {"X-Avi-Tenant-UUID": "nope"}):
            r = self.c.get("/api/pool", headers=hdr)
            self.assertEqual(r.status, 403)
            self.assertEqual(r.error, "Tenant 'nope' does not exist!")
        r = self.c.post("/api/pool", {"name": "p"},
                        headers={"X-Avi-Tenant": "nope"})
        self.assertEqual(r.status, 403)

    def test_tenant_scoping(self):
        t1 = self.sim.client(tenant="t1")
        tp = t1.create("pool", {"name": "shared-name"})
        self.assertTrue(tp["tenant_ref"].endswith("#t1"))
        self.assertRegex(path_of(tp["tenant_ref"]), r"^/api/tenant/tenant-")
        # invisible from admin, by name and by uuid
        self.assertEqual(self.c.get("/api/pool?name=shared-name").json()[
            "count"], 0)
        self.assertEqual(self.c.get("/api/pool/" + tp["uuid"]).status, 404)
        # same name allowed in admin; duplicates within t1 are not
        ap = self.c.create("pool", {"name": "shared-name"})
        self.assertEqual(t1.post("/api/pool", {"name": "shared-name"})
                         .status, 409)
        # admin objects are visible from t1
        names = sorted(o["tenant_ref"].split("#")[1] for o in
                       t1.get("/api/pool?include_name").json()["results"])
        self.assertEqual(names, ["admin", "t1"])
        self.assertEqual(t1.get("/api/pool/" + ap["uuid"]).status, 200)
        # by-name refs from t1 prefer t1's object, then admin's
        pg = t1.create("poolgroup", {"name": "pg", "members": [
            {"pool_ref": "/api/pool?name=shared-name"}]})
        self.assertEqual(path_of(pg["members"][0]["pool_ref"]),
                         "/api/pool/" + tp["uuid"])
        hm = t1.create("pool", {"name": "p2", "health_monitor_refs": [
            "/api/healthmonitor?name=System-TCP"],
            "cloud_ref": "/api/cloud?name=Default-Cloud"})
        self.assertTrue(hm["health_monitor_refs"][0].endswith("#System-TCP"))
        # admin cannot reference t1's objects
        r = self.c.post("/api/poolgroup", {"name": "apg", "members": [
            {"pool_ref": "/api/pool/" + tp["uuid"]}]})
        self.assertEqual((r.status, r.error), (404, "Pool object not found!"))
        # admin objects cannot be modified from t1
        self.assertEqual(t1.delete("/api/pool/" + ap["uuid"]).status, 403)

    def test_tenant_uuid_header_and_star(self):
        t1 = self.sim.client(tenant="t1")
        t1.create("pool", {"name": "a"})
        self.c.create("pool", {"name": "b"})
        tu = self.c.get("/api/tenant?name=t1").json()["results"][0]["uuid"]
        r = self.c.get("/api/pool", headers={"X-Avi-Tenant-UUID": tu})
        self.assertEqual(sorted(o["name"] for o in r.json()["results"]),
                         ["a", "b"])
        star = self.sim.client(tenant="*")
        r = star.get("/api/pool?include_name")
        self.assertEqual(r.json()["count"], 2)
        r = star.post("/api/pool", {"name": "c"})
        self.assertEqual(r.status, 400)
        self.c.create("tenant", {"name": "t2"})
        t2 = self.sim.client(tenant="t2")
        self.assertEqual(t2.get("/api/pool").json()["count"], 1)
        self.assertEqual(star.get("/api/pool").json()["count"], 2)

    def test_delete_tenant_in_use(self):
        t1 = self.sim.client(tenant="t1")
        t1.create("pool", {"name": "a"})
        tu = self.c.get("/api/tenant?name=t1").json()["results"][0]["uuid"]
        r = self.c.delete("/api/tenant/" + tu)
        self.assertEqual((r.status, r.error),
                         (403, "Cannot delete, object is referred by: "
                          "['Pool a']"))


class SchemaTest(SimTestCase):

    def test_enum_required_range_type(self):
        r = self.c.post("/api/pool", {"name": "p", "lb_algorithm": "FOO"})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.error, '{"lb_algorithm": "\\"FOO\\" is not a '
                         'valid choice."}')
        r = self.c.post("/api/healthmonitor", {"name": "h"})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.error, '{"type": "This field is required."}')
        r = self.c.post("/api/pool", {"servers": []})
        self.assertEqual(r.error, '{"name": "This field is required."}')
        r = self.c.post("/api/pool", {"name": "p", "servers": [
            {"ip": {"addr": "1.2.3.4"}}]})
        self.assertEqual(r.error, '{"servers.ip.type": "This field is '
                         'required."}')
        r = self.c.post("/api/pool", {"name": "p", "default_server_port": 0})
        self.assertEqual(r.error, '{"default_server_port": "Ensure this '
                         'value is between 1 and 65535."}')
        r = self.c.post("/api/pool", {"name": "p",
                                      "graceful_disable_timeout": -1})
        self.assertEqual(r.status, 201)  # special value
        r = self.c.post("/api/pool", {"name": "q", "enabled": "yes"})
        self.assertEqual(r.error, '{"enabled": "Invalid value type, '
                         'expected boolean."}')
        r = self.c.post("/api/healthmonitor", {
            "name": "h", "type": "HEALTH_MONITOR_HTTP",
            "http_monitor": {"http_response_code": ["HTTP_2XX", "HTTP_7XX"]}})
        self.assertEqual(r.status, 400)
        r = self.c.post("/api/pool", {"name": "q", "health_monitor_refs":
                                      ["/api/healthmonitor?name=System-TCP"]
                                      * 51})
        self.assertEqual(r.error, '{"health_monitor_refs": "Ensure this field '
                         'has no more than 50 elements."}')
        r = self.c.post("/api/pool", [1, 2])
        self.assertEqual(r.status, 400)
        r = self.c.request("POST", "/api/pool", raw_body=b"{not json",
                           headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        self.assertIn("JSON parse error", r.error)

    def test_unknown_fields_ignore_or_reject(self):
        p = self.c.create("pool", {"name": "p", "bogus": 1,
                                   "servers": [{"ip": {"addr": "1.1.1.1",
                                                       "type": "V4"},
                                                "nope": True}]})
        self.assertNotIn("bogus", p)
        self.assertNotIn("nope", p["servers"][0])
        st, cfg = self.sim.control("POST", "/_sim/config",
                                   {"unknown_fields": "reject"})
        self.assertEqual(cfg["unknown_fields"], "reject")
        r = self.c.post("/api/pool", {"name": "q", "bogus": 1})
        self.assertEqual((r.status, r.error),
                         (400, '{"bogus": "Unknown field."}'))
        r = self.c.post("/api/pool", {"name": "q", "servers": [
            {"ip": {"addr": "1.1.1.1", "type": "V4"}, "nope": 1}]})
        self.assertEqual(r.error, '{"servers.nope": "Unknown field."}')

    def test_read_only_fields_ignored(self):
        p = self.c.create("pool", {"name": "p", "url": "x",
                                   "_last_modified": "1",
                                   "gslb_sp_enabled": True})
        self.assertNotEqual(p["_last_modified"], "1")
        self.assertNotIn("gslb_sp_enabled", p)
        self.assertTrue(p["url"].startswith(self.base()))


class UnknownRejectFlagTest(SimTestCase):
    sim_args = ("--unknown-fields", "reject")

    def test_flag(self):
        r = self.c.post("/api/vsvip", {"name": "v", "extra": 1})
        self.assertEqual(r.status, 400)


if __name__ == "__main__":
    main()
