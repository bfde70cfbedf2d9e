#!/usr/bin/python3
"""gen_schema.py: parsing of the swagger description phrases, on a small
synthetic swagger file, and sanity of the committed avi_schema.json."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from avisim_testlib import PYTHON, main  # noqa: E402

SWAGGER = {
    "swagger": "2.0",
    "info": {"version": "22.1.6"},
    "paths": {},
    "definitions": {
        "Thing": {
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "description": "Name."},
                "url": {"type": "string", "readOnly": True},
                "mode": {"type": "string", "default": "M_A",
                         "description": "Mode. Enum options - M_A, M_B, "
                         "M_C. Field introduced in 17.2.9, 18.1.2. Allowed "
                         "in Enterprise edition(Allowed values- M_A)."},
                "port": {"type": "integer", "default": 80,
                         "description": "Allowed values are 1-65535. "
                         "Special values are 0 - Auto, -1 - Never. Unit is "
                         "SEC."},
                "pool_refs": {"type": "array", "items": {"type": "string"},
                              "description": "It is a reference to an "
                              "object of type Pool. Maximum of 5 items "
                              "allowed."},
                "sub": {"$ref": "#/definitions/Sub"},
                "subs": {"type": "array",
                         "items": {"$ref": "#/definitions/Sub"},
                         "description": "Minimum of 1 items required."},
            },
        },
        "Sub": {"required": ["k"], "properties": {
            "k": {"type": "string", "description": "Field introduced in "
                  "20.1.1."},
            "vrf_ref": {"type": "string", "description": " It is a "
                        "reference to an object of type VrfContext."}}},
        "Unused": {"properties": {"x": {"type": "string"}}},
    },
}


class GenSchemaTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="avisim-gen-")
        with open(os.path.join(self.dir, "Thing.json"), "w") as fh:
            json.dump(SWAGGER, fh)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_phrases(self):
        out = os.path.join(self.dir, "out.json")
        subprocess.run([PYTHON, os.path.join(HERE, "gen_schema.py"),
                        self.dir, out], check=True, stdout=subprocess.DEVNULL)
        with open(out) as fh:
            d = json.load(fh)
        self.assertEqual(d["objects"], {"thing": "Thing"})
        self.assertEqual(d["swagger_version"], "22.1.6")
        self.assertEqual(d["models"]["pool"], "Pool")
        self.assertEqual(d["models"]["vrfcontext"], "VrfContext")
        self.assertNotIn("Unused", d["definitions"])  # unreachable
        f = d["definitions"]["Thing"]["fields"]
        self.assertEqual(d["definitions"]["Thing"]["required"], ["name"])
        self.assertEqual(f["url"], {"type": "string", "readonly": True})
        self.assertEqual(f["mode"], {"type": "string", "default": "M_A",
                                     "enum": ["M_A", "M_B", "M_C"],
                                     "introduced": ["17.2.9", "18.1.2"]})
        self.assertEqual(f["port"], {"type": "integer", "default": 80,
                                     "min": 1, "max": 65535,
                                     "special": [0, -1]})
        self.assertEqual(f["pool_refs"], {"type": "array", "max_items": 5,
                                          "items": {"type": "string",
                                                    "ref": "pool"}})
        self.assertEqual(f["sub"], {"type": "object", "def": "Sub"})
        self.assertEqual(f["subs"], {"type": "array", "min_items": 1,
                                     "items": {"type": "object",
                                               "def": "Sub"}})
        s = d["definitions"]["Sub"]
        self.assertEqual(s["required"], ["k"])
        self.assertEqual(s["fields"]["k"]["introduced"], ["20.1.1"])
        self.assertEqual(s["fields"]["vrf_ref"]["ref"], "vrfcontext")
        # Deterministic output.
        out2 = os.path.join(self.dir, "out2.json")
        subprocess.run([PYTHON, os.path.join(HERE, "gen_schema.py"),
                        self.dir, out2], check=True,
                       stdout=subprocess.DEVNULL)
        with open(out) as a, open(out2) as b:
            self.assertEqual(a.read(), b.read())

    def test_committed_schema(self):
        with open(os.path.join(HERE, "avi_schema.json")) as fh:
            d = json.load(fh)
        self.assertEqual(d["swagger_version"], "22.1.6")
        for t in ("virtualservice", "vsvip", "pool", "poolgroup",
                  "httppolicyset", "sslkeyandcertificate", "healthmonitor",
                  "applicationprofile", "networkprofile", "pkiprofile",
                  "stringgroup", "cloud", "tenant", "vrfcontext"):
            self.assertIn(t, d["objects"])
        pool = d["definitions"]["Pool"]["fields"]
        self.assertEqual(pool["delete_server_on_dns_refresh"]["introduced"],
                         ["18.2.3"])
        self.assertEqual(pool["health_monitor_refs"]["items"]["ref"],
                         "healthmonitor")
        self.assertEqual(pool["lb_algorithm"]["default"],
                         "LB_ALGORITHM_LEAST_CONNECTIONS")
        self.assertTrue(pool["_last_modified"]["readonly"])
        hm = d["definitions"]["HealthMonitor"]
        self.assertEqual(hm["required"], ["name", "type"])


if __name__ == "__main__":
    main()
