#!/usr/bin/python3
"""avisim: collection GETs: count/results/next paging and query filters."""
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from avisim_testlib import SimTestCase, main, path_of  # noqa: E402


class CollectionTest(SimTestCase):

    def make_pools(self, n, **extra):
        return [self.c.create("pool", dict({"name": "pool-%03d" % i},
                                           **extra)) for i in range(n)]

    def test_empty(self):
        r = self.c.get("/api/pool")
        self.assertEqual(r.json(), {"count": 0, "results": []})

    def test_paging_follow_next(self):
        self.make_pools(7)
        r = self.c.get("/api/pool/?page_size=3&created_by=")
        body = r.json()
        # created_by= (empty) matches nothing created with an owner tag
        self.assertEqual(body["count"], 0)
        r = self.c.get("/api/pool/?page_size=3")
        body = r.json()
        self.assertEqual(body["count"], 7)
        self.assertEqual(len(body["results"]), 3)
        self.assertEqual(body["next"], self.base() +
                         "/api/pool/?page_size=3&page=2")
        names = [o["name"] for o in body["results"]]
        pages = 1
        while "next" in body:
            u = urllib.parse.urlsplit(body["next"])
            self.assertEqual("%s://%s" % (u.scheme, u.netloc), self.base())
            body = self.c.get(u.path + "?" + u.query).json()
            self.assertEqual(body["count"], 7)
            names += [o["name"] for o in body["results"]]
            pages += 1
        self.assertEqual(pages, 3)
        self.assertEqual(names, ["pool-%03d" % i for i in range(7)])

    def test_page_size_limits_and_default(self):
        self.make_pools(30)
        body = self.c.get("/api/pool").json()
        self.assertEqual(len(body["results"]), 25)  # documented default
        self.assertIn("page=2", body["next"])
        body = self.c.get("/api/pool?page_size=200").json()
        self.assertEqual(len(body["results"]), 30)
        self.assertNotIn("next", body)
        for bad in ("0", "201", "x"):
            r = self.c.get("/api/pool?page_size=" + bad)
            self.assertEqual(r.status, 400, bad)
        r = self.c.get("/api/pool?page_size=10&page=9")
        self.assertEqual((r.status, r.error), (404, "Invalid page."))

    def test_name_filters(self):
        self.c.create("pool", {"name": "alpha-web"})
        self.c.create("pool", {"name": "beta-web"})
        self.c.create("pool", {"name": "Gamma"})

        def names(q):
            r = self.c.get("/api/pool?" + q)
            self.assertEqual(r.status, 200)
            return sorted(o["name"] for o in r.json()["results"])
        self.assertEqual(names("name=beta-web"), ["beta-web"])
        self.assertEqual(names("name=beta"), [])
        self.assertEqual(names("name.contains=web"), ["alpha-web",
                                                      "beta-web"])
        self.assertEqual(names("name.contains=gamma"), [])
        self.assertEqual(names("name.icontains=gamma"), ["Gamma"])
        self.assertEqual(names("name.in=Gamma,alpha-web"), ["Gamma",
                                                            "alpha-web"])

    def test_created_by_and_labels(self):
        self.c.create("pool", {"name": "mine", "created_by": "amc-c1"})
        self.c.create("pool", {"name": "theirs", "created_by": "ako-c1"})
        self.c.create("stringgroup", {"name": "sg", "type": "SG_TYPE_STRING",
                                      "markers": [{"key": "clustername",
                                                   "values": ["c1"]}]})
        r = self.c.get("/api/pool?created_by=amc-c1").json()
        self.assertEqual([o["name"] for o in r["results"]], ["mine"])
        r = self.c.get("/api/stringgroup?label_key=clustername&"
                       "label_value=c1").json()
        self.assertEqual(r["count"], 1)
        r = self.c.get("/api/stringgroup?label_key=clustername&"
                       "label_value=c2").json()
        self.assertEqual(r["count"], 0)

    def test_refers_to_and_referred_by(self):
        hm = self.c.create("healthmonitor", {"name": "hm", "type":
                                             "HEALTH_MONITOR_TCP"})
        p1 = self.c.create("pool", {"name": "p1", "health_monitor_refs":
                                    [hm["url"]]})
        self.c.create("pool", {"name": "p2"})
        vs = self.c.create("virtualservice", {"name": "vs", "pool_ref":
                                              p1["url"]})
        r = self.c.get("/api/pool?refers_to=healthmonitor:" + hm["uuid"])
        self.assertEqual([o["name"] for o in r.json()["results"]], ["p1"])
        r = self.c.get("/api/pool?referred_by=virtualservice:" + vs["uuid"])
        self.assertEqual([o["name"] for o in r.json()["results"]], ["p1"])
        r = self.c.get("/api/virtualservice?refers_to=pool:" + p1["uuid"])
        self.assertEqual(r.json()["count"], 1)
        r = self.c.get("/api/healthmonitor?referred_by=pool:" + p1["uuid"])
        self.assertEqual([o["name"] for o in r.json()["results"]], ["hm"])

    def test_fields_include_name_skip_default(self):
        self.c.create("pool", {"name": "p", "description": "d"})
        o = self.c.get("/api/pool?fields=description").json()["results"][0]
        self.assertEqual(set(o), {"name", "url", "uuid", "description"})
        o = self.c.get("/api/pool?include_name=true").json()["results"][0]
        self.assertTrue(o["cloud_ref"].endswith("#Default-Cloud"))
        self.assertTrue(o["url"].endswith("#p"))
        o = self.c.get("/api/pool").json()["results"][0]
        self.assertNotIn("#", o["cloud_ref"])
        o = self.c.get("/api/pool?skip_default=true").json()["results"][0]
        self.assertNotIn("lb_algorithm", o)
        self.assertEqual(o["description"], "d")

    def test_cloud_filters(self):
        cloud = self.c.create("cloud", {"name": "c2", "vtype": "CLOUD_NONE"})
        self.c.create("pool", {"name": "in-c2", "cloud_ref": cloud["url"]})
        self.c.create("pool", {"name": "in-default"})
        for q in ("cloud_ref.name=c2", "cloud_ref.uuid=" + cloud["uuid"],
                  "cloud_uuid=" + cloud["uuid"]):
            r = self.c.get("/api/pool?" + q).json()
            self.assertEqual([o["name"] for o in r["results"]], ["in-c2"], q)
        # AKO's cache-fill query shape
        r = self.c.get("/api/pool/?&include_name=true&cloud_ref.name="
                       "Default-Cloud&created_by=&page_size=100").json()
        self.assertEqual(r["count"], 0)
        r = self.c.get("/api/pool/?&include_name=true&cloud_ref.name="
                       "Default-Cloud&page_size=100").json()
        self.assertEqual([o["name"] for o in r["results"]], ["in-default"])
        self.assertEqual(path_of(r["results"][0]["cloud_ref"]),
                         "/api/cloud/" + self.c.get(
                             "/api/cloud?name=Default-Cloud").json()[
                                 "results"][0]["uuid"])


class CollectionTestHTTPS(CollectionTest):
    """Over HTTPS: `next` links keep the scheme and port."""
    https = True
    scheme = "https"


if __name__ == "__main__":
    main()
