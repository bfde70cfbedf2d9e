#!/usr/bin/python3
"""Raw HTTP behaviour of kubefake: discovery, CRUD, conflicts, status
subresources, patches, paging, watch (bookmarks, 410, timeouts), auth,
RBAC and its log, faults, drop and restart."""

import json
import os
import shutil
import socket
import ssl
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import KubeFake  # noqa: E402

VS = "/apis/networking.istio.io/v1/namespaces/%s/virtualservices"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/%s/leases"
SVC = "/api/v1/namespaces/%s/services"
CM = "/api/v1/namespaces/%s/configmaps"


def vs(name, host="a.example.com", labels=None, **extra):
    o = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": name}, "spec": {"hosts": [host]}}
    if labels:
        o["metadata"]["labels"] = labels
    o.update(extra)
    return o


class Shared(unittest.TestCase):
    """Tests sharing one server; each uses its own namespace."""

    @classmethod
    def setUpClass(cls):
        cls.kf = KubeFake("--token", "admintoken").start()

    @classmethod
    def tearDownClass(cls):
        cls.kf.cleanup()

    def req(self, method, path, body=None, **kw):
        return self.kf.request(method, path, body, **kw)[:2]

    def ns(self, name):
        st, _ = self.req("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name}})
        self.assertEqual(st, 201)
        return name

    # ---- discovery

    def test_discovery(self):
        st, v = self.req("GET", "/version")
        self.assertEqual((st, v["major"], v["minor"]), (200, "1", "32"))
        st, api = self.req("GET", "/api")
        self.assertEqual((api["kind"], api["versions"]),
                         ("APIVersions", ["v1"]))
        st, apis = self.req("GET", "/apis")
        groups = {g["name"]: g for g in apis["groups"]}
        self.assertEqual(apis["kind"], "APIGroupList")
        istio = groups["networking.istio.io"]
        self.assertEqual([v["version"] for v in istio["versions"]],
                         ["v1", "v1beta1", "v1alpha3"])
        self.assertEqual(istio["preferredVersion"]["groupVersion"],
                         "networking.istio.io/v1")
        for g in ("discovery.k8s.io", "events.k8s.io", "coordination.k8s.io",
                  "apiextensions.k8s.io", "rbac.authorization.k8s.io"):
            self.assertIn(g, groups)
        st, core = self.req("GET", "/api/v1")
        names = {r["name"]: r for r in core["resources"]}
        for r in ("services", "services/status", "endpoints", "pods",
                  "secrets", "namespaces", "events"):
            self.assertIn(r, names)
        self.assertTrue(names["services"]["namespaced"])
        self.assertFalse(names["namespaces"]["namespaced"])
        self.assertIn("watch", names["services"]["verbs"])
        for v in ("v1", "v1beta1", "v1alpha3"):
            st, rl = self.req("GET", "/apis/networking.istio.io/" + v)
            self.assertEqual(st, 200)
            got = {r["name"]: r["kind"] for r in rl["resources"]}
            self.assertEqual(got["gateways"], "Gateway")
            self.assertEqual(got["virtualservices/status"], "VirtualService")
            self.assertIn("serviceentries", got)
            self.assertIn("destinationrules", got)
        st, rl = self.req("GET", "/apis/coordination.k8s.io/v1")
        self.assertEqual(rl["resources"][0]["name"], "leases")
        st, body = self.req("GET", "/apis/nope.example.com/v1")
        self.assertEqual((st, body["reason"]), (404, "NotFound"))

    def test_crd_created_through_api_is_served(self):
        crd = {"apiVersion": "apiextensions.k8s.io/v1",
               "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com"},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"plural": "widgets", "singular": "widget",
                                  "kind": "Widget"},
                        "versions": [{"name": "v1", "served": True,
                                      "storage": True},
                                     {"name": "v2", "served": False,
                                      "storage": False}]}}
        st, out = self.req("POST", "/apis/apiextensions.k8s.io/v1/"
                           "customresourcedefinitions", crd)
        self.assertEqual(st, 201, out)
        st, apis = self.req("GET", "/apis")
        groups = {g["name"]: g for g in apis["groups"]}
        self.assertEqual([v["version"] for v in
                          groups["example.com"]["versions"]], ["v1"])
        ns = self.ns("crd")
        st, w = self.req("POST", "/apis/example.com/v1/namespaces/crd/widgets",
                         {"apiVersion": "example.com/v1", "kind": "Widget",
                          "metadata": {"name": "w1"}, "spec": {"a": 1}})
        self.assertEqual((st, w["metadata"]["generation"]), (201, 1))
        self.assertEqual(self.req("GET", "/apis/example.com/v2/namespaces/"
                                  "crd/widgets")[0], 404)
        # serve v2 as well: discovery follows the CRD
        crd = self.req("GET", "/apis/apiextensions.k8s.io/v1/"
                       "customresourcedefinitions/widgets.example.com")[1]
        crd["spec"]["versions"][1]["served"] = True
        st, _ = self.req("PUT", "/apis/apiextensions.k8s.io/v1/"
                         "customresourcedefinitions/widgets.example.com", crd)
        self.assertEqual(st, 200)
        st, lst = self.req("GET", "/apis/example.com/v2/namespaces/%s/widgets"
                           % ns)
        self.assertEqual((st, lst["kind"], lst["items"][0]["apiVersion"]),
                         (200, "WidgetList", "example.com/v2"))

    # ---- CRUD

    def test_crud_conflict_delete(self):
        ns = self.ns("crud")
        st, o = self.req("POST", VS % ns, vs("r1"))
        self.assertEqual(st, 201)
        m = o["metadata"]
        self.assertTrue(m["uid"] and m["creationTimestamp"])
        self.assertEqual((m["generation"], m["namespace"]), (1, ns))
        rv1 = m["resourceVersion"]
        self.assertTrue(rv1.isdigit())
        st, e = self.req("POST", VS % ns, vs("r1"))
        self.assertEqual((st, e["reason"], e["message"]), (
            409, "AlreadyExists",
            'virtualservices.networking.istio.io "r1" already exists'))
        self.assertEqual(e["details"], {"name": "r1", "kind":
                                        "virtualservices",
                                        "group": "networking.istio.io"})
        # update with the current RV bumps RV and generation
        o["spec"]["hosts"] = ["b.example.com"]
        st, o2 = self.req("PUT", VS % ns + "/r1", o)
        self.assertEqual(st, 200)
        self.assertEqual(o2["metadata"]["generation"], 2)
        self.assertGreater(int(o2["metadata"]["resourceVersion"]), int(rv1))
        # stale RV -> 409 Conflict with the real message
        st, e = self.req("PUT", VS % ns + "/r1", o)
        self.assertEqual((st, e["kind"], e["status"], e["reason"], e["code"]),
                         (409, "Status", "Failure", "Conflict", 409))
        self.assertEqual(e["message"], 'Operation cannot be fulfilled on '
                         'virtualservices.networking.istio.io "r1": the object '
                         'has been modified; please apply your changes to the '
                         'latest version and try again')
        # a no-op update keeps the RV
        st, o3 = self.req("PUT", VS % ns + "/r1", o2)
        self.assertEqual(o3["metadata"]["resourceVersion"],
                         o2["metadata"]["resourceVersion"])
        # reading through another version rewrites apiVersion only
        st, old = self.req("GET", "/apis/networking.istio.io/v1alpha3/"
                           "namespaces/%s/virtualservices/r1" % ns)
        self.assertEqual((old["apiVersion"], old["spec"]["hosts"]),
                         ("networking.istio.io/v1alpha3", ["b.example.com"]))
        st, d = self.req("DELETE", VS % ns + "/r1",
                         {"propagationPolicy": "Background"})
        self.assertEqual((st, d["metadata"]["name"]), (200, "r1"))
        st, e = self.req("GET", VS % ns + "/r1")
        self.assertEqual((st, e["reason"], e["message"]), (
            404, "NotFound",
            'virtualservices.networking.istio.io "r1" not found'))
        st, e = self.req("GET", SVC % ns + "/none")
        self.assertEqual(e["message"], 'services "none" not found')
        st, e = self.req("POST", VS % "nowhere", vs("x"))
        self.assertEqual((st, e["message"]),
                         (404, 'namespaces "nowhere" not found'))
        st, e = self.req("POST", VS % ns, vs("Bad_Name"))
        self.assertEqual((st, e["reason"]), (422, "Invalid"))
        self.assertTrue(e["message"].startswith(
            'VirtualService.networking.istio.io "Bad_Name" is invalid: '
            'metadata.name: Invalid value: "Bad_Name"'), e["message"])
        st, e = self.req("POST", VS % ns, "{not json")
        self.assertEqual((st, e["reason"]), (400, "BadRequest"))

    def test_lease_get_post_put(self):
        ns = self.ns("lease")
        st, e = self.req("GET", LEASES % ns + "/amc")
        self.assertEqual((st, e["message"]),
                         (404, 'leases.coordination.k8s.io "amc" not found'))
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "amc", "namespace": ns},
                 "spec": {"holderIdentity": "pod-a",
                          "leaseDurationSeconds": 15,
                          "acquireTime": "2026-01-02T15:04:05.000000Z",
                          "renewTime": "2026-01-02T15:04:05.000000Z",
                          "leaseTransitions": 0}}
        st, got = self.req("POST", LEASES % ns, lease)
        self.assertEqual(st, 201)
        st, e = self.req("POST", LEASES % ns, lease)
        self.assertEqual((st, e["reason"]), (409, "AlreadyExists"))
        got["spec"]["renewTime"] = "2026-01-02T15:04:07.000000Z"
        st, renewed = self.req("PUT", LEASES % ns + "/amc", got)
        self.assertEqual(st, 200)
        self.assertEqual(renewed["spec"]["renewTime"],
                         "2026-01-02T15:04:07.000000Z")
        got["spec"]["holderIdentity"] = "pod-b"   # the loser of a race
        st, e = self.req("PUT", LEASES % ns + "/amc", got)
        self.assertEqual((st, e["reason"]), (409, "Conflict"))
        self.assertIn('leases.coordination.k8s.io "amc": the object has been '
                      'modified', e["message"])
        st, cur = self.req("GET", LEASES % ns + "/amc")
        self.assertEqual(cur["spec"]["holderIdentity"], "pod-a")

    def test_builtin_kinds(self):
        ns = self.ns("kinds")
        cases = [
            ("/api/v1/namespaces/%s/endpoints", "Endpoints", "EndpointsList",
             {"subsets": [{"addresses": [{"ip": "10.1.0.1"}]}]}),
            ("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices",
             "EndpointSlice", "EndpointSliceList",
             {"addressType": "IPv4", "endpoints": []}),
            ("/api/v1/namespaces/%s/pods", "Pod", "PodList",
             {"spec": {"containers": [{"name": "c", "image": "i"}]}}),
            ("/api/v1/namespaces/%s/events", "Event", "EventList",
             {"reason": "Synced", "message": "ok"}),
            ("/api/v1/namespaces/%s/secrets", "Secret", "SecretList",
             {"type": "kubernetes.io/tls",
              "stringData": {"tls.crt": "CERT"}}),
            ("/apis/networking.istio.io/v1beta1/namespaces/%s/gateways",
             "Gateway", "GatewayList", {"spec": {"servers": []}}),
            ("/apis/networking.istio.io/v1alpha3/namespaces/%s/"
             "destinationrules", "DestinationRule", "DestinationRuleList",
             {"spec": {"host": "web"}}),
            ("/apis/networking.istio.io/v1/namespaces/%s/serviceentries",
             "ServiceEntry", "ServiceEntryList", {"spec": {"hosts": ["x"]}}),
        ]
        for path, kind, list_kind, extra in cases:
            body = dict(extra, metadata={"name": "k1"})
            st, o = self.req("POST", path % ns, body)
            self.assertEqual((st, o["kind"]), (201, kind), (path, o))
            st, lst = self.req("GET", path % ns)
            self.assertEqual((lst["kind"], len(lst["items"])),
                             (list_kind, 1), path)
        st, sec = self.req("GET", "/api/v1/namespaces/%s/secrets/k1" % ns)
        self.assertEqual(sec["data"], {"tls.crt": "Q0VSVA=="})
        self.assertNotIn("stringData", sec)
        # events.k8s.io and core events share one store, two views
        st, lst = self.req("GET", "/api/v1/namespaces/%s/events" % ns)
        self.assertEqual(lst["items"][0]["message"], "ok")
        st, e = self.req("POST", "/apis/events.k8s.io/v1/namespaces/%s/"
                         "events" % ns, {"metadata": {"name": "k2"},
                                         "note": "new", "regarding": {
                                             "kind": "Gateway", "name": "g"}})
        self.assertEqual(st, 201, e)
        st, core = self.req("GET", "/api/v1/namespaces/%s/events/k2" % ns)
        self.assertEqual((core["kind"], core["apiVersion"], core["message"],
                          core["involvedObject"]["name"]),
                         ("Event", "v1", "new", "g"))
        self.assertNotIn("note", core)
        st, new = self.req("GET", "/apis/events.k8s.io/v1/namespaces/%s/"
                           "events/k2" % ns)
        self.assertEqual((new["note"], new["regarding"]["kind"]),
                         ("new", "Gateway"))
        # dryRun writes nothing
        st, o = self.req("POST", CM % ns + "?dryRun=All",
                         {"metadata": {"name": "dry"}})
        self.assertEqual(st, 201)
        self.assertEqual(self.req("GET", CM % ns + "/dry")[0], 404)
        # deleting the namespace deletes its objects
        st, _ = self.req("DELETE", "/api/v1/namespaces/" + ns)
        self.assertEqual(st, 200)
        st, lst = self.req("GET", "/api/v1/pods?fieldSelector="
                           "metadata.namespace%3D" + ns)
        self.assertEqual(lst["items"], [])

    def test_finalizers_delay_delete(self):
        ns = self.ns("fin")
        st, o = self.req("POST", CM % ns, {"metadata": {
            "name": "f", "finalizers": ["example.com/hold"]}})
        rv = o["metadata"]["resourceVersion"]
        with self.kf.watch(CM % ns + "?watch=1&fieldSelector=metadata.name"
                           "%3Df&resourceVersion=" + rv) as w:
            st, d = self.req("DELETE", CM % ns + "/f")
            self.assertEqual(st, 200)
            self.assertIn("deletionTimestamp", d["metadata"])
            ev = w.next_event()
            self.assertEqual(ev["type"], "MODIFIED")
            st, g = self.req("GET", CM % ns + "/f")
            self.assertEqual(st, 200)
            st, _ = self.req("PATCH", CM % ns + "/f",
                             {"metadata": {"finalizers": None}},
                             ctype="application/merge-patch+json")
            self.assertEqual(st, 200)
            self.assertEqual(w.next_event()["type"], "DELETED")
        self.assertEqual(self.req("GET", CM % ns + "/f")[0], 404)
        # watching one object by its path
        st, o = self.req("POST", CM % ns, {"metadata": {"name": "one"}})
        self.req("POST", CM % ns, {"metadata": {"name": "other"}})
        with self.kf.watch(CM % ns + "/one?watch=1&resourceVersion=" +
                           o["metadata"]["resourceVersion"]) as w:
            self.req("PATCH", CM % ns + "/other", {"data": {"a": "1"}},
                     ctype="application/merge-patch+json")
            self.req("PATCH", CM % ns + "/one", {"data": {"a": "1"}},
                     ctype="application/merge-patch+json")
            ev = w.next_event()
            self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]),
                             ("MODIFIED", "one"))
        # delete preconditions
        st, o = self.req("POST", CM % ns, {"metadata": {"name": "p"}})
        st, e = self.req("DELETE", CM % ns + "/p", {
            "preconditions": {"resourceVersion": "1"}})
        self.assertEqual((st, e["reason"]), (409, "Conflict"))

    # ---- status subresource and patches

    def test_status_subresource_crd(self):
        ns = self.ns("status")
        st, o = self.req("POST", VS % ns, vs("s1", status={"x": 1}))
        self.assertNotIn("status", o)   # create ignores status
        gen = o["metadata"]["generation"]
        st, p = self.req(
            "PATCH", VS % ns + "/s1/status",
            {"status": {"conditions": [{"type": "Reconciled",
                                        "status": "True"}]},
             "spec": {"hosts": ["ignored.example.com"]},
             "metadata": {"labels": {"ignored": "yes"}}},
            ctype="application/merge-patch+json")
        self.assertEqual(st, 200, p)
        self.assertEqual(p["status"]["conditions"][0]["type"], "Reconciled")
        self.assertEqual(p["spec"]["hosts"], ["a.example.com"])
        self.assertNotIn("labels", p["metadata"])
        self.assertEqual(p["metadata"]["generation"], gen)
        # main resource writes ignore status
        p["status"] = {"conditions": []}
        p["spec"]["hosts"] = ["c.example.com"]
        st, u = self.req("PUT", VS % ns + "/s1", p)
        self.assertEqual(u["status"]["conditions"][0]["type"], "Reconciled")
        self.assertEqual(u["metadata"]["generation"], gen + 1)
        st, g = self.req("GET", VS % ns + "/s1/status")
        self.assertEqual((st, g["spec"]["hosts"]), (200, ["c.example.com"]))
        # status write with a stale RV -> 409
        st, e = self.req("PUT", VS % ns + "/s1/status", p)
        self.assertEqual((st, e["reason"]), (409, "Conflict"))
        # json patch on status
        st, j = self.req("PATCH", VS % ns + "/s1/status",
                         [{"op": "add", "path": "/status/observedGeneration",
                           "value": 2}], ctype="application/json-patch+json")
        self.assertEqual((st, j["status"]["observedGeneration"]), (200, 2))
        # strategic merge patch is for built-in types only
        st, e = self.req("PATCH", VS % ns + "/s1", {"spec": {}},
                         ctype="application/strategic-merge-patch+json")
        self.assertEqual((st, e["reason"]), (415, "UnsupportedMediaType"))
        # apply patch (server-side apply, approximated)
        st, a = self.req("PATCH", VS % ns + "/s2?fieldManager=amc&force=true",
                         "apiVersion: networking.istio.io/v1\n"
                         "kind: VirtualService\nmetadata:\n  name: s2\n"
                         "spec:\n  hosts: [d.example.com]\n",
                         ctype="application/apply-patch+yaml")
        self.assertEqual((st, a["spec"]["hosts"]), (201, ["d.example.com"]))

    def test_service_status_and_patches(self):
        ns = self.ns("svcstatus")
        st, s = self.req("POST", SVC % ns, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "labels": {"a": "1"}},
            "spec": {"ports": [{"name": "http", "port": 80},
                               {"name": "https", "port": 443}]}})
        self.assertEqual(st, 201)
        self.assertTrue(s["spec"]["clusterIP"].startswith("10.96."))
        st, p = self.req("PATCH", SVC % ns + "/web/status",
                         {"status": {"loadBalancer": {"ingress": [
                             {"ip": "10.0.0.10"}]}}},
                         ctype="application/merge-patch+json")
        self.assertEqual(p["status"]["loadBalancer"]["ingress"],
                         [{"ip": "10.0.0.10"}])
        # merge patch with a stale resourceVersion -> 409
        st, e = self.req("PATCH", SVC % ns + "/web",
                         {"metadata": {"resourceVersion":
                                       s["metadata"]["resourceVersion"]}},
                         ctype="application/merge-patch+json")
        self.assertEqual((st, e["reason"]), (409, "Conflict"))
        # strategic merge patch: merge list items by key, delete one
        st, p = self.req("PATCH", SVC % ns + "/web", {
            "metadata": {"labels": {"a": None, "b": "2"}},
            "spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 81}],
                     "ports": [{"port": 81, "name": "alt"},
                               {"port": 80, "$patch": "delete"},
                               {"port": 443, "targetPort": 8443}]}},
            ctype="application/strategic-merge-patch+json")
        self.assertEqual(st, 200, p)
        self.assertEqual(p["metadata"]["labels"], {"b": "2"})
        self.assertEqual(p["spec"]["ports"], [
            {"name": "https", "port": 443, "targetPort": 8443},
            {"port": 81, "name": "alt"}])
        self.assertEqual(p["status"]["loadBalancer"]["ingress"],
                         [{"ip": "10.0.0.10"}])   # main writes keep status
        st, e = self.req("PATCH", SVC % ns + "/web", "{}",
                         ctype="application/x-unknown")
        self.assertEqual((st, e["reason"]), (415, "UnsupportedMediaType"))

    # ---- lists

    def test_pagination_and_continue_expiry(self):
        ns = self.ns("paging")
        for i in range(7):
            self.req("POST", CM % ns, {"metadata": {"name": "c%d" % i}})
        st, p1 = self.req("GET", CM % ns + "?limit=3")
        self.assertEqual([i["metadata"]["name"] for i in p1["items"]],
                         ["c0", "c1", "c2"])
        self.assertEqual(p1["kind"], "ConfigMapList")
        self.assertEqual(p1["metadata"]["remainingItemCount"], 4)
        rv = p1["metadata"]["resourceVersion"]
        self.req("POST", CM % ns, {"metadata": {"name": "c9"}})
        st, p2 = self.req("GET", CM % ns + "?limit=3&continue=" +
                          p1["metadata"]["continue"])
        self.assertEqual([i["metadata"]["name"] for i in p2["items"]],
                         ["c3", "c4", "c5"])
        self.assertEqual(p2["metadata"]["resourceVersion"], rv)
        st, p3 = self.req("GET", CM % ns + "?limit=3&continue=" +
                          p2["metadata"]["continue"])
        self.assertEqual([i["metadata"]["name"] for i in p3["items"]],
                         ["c6"])   # snapshot: c9 is not there
        self.assertNotIn("continue", p3["metadata"])
        # expiry on request
        st, p1 = self.req("GET", CM % ns + "?limit=2")
        self.kf.control("POST", "expire-continue")
        st, e = self.req("GET", CM % ns + "?limit=2&continue=" +
                         p1["metadata"]["continue"])
        self.assertEqual((st, e["reason"], e["code"]), (410, "Expired", 410))
        self.assertIn("The provided continue parameter is too old",
                      e["message"])
        # expiry by TTL
        self.kf.control("POST", "config", {"continue_ttl": 0.2})
        try:
            st, p1 = self.req("GET", CM % ns + "?limit=2")
            time.sleep(0.3)
            st, e = self.req("GET", CM % ns + "?limit=2&continue=" +
                             p1["metadata"]["continue"])
            self.assertEqual(st, 410)
        finally:
            self.kf.control("POST", "config", {"continue_ttl": 300})
        st, e = self.req("GET", CM % ns + "?continue=garbage")
        self.assertEqual((st, e["reason"]), (400, "BadRequest"))

    def test_selectors(self):
        ns = self.ns("sel")
        for name, labels in (("a", {"app": "x", "tier": "fe"}),
                             ("b", {"app": "y"}), ("c", {})):
            self.req("POST", VS % ns, vs(name, labels=labels))

        def names(q):
            st, lst = self.req("GET", VS % ns + "?" + q)
            self.assertEqual(st, 200, lst)
            return [i["metadata"]["name"] for i in lst["items"]]

        self.assertEqual(names("labelSelector=app%3Dx"), ["a"])
        self.assertEqual(names("labelSelector=app%3D%3Dy"), ["b"])
        self.assertEqual(names("labelSelector=app%21%3Dx"), ["b", "c"])
        self.assertEqual(names("labelSelector=app+in+(x,y)"), ["a", "b"])
        self.assertEqual(names("labelSelector=app+notin+(x)"), ["b", "c"])
        self.assertEqual(names("labelSelector=tier"), ["a"])
        self.assertEqual(names("labelSelector=%21tier"), ["b", "c"])
        self.assertEqual(names("labelSelector=app,tier%3Dfe"), ["a"])
        self.assertEqual(names("fieldSelector=metadata.name%3Db"), ["b"])
        self.assertEqual(names("fieldSelector=metadata.namespace%3D" + ns),
                         ["a", "b", "c"])
        st, lst = self.req("GET", "/apis/networking.istio.io/v1/"
                           "virtualservices?fieldSelector=metadata.namespace"
                           "%3D" + ns)
        self.assertEqual(len(lst["items"]), 3)

    # ---- watch

    def test_watch_events_bookmarks_timeout(self):
        ns = self.ns("watch")
        st, lst = self.req("GET", VS % ns)
        rv = lst["metadata"]["resourceVersion"]
        with self.kf.watch(VS % ns + "?watch=1&allowWatchBookmarks=true"
                           "&resourceVersion=" + rv) as w:
            self.assertEqual(w.status, 200)
            self.req("POST", VS % ns, vs("w1"))
            ev = w.next_event()
            self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]),
                             ("ADDED", "w1"))
            self.assertEqual(ev["object"]["apiVersion"],
                             "networking.istio.io/v1")
            o = ev["object"]
            o["spec"]["hosts"] = ["z.example.com"]
            st, o = self.req("PUT", VS % ns + "/w1", o)
            ev = w.next_event()
            while ev["type"] == "BOOKMARK":
                ev = w.next_event()
            self.assertEqual(ev["type"], "MODIFIED")
            self.assertEqual(ev["object"]["metadata"]["resourceVersion"],
                             o["metadata"]["resourceVersion"])
            self.req("DELETE", VS % ns + "/w1")
            ev = w.next_event()
            while ev["type"] == "BOOKMARK":
                ev = w.next_event()
            self.assertEqual(ev["type"], "DELETED")
            self.kf.control("POST", "bookmark")
            ev = w.next_event()
            self.assertEqual(ev["type"], "BOOKMARK")
            self.assertEqual(ev["object"]["kind"], "VirtualService")
            self.assertEqual(set(ev["object"]["metadata"]), {
                "resourceVersion"})
            self.assertGreaterEqual(
                int(ev["object"]["metadata"]["resourceVersion"]),
                int(o["metadata"]["resourceVersion"]) + 1)
        # periodic bookmarks (interval 1 s by default)
        with self.kf.watch(VS % ns + "?watch=1&allowWatchBookmarks=true"
                           "&resourceVersion=" + rv) as w:
            ev = w.next_event()
            while ev["type"] != "BOOKMARK":
                ev = w.next_event()
            self.assertEqual(ev["type"], "BOOKMARK")
        # timeoutSeconds: a clean end of stream (final chunk)
        rv = self.req("GET", VS % ns)[1]["metadata"]["resourceVersion"]
        t0 = time.time()
        with self.kf.watch(VS % ns + "?watch=1&timeoutSeconds=1"
                           "&resourceVersion=" + rv) as w:
            self.assertIsNone(w.next_event(timeout=5))
        self.assertLess(time.time() - t0, 4)
        # no resourceVersion: synthetic ADDED for current objects
        self.req("POST", VS % ns, vs("w2"))
        with self.kf.watch(VS % ns + "?watch=true&timeoutSeconds=1") as w:
            ev = w.next_event()
            self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]),
                             ("ADDED", "w2"))
            self.assertIsNone(w.next_event(timeout=5))

    def test_watch_label_selector_transitions(self):
        ns = self.ns("watchsel")
        st, o = self.req("POST", VS % ns, vs("t1", labels={"app": "no"}))
        rv = o["metadata"]["resourceVersion"]
        with self.kf.watch(VS % ns + "?watch=1&labelSelector=app%3Dyes"
                           "&resourceVersion=" + rv) as w:
            o["metadata"]["labels"]["app"] = "yes"
            st, o = self.req("PUT", VS % ns + "/t1", o)
            self.assertEqual(w.next_event()["type"], "ADDED")
            o["metadata"]["labels"]["app"] = "no"
            st, o = self.req("PUT", VS % ns + "/t1", o)
            self.assertEqual(w.next_event()["type"], "DELETED")

    def test_watch_gone_both_forms_and_initial_events(self):
        ns = self.ns("gone")
        st, o = self.req("POST", VS % ns, vs("g1"))
        old = o["metadata"]["resourceVersion"]
        self.req("POST", VS % ns, vs("g2"))
        self.kf.control("POST", "compact")
        # form 2 (default): 200, then an ERROR event with a 410 Status
        with self.kf.watch(VS % ns + "?watch=1&resourceVersion=" + old) as w:
            self.assertEqual(w.status, 200)
            ev = w.next_event()
            self.assertEqual(ev["type"], "ERROR")
            st = ev["object"]
            self.assertEqual((st["kind"], st["code"], st["reason"]),
                             ("Status", 410, "Expired"))
            self.assertTrue(st["message"].startswith(
                "too old resource version: %s" % old), st["message"])
            self.assertIsNone(w.next_event())
        # injected mid-stream errors end open watches
        st, lst = self.req("GET", VS % ns)
        with self.kf.watch(VS % ns + "?watch=1&resourceVersion=" +
                           lst["metadata"]["resourceVersion"]) as w:
            # (the watch is registered before its response headers are sent)
            self.kf.control("POST", "watch-error", {
                "code": 500, "message": "etcd hiccup", "path": "/gone/"})
            ev = w.next_event()
            self.assertEqual((ev["type"], ev["object"]["code"],
                              ev["object"]["reason"],
                              ev["object"]["message"]),
                             ("ERROR", 500, "InternalError", "etcd hiccup"))
            self.assertIsNone(w.next_event())
        # form 1 per request, then for everyone via the control API
        with self.kf.watch(VS % ns + "?watch=1&fakeGone=http&"
                           "resourceVersion=" + old) as w:
            self.assertEqual((w.status, w.body["code"], w.body["reason"]),
                             (410, 410, "Expired"))
        self.kf.control("POST", "config", {"gone_mode": "http"})
        try:
            with self.kf.watch(VS % ns + "?watch=1&resourceVersion=" +
                               old) as w:
                self.assertEqual(w.status, 410)
        finally:
            self.kf.control("POST", "config", {"gone_mode": "event"})
        # a list RV after the compaction still watches fine
        st, lst = self.req("GET", VS % ns)
        with self.kf.watch(VS % ns + "?watch=1&timeoutSeconds=1&"
                           "resourceVersion=" +
                           lst["metadata"]["resourceVersion"]) as w:
            self.assertEqual(w.status, 200)
            self.assertIsNone(w.next_event())
        # streaming lists are rejected so clients fall back to list+watch
        st, e = self.req("GET", VS % ns + "?watch=1&sendInitialEvents=true&"
                         "resourceVersionMatch=NotOlderThan&"
                         "allowWatchBookmarks=true")
        self.assertEqual((st, e["reason"]), (422, "Invalid"))

    # ---- faults and logs

    def test_faults_and_request_log(self):
        ns = self.ns("faults")
        self.kf.control("POST", "faults", {"method": "GET",
                                           "path": "/namespaces/faults/",
                                           "status": 503, "count": 1,
                                           "retryAfter": 1})
        st, e, h = self.kf.request("GET", CM % ns)
        self.assertEqual((st, e["reason"], h.get("Retry-After")),
                         (503, "ServiceUnavailable", "1"))
        self.assertEqual(e["details"], {"retryAfterSeconds": 1})
        self.assertEqual(self.req("GET", CM % ns)[0], 200)
        self.kf.control("POST", "faults", {"path": "/namespaces/faults/",
                                           "action": "drop"})
        with self.assertRaises(OSError):   # reset, EOF, TLS EOF
            self.req("GET", CM % ns)
        self.kf.control("POST", "faults", {"path": "/namespaces/faults/",
                                           "delay": 0.3})
        t0 = time.time()
        self.assertEqual(self.req("GET", CM % ns)[0], 200)
        self.assertGreaterEqual(time.time() - t0, 0.3)
        reqs = self.kf.control("GET", "requests")["requests"]
        mine = [r for r in reqs if r["path"] == CM % ns]
        self.assertEqual([r["status"] for r in mine], [503, 200, -1, 200])
        self.assertEqual(mine[0]["user"], "admin")
        self.assertEqual(mine[0]["method"], "GET")


class Versions(unittest.TestCase):
    def test_istio_versions_option(self):
        with KubeFake("--istio-versions", "v1alpha3,v1beta1") as kf:
            st, apis, _ = kf.request("GET", "/apis")
            g = [x for x in apis["groups"]
                 if x["name"] == "networking.istio.io"][0]
            self.assertEqual([v["version"] for v in g["versions"]],
                             ["v1beta1", "v1alpha3"])
            self.assertEqual(g["preferredVersion"]["version"], "v1beta1")
            self.assertEqual(kf.request("GET", "/apis/networking.istio.io/"
                                        "v1")[0], 404)
            self.assertEqual(kf.request("GET", VS.replace("/v1/", "/v1beta1/")
                                        % "default")[0], 200)


class Options(unittest.TestCase):
    def test_watch_history_and_kubeconfig_out(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        kc = os.path.join(tmp, "kc.yaml")
        with KubeFake("--watch-history", "2", "--kubeconfig-out", kc,
                      "--token", "tk") as kf:
            info = kf.info
            self.assertEqual(info["kubeconfig"], kc)
            self.assertEqual(info["pid"], kf.proc.pid)
            for k in ("ca", "client_cert", "client_key"):
                self.assertTrue(os.path.isabs(info[k]) and
                                os.path.exists(info[k]), k)
            with open(kc) as f:
                cfg = json.load(f)
            self.assertEqual(cfg["current-context"], "kubefake")
            self.assertEqual(cfg["clusters"][0]["cluster"]["server"],
                             "https://127.0.0.1:%d" % kf.port)
            users = {u["name"]: u["user"] for u in cfg["users"]}
            self.assertEqual(users["token"], {"token": "tk"})
            rvs = []
            for i in range(3):
                st, o, _ = kf.request("POST", CM % "default",
                                      {"metadata": {"name": "h%d" % i}})
                rvs.append(int(o["metadata"]["resourceVersion"]))
            # 2 events kept: changes after rvs[0] are all known, not before
            with kf.watch(CM % "default" + "?watch=1&resourceVersion=%d" %
                          rvs[0]) as w:
                self.assertEqual(w.next_event()["object"]["metadata"]["name"],
                                 "h1")
            with kf.watch(CM % "default" + "?watch=1&resourceVersion=%d" %
                          (rvs[0] - 1)) as w:
                ev = w.next_event()
                self.assertEqual((ev["type"], ev["object"]["code"]),
                                 ("ERROR", 410))


    def test_server_names(self):
        """--server-names: the serving certificate names only those; the
        default comes back on a restart without the option."""
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        state = os.path.join(tmp, "state")

        def handshake(kf, name):
            ctx = ssl.create_default_context(cafile=kf.info["ca"])
            with socket.create_connection(("127.0.0.1", kf.port), 5) as s:
                with ctx.wrap_socket(s, server_hostname=name):
                    return True

        with KubeFake("--server-names", "kube.example,10.9.9.9",
                      state_dir=state) as kf:
            self.assertTrue(handshake(kf, "kube.example"))
            self.assertTrue(handshake(kf, "10.9.9.9"))
            for other in ("127.0.0.1", "localhost", "x.kube.example"):
                with self.assertRaises(ssl.SSLCertVerificationError):
                    handshake(kf, other)
            self.assertEqual(kf.request("GET", "/version")[0], 200)
        with KubeFake(state_dir=state) as kf:
            self.assertTrue(handshake(kf, "127.0.0.1"))
            with self.assertRaises(ssl.SSLCertVerificationError):
                handshake(kf, "kube.example")

    def test_no_endpointslices(self):
        with KubeFake("--no-endpointslices") as kf:
            st, apis, _ = kf.request("GET", "/apis")
            self.assertEqual(st, 200)
            names = [g["name"] for g in apis["groups"]]
            self.assertNotIn("discovery.k8s.io", names)
            self.assertIn("networking.istio.io", names)
            self.assertEqual(kf.request("GET", "/apis/discovery.k8s.io/v1")[0],
                             404)
            self.assertEqual(kf.request(
                "GET", "/apis/discovery.k8s.io/v1/endpointslices")[0], 404)
            self.assertEqual(kf.request(
                "GET", "/api/v1/namespaces/default/endpoints")[0], 200)


FIXTURES = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: fx}
spec:
  ports: [{port: 80}]
status:
  loadBalancer:
    ingress: [{ip: 10.0.0.9}]
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: gw, namespace: fx}
spec:
  selector: {istio: ingressgateway}
"""


class Load(unittest.TestCase):
    def test_load_fixtures(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        fx = os.path.join(tmp, "fx.yaml")
        with open(fx, "w") as f:
            f.write(FIXTURES)
        with KubeFake("--load", fx) as kf:
            st, svc, _ = kf.request("GET", SVC % "fx" + "/web")
            self.assertEqual(svc["status"]["loadBalancer"]["ingress"],
                             [{"ip": "10.0.0.9"}])
            st, gw, _ = kf.request("GET", "/apis/networking.istio.io/v1/"
                                   "namespaces/fx/gateways/gw")
            self.assertEqual((st, gw["spec"]["selector"]),
                             (200, {"istio": "ingressgateway"}))
        with open(fx, "a") as f:
            f.write("---\napiVersion: apps/v1\nkind: Deployment\n"
                    "metadata: {name: d}\n")
        kf = KubeFake("--load", fx)
        try:
            with self.assertRaises(RuntimeError) as cm:
                kf.start()
            self.assertIn("fx.yaml: kind Deployment (apiVersion apps/v1) is "
                          "not served", str(cm.exception))
        finally:
            kf.cleanup()


class Auth(unittest.TestCase):
    def test_token_rotation_and_client_certs(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        tf = os.path.join(tmp, "token")
        with open(tf, "w") as f:
            f.write("old-token\n")
        with KubeFake("--token-file", tf) as kf:
            ok = kf.request("GET", "/api/v1/namespaces", token="old-token")
            self.assertEqual(ok[0], 200)
            with open(tf + ".new", "w") as f:
                f.write("new-token\n")
            os.replace(tf + ".new", tf)
            st, e, _ = kf.request("GET", "/api/v1/namespaces",
                                  token="old-token")
            self.assertEqual((st, e), (401, {
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "Unauthorized",
                "reason": "Unauthorized", "code": 401}))
            self.assertEqual(kf.request("GET", "/api/v1/namespaces",
                                        token="new-token")[0], 200)
            self.assertEqual(kf.request("GET", "/api/v1/namespaces",
                                        cert=None)[0], 401)
            # client certificates: admin, and one issued for another user
            self.assertEqual(kf.request("GET", "/api/v1/namespaces")[0], 200)
            c = kf.control("POST", "client-cert",
                           {"user": "bob", "groups": ["devs"]})
            st, _, _ = kf.request("GET", "/api/v1/namespaces",
                                  cert=(c["cert"], c["key"]))
            self.assertEqual(st, 200)
            users = [r["user"] for r in kf.control("GET",
                                                   "requests")["requests"]]
            self.assertEqual(users, ["admin", None, "admin", None, "admin",
                                     "bob"])


RBAC_YAML = """
apiVersion: v1
kind: Namespace
metadata: {name: amc}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: amc, namespace: amc}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: amc}
rules:
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [services/status]
  verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: amc}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: amc}
subjects:
- {kind: ServiceAccount, name: amc, namespace: amc}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: amc-leader, namespace: amc}
rules:
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: amc-leader, namespace: amc}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: amc-leader}
subjects:
- {kind: ServiceAccount, name: amc}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored, namespace: amc}
"""


class Rbac(unittest.TestCase):
    def test_rbac_allow_deny_and_log(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        manifest = os.path.join(tmp, "rbac.yaml")
        with open(manifest, "w") as f:
            f.write(RBAC_YAML)
        satoken = os.path.join(tmp, "sa-token")
        with open(satoken, "w") as f:
            f.write("pod-token\n")
        with KubeFake("--rbac", "--rbac-manifests", manifest, "--token-file",
                      satoken + "=system:serviceaccount:amc:amc") as kf:
            # the mounted-token style file maps to the ServiceAccount
            self.assertEqual(kf.request("GET", "/api/v1/services",
                                        token="pod-token")[0], 200)
            self.assertEqual(kf.request("GET", "/api/v1/pods",
                                        token="pod-token")[0], 403)
            st, tr, _ = kf.request(
                "POST", "/api/v1/namespaces/amc/serviceaccounts/amc/token",
                {"apiVersion": "authentication.k8s.io/v1",
                 "kind": "TokenRequest", "spec": {}})
            self.assertEqual(st, 201, tr)
            tok = tr["status"]["token"]
            kf.request("POST", SVC % "default", {
                "metadata": {"name": "web"}, "spec": {"ports": [
                    {"port": 80}]}})
            kf.control("DELETE", "rbac-log")
            self.assertEqual(kf.request("GET", "/api/v1/services",
                                        token=tok)[0], 200)
            self.assertEqual(kf.request("GET", SVC % "default" + "/web",
                                        token=tok)[0], 200)
            st, e, _ = kf.request("DELETE", SVC % "default" + "/web",
                                  token=tok)
            self.assertEqual((st, e["reason"], e["message"]), (
                403, "Forbidden",
                'services "web" is forbidden: User "system:serviceaccount:'
                'amc:amc" cannot delete resource "services" in API group "" '
                'in the namespace "default"'))
            st, e, _ = kf.request("GET", VS % "default", token=tok)
            self.assertEqual(e["message"],
                             'virtualservices.networking.istio.io is '
                             'forbidden: User "system:serviceaccount:amc:amc" '
                             'cannot list resource "virtualservices" in API '
                             'group "networking.istio.io" in the namespace '
                             '"default"')
            st, e, _ = kf.request("GET", "/api/v1/namespaces", token=tok)
            self.assertTrue(e["message"].endswith("at the cluster scope"))
            # the Role only applies in its namespace
            self.assertEqual(kf.request("GET", LEASES % "default" + "/x",
                                        token=tok)[0], 403)
            self.assertEqual(kf.request("GET", LEASES % "amc" + "/x",
                                        token=tok)[0], 404)
            self.assertEqual(kf.request("PATCH",
                                        SVC % "default" + "/web/status",
                                        {"status": {}}, token=tok,
                                        ctype="application/merge-patch+json"
                                        )[0], 200)
            self.assertEqual(kf.request("GET", "/apis", token=tok)[0], 200)
            log = kf.control("GET", "rbac-log")
            self.assertEqual([(d["nonResourceURL"], d["allowed"])
                              for d in log["decisions"]
                              if "nonResourceURL" in d], [("/apis", True)])
            dec = [(d["verb"], d["resource"], d["subresource"], d["allowed"])
                   for d in log["decisions"] if "nonResourceURL" not in d]
            self.assertEqual(dec, [
                ("list", "services", "", True), ("get", "services", "", True),
                ("delete", "services", "", False),
                ("list", "virtualservices", "", False),
                ("list", "namespaces", "", False),
                ("get", "leases", "", False), ("get", "leases", "", True),
                ("patch", "services", "status", True)])
            grants = {(g["resource"], g["verb"]): g["used"]
                      for g in log["grants"]
                      if g["subject"] == "system:serviceaccount:amc:amc"}
            self.assertEqual(grants, {
                ("services", "get"): 1, ("services", "list"): 1,
                ("services", "watch"): 0, ("services/status", "patch"): 1,
                ("leases", "get"): 1, ("leases", "create"): 0,
                ("leases", "update"): 0})
            # a Role created through the API grants at once
            kf.request("POST", "/apis/rbac.authorization.k8s.io/v1/"
                       "namespaces/default/roles", {
                           "metadata": {"name": "vs-reader"},
                           "rules": [{"apiGroups": ["networking.istio.io"],
                                      "resources": ["virtualservices"],
                                      "verbs": ["list"]}]})
            kf.request("POST", "/apis/rbac.authorization.k8s.io/v1/"
                       "namespaces/default/rolebindings", {
                           "metadata": {"name": "vs-reader"},
                           "roleRef": {"kind": "Role", "name": "vs-reader",
                                       "apiGroup":
                                       "rbac.authorization.k8s.io"},
                           "subjects": [{"kind": "ServiceAccount",
                                         "name": "amc", "namespace": "amc"}]})
            self.assertEqual(kf.request("GET", VS % "default",
                                        token=tok)[0], 200)


class Restart(unittest.TestCase):
    def test_drop_and_restart_keep_state(self):
        kf = KubeFake("--token", "t")
        try:
            kf.start()
            st, o, _ = kf.request("POST", VS % "default", vs("keep"))
            rv = o["metadata"]["resourceVersion"]
            w = kf.watch(VS % "default" + "?watch=1&resourceVersion=" + rv)
            self.assertEqual(kf.control("POST", "drop")["dropped"], 1)
            with self.assertRaises(ConnectionError):
                w.next_event(timeout=5)
            w.close()
            port = kf.port
            kf.restart()
            self.assertEqual(kf.port, port)
            st, got, _ = kf.request("GET", VS % "default" + "/keep")
            self.assertEqual((st, got["metadata"]["resourceVersion"],
                              got["metadata"]["uid"]),
                             (200, rv, o["metadata"]["uid"]))
            o2 = dict(got, spec={"hosts": ["n.example.com"]})
            st, o2, _ = kf.request("PUT", VS % "default" + "/keep", o2)
            self.assertGreater(int(o2["metadata"]["resourceVersion"]),
                               int(rv))
            # watch history survives too: resume from the old RV
            with kf.watch(VS % "default" + "?watch=1&resourceVersion=" +
                          rv) as w:
                ev = w.next_event()
                self.assertEqual((ev["type"],
                                  ev["object"]["spec"]["hosts"]),
                                 ("MODIFIED", ["n.example.com"]))
            self.assertEqual(kf.request("GET", "/api", token="t")[0], 200)
            kf.control("POST", "reset")
            self.assertEqual(kf.request("GET", VS % "default" +
                                        "/keep")[0], 404)
        finally:
            kf.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
