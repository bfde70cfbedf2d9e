#!/usr/bin/python3
"""AVI controller simulator for amc's tests (standard library only).

Serves the parts of the AVI (NSX Advanced Load Balancer) REST API that amc
uses, over HTTP and HTTPS on loopback, with the real controller's status codes
and error texts where they are known. The facts it implements, and which of
them are observed versus inferred, are listed in README.md next to this file.
Object schemas (defaults, enums, ranges, required fields, references, "Field
introduced in" versions) come from avi_schema.json, generated from the AVI
swagger by gen_schema.py.

Run: /usr/bin/python3 avisim.py --port-file FILE [options]; see --help and
README.md for the command line and the /_sim/ control API used by tests.
"""
import argparse
import base64
import copy
import hashlib
import http.server
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid as uuidlib

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_FILE = os.path.join(HERE, "avi_schema.json")

# Version assumed when a request carries no X-Avi-Version (AVI docs).
DEFAULT_REQUEST_VERSION = "16.4.1"
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 200
REQUEST_LOG_MAX = 20000
CSRF_TEXT = "CSRF token missing or incorrect."

# Types whose objects exist only as pre-seeded system objects (no swagger
# here); they are readable and referable but not writable.
SYSTEM_ONLY_TYPES = {"serviceenginegroup", "sslprofile", "analyticsprofile"}

# Pre-seeded system objects (tenant admin): (type, name, extra fields).
SYSTEM_OBJECTS = [
    ("cloud", "Default-Cloud", {"vtype": "CLOUD_NONE"}),
    ("vrfcontext", "global", {"system_default": True}),
    ("vrfcontext", "management", {"system_default": True}),
    ("serviceenginegroup", "Default-Group", {}),
    ("applicationprofile", "System-HTTP",
     {"type": "APPLICATION_PROFILE_TYPE_HTTP"}),
    ("applicationprofile", "System-Secure-HTTP",
     {"type": "APPLICATION_PROFILE_TYPE_HTTP"}),
    ("applicationprofile", "System-L4-Application",
     {"type": "APPLICATION_PROFILE_TYPE_L4"}),
    ("applicationprofile", "System-SSL-Application",
     {"type": "APPLICATION_PROFILE_TYPE_SSL"}),
    ("networkprofile", "System-TCP-Proxy",
     {"profile": {"type": "PROTOCOL_TYPE_TCP_PROXY"}}),
    ("networkprofile", "System-TCP-Fast-Path",
     {"profile": {"type": "PROTOCOL_TYPE_TCP_FAST_PATH"}}),
    ("networkprofile", "System-UDP-Fast-Path",
     {"profile": {"type": "PROTOCOL_TYPE_UDP_FAST_PATH"}}),
    ("sslprofile", "System-Standard", {}),
    ("sslprofile", "System-Standard-PFS", {}),
    ("healthmonitor", "System-HTTP", {"type": "HEALTH_MONITOR_HTTP"}),
    ("healthmonitor", "System-HTTPS", {"type": "HEALTH_MONITOR_HTTPS"}),
    ("healthmonitor", "System-Ping", {"type": "HEALTH_MONITOR_PING"}),
    ("healthmonitor", "System-TCP", {"type": "HEALTH_MONITOR_TCP"}),
    ("healthmonitor", "System-UDP", {"type": "HEALTH_MONITOR_UDP"}),
    ("analyticsprofile", "System-Analytics-Profile", {}),
]

# Types whose system objects may still be modified (AKO PATCHes the global
# VRF's static routes); their system objects still cannot be deleted.
MODIFIABLE_SYSTEM_TYPES = {"vrfcontext"}

# Keys identifying an entry of a list for PATCH add/delete matching.
PATCH_ID_KEYS = ("name", "route_id", "index", "key", "uuid", "vip_id")


class ApiError(Exception):
    """An API error answer: status and text ({"error": text} unless plain)."""

    def __init__(self, status, text, plain=False):
        super().__init__(text)
        self.status = status
        self.text = text
        self.plain = plain


class ResetConnection(Exception):
    """Fault injection: drop the connection without answering."""


# ---------------------------------------------------------------- versions

def parse_version(s):
    """'22.1.6' -> (22, 1, 6); None when not a version."""
    if s is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?\s*", s)
    if not m:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


def vpad(v):
    return tuple(v) + (0,) * (3 - len(v)) if len(v) < 3 else tuple(v)


def vfmt(v):
    return "v" + "_".join(str(x) for x in v)


def field_allowed(introduced, req):
    """(allowed, needed_version) for a field introduced in these versions.

    A field listed for several release trains ("18.1.5, 18.2.1") exists from
    that version within the same major.minor train; for other trains the
    earliest listed version applies.
    """
    vs = [parse_version(v) for v in introduced]
    vs = [v for v in vs if v]
    if not vs:
        return True, None
    same = [v for v in vs if v[:2] == tuple(req[:2])]
    need = min(same, key=vpad) if same else min(vs, key=vpad)
    return vpad(req) >= vpad(need), need


# ----------------------------------------------------------------- schema

class Schema:
    def __init__(self, path):
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        self.defs = data["definitions"]
        self.objects = data["objects"]  # api type -> definition name
        self.models = dict(data["models"])  # api type -> model name
        for t, m in (("serviceenginegroup", "ServiceEngineGroup"),
                     ("sslprofile", "SSLProfile"),
                     ("analyticsprofile", "AnalyticsProfile")):
            self.models.setdefault(t, m)
        self.version = data.get("swagger_version")

    def model(self, t):
        return self.models.get(t, t)

    def defname(self, t):
        return self.objects.get(t)

    def fields(self, defname):
        d = self.defs.get(defname)
        return d["fields"] if d else None


def is_type(value, typ):
    if typ == "string":
        return isinstance(value, str)
    if typ == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ == "boolean":
        return isinstance(value, bool)
    if typ == "array":
        return isinstance(value, list)
    if typ == "object":
        return isinstance(value, dict)
    return True


def field_error(path, msg):
    return ApiError(400, json.dumps({path: msg}))


class Walker:
    """Schema-driven walks over an object: input cleaning and checks, ref
    mapping, default filling, version filtering."""

    def __init__(self, schema):
        self.s = schema

    # Input: drop read-only fields, handle unknown fields, check versions.
    def clean(self, defname, obj, path, version, unknown):
        fields = self.s.fields(defname)
        if fields is None or not isinstance(obj, dict):
            return obj
        out = {}
        for k, v in obj.items():
            p = path + k
            f = fields.get(k)
            if f is None:
                if unknown == "reject":
                    raise field_error(p, "Unknown field.")
                continue
            if f.get("readonly"):
                continue
            if version is not None and "introduced" in f:
                ok, need = field_allowed(f["introduced"], version)
                if not ok:
                    raise ApiError(
                        400, "Incoming request (%s) has field (%s) introduced"
                        " in later versions(%s)." % (vfmt(version), k,
                                                     vfmt(need)))
            sub = f.get("def") if f["type"] == "object" else \
                f.get("items", {}).get("def")
            if sub and f["type"] == "object" and isinstance(v, dict):
                v = self.clean(sub, v, p + ".", version, unknown)
            elif sub and f["type"] == "array" and isinstance(v, list):
                v = [self.clean(sub, e, p + ".", version, unknown)
                     if isinstance(e, dict) else e for e in v]
            out[k] = v
        return out

    # Checks types, enums, ranges, list sizes and required fields.
    def validate(self, defname, obj, path="", skip_required=()):
        fields = self.s.fields(defname)
        if fields is None:
            return
        if not isinstance(obj, dict):
            raise field_error(path.rstrip(".") or defname,
                              "Invalid value type, expected object.")
        for r in self.s.defs[defname]["required"]:
            if r in skip_required:
                continue
            if r not in obj or obj[r] is None:
                raise field_error(path + r, "This field is required.")
        for k, v in obj.items():
            f = fields.get(k)
            if f is None or v is None:
                continue
            self._check_value(f, v, path + k)

    def _check_scalar(self, spec, v, p):
        if not is_type(v, spec["type"]):
            raise field_error(p, "Invalid value type, expected %s."
                              % spec["type"])
        if "enum" in spec and v not in spec["enum"]:
            raise field_error(p, '"%s" is not a valid choice.' % v)
        if "min" in spec and spec["type"] in ("integer", "number"):
            if not (spec["min"] <= v <= spec["max"]) and \
                    v not in spec.get("special", []):
                raise field_error(p, "Ensure this value is between %d and %d."
                                  % (spec["min"], spec["max"]))
        if spec["type"] == "object" and spec.get("def"):
            self.validate(spec["def"], v, p + ".",
                          ("vip_id",) if spec["def"] == "Vip" else ())

    def _check_value(self, f, v, p):
        if f["type"] == "array":
            if not isinstance(v, list):
                raise field_error(p, "Invalid value type, expected array.")
            if "max_items" in f and len(v) > f["max_items"]:
                raise field_error(p, "Ensure this field has no more than %d "
                                  "elements." % f["max_items"])
            if "min_items" in f and len(v) < f["min_items"]:
                raise field_error(p, "Ensure this field has at least %d "
                                  "elements." % f["min_items"])
            for e in v:
                self._check_scalar(f.get("items", {"type": "string"}), e, p)
        else:
            self._check_scalar(f, v, p)

    # Calls fn(value, target_type) on every reference, replacing it.
    def map_refs(self, defname, obj, fn):
        if not isinstance(obj, dict):
            return obj
        fields = self.s.fields(defname) if defname else None
        for k, v in list(obj.items()):
            if fields is None:
                # Schema-less object: refs by naming convention.
                if k.endswith("_ref") and isinstance(v, str):
                    obj[k] = fn(v, None)
                elif k.endswith("_refs") and isinstance(v, list):
                    obj[k] = [fn(e, None) if isinstance(e, str) else e
                              for e in v]
                continue
            f = fields.get(k)
            if f is None or v is None:
                continue
            if f["type"] == "array" and isinstance(v, list):
                it = f.get("items", {})
                if "ref" in it:
                    obj[k] = [fn(e, it["ref"]) if isinstance(e, str) else e
                              for e in v]
                elif it.get("def"):
                    for e in v:
                        self.map_refs(it["def"], e, fn)
            elif "ref" in f and isinstance(v, str):
                obj[k] = fn(v, f["ref"])
            elif f.get("def") and isinstance(v, dict):
                self.map_refs(f["def"], v, fn)
        return obj

    def fill_defaults(self, defname, obj):
        fields = self.s.fields(defname)
        if fields is None or not isinstance(obj, dict):
            return
        for k, f in fields.items():
            if k not in obj and "default" in f and not f.get("readonly"):
                obj[k] = copy.deepcopy(f["default"])
            v = obj.get(k)
            if f["type"] == "object" and f.get("def") and isinstance(v, dict):
                self.fill_defaults(f["def"], v)
            elif f["type"] == "array" and isinstance(v, list) and \
                    f.get("items", {}).get("def"):
                for e in v:
                    self.fill_defaults(f["items"]["def"], e)

    # Output: drop fields newer than the request's version.
    def filter_version(self, defname, obj, version):
        fields = self.s.fields(defname)
        if fields is None or not isinstance(obj, dict):
            return obj
        for k in list(obj.keys()):
            f = fields.get(k)
            if f is None:
                continue
            if "introduced" in f and not field_allowed(f["introduced"],
                                                       version)[0]:
                del obj[k]
                continue
            v = obj[k]
            if f["type"] == "object" and f.get("def") and isinstance(v, dict):
                self.filter_version(f["def"], v, version)
            elif f["type"] == "array" and isinstance(v, list) and \
                    f.get("items", {}).get("def"):
                for e in v:
                    self.filter_version(f["items"]["def"], e, version)
        return obj


def json_pointer_apply(obj, op):
    """One json_patch operation (add/remove/replace) on obj, in place."""
    kind = op.get("op")
    path = op.get("path", "")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ApiError(400, "Invalid json_patch path: %r" % (path,))
    parts = [p.replace("~1", "/").replace("~0", "~")
             for p in path[1:].split("/")]
    cur = obj
    for p in parts[:-1]:
        if isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise ApiError(400, "Invalid json_patch path: %s" % path)
        elif isinstance(cur, dict):
            if p not in cur:
                if kind == "add":
                    cur[p] = {}
                else:
                    raise ApiError(400, "Invalid json_patch path: %s" % path)
            cur = cur[p]
        else:
            raise ApiError(400, "Invalid json_patch path: %s" % path)
    last = parts[-1]
    try:
        if isinstance(cur, list):
            idx = len(cur) if last == "-" else int(last)
            if kind == "add":
                cur.insert(idx, op.get("value"))
            elif kind == "replace":
                cur[idx] = op.get("value")
            elif kind == "remove":
                del cur[idx]
            else:
                raise ApiError(400, "Invalid json_patch op: %r" % (kind,))
        elif isinstance(cur, dict):
            if kind in ("add", "replace"):
                if kind == "replace" and last not in cur:
                    raise ApiError(400, "Invalid json_patch path: %s" % path)
                cur[last] = op.get("value")
            elif kind == "remove":
                if last not in cur:
                    raise ApiError(400, "Invalid json_patch path: %s" % path)
                del cur[last]
            else:
                raise ApiError(400, "Invalid json_patch op: %r" % (kind,))
        else:
            raise ApiError(400, "Invalid json_patch path: %s" % path)
    except (ValueError, IndexError):
        raise ApiError(400, "Invalid json_patch path: %s" % path)


def entry_matches(a, b):
    """PATCH list entry identity: equal, or same identifying key."""
    if a == b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        for k in PATCH_ID_KEYS:
            if k in a and k in b:
                return a[k] == b[k]
        if "ip" in a and "ip" in b:
            return (a["ip"], a.get("port")) == (b["ip"], b.get("port"))
    return False


def pseudo_uuid4(seed):
    h = hashlib.sha256(seed.encode()).digest()[:16]
    return str(uuidlib.UUID(bytes=h, version=4))


# -------------------------------------------------------------- simulator

class Simulator:
    """All controller state, guarded by self.lock."""

    def __init__(self, args):
        self.args = args
        self.schema = Schema(SCHEMA_FILE)
        self.walker = Walker(self.schema)
        self.lock = threading.RLock()
        self.server_version = args.version
        self.config = {}
        self.reset_config()
        self.sessions = {}
        self.tokens = set()
        self.faults = []
        self.fault_seq = 0
        self.requests = []
        self.request_seq = 0
        self.buckets = {}
        self.log_fh = open(args.log, "a", encoding="utf-8") if args.log \
            else None
        self.reset_objects()
        if args.state_file and os.path.exists(args.state_file):
            self.load_state(args.state_file)
            for tname in args.tenant or []:
                self.create_tenant(tname)

    def reset_config(self):
        a = self.args
        self.config = {
            "rate_limit": a.rate_limit,
            "burst": a.burst,
            "unknown_fields": a.unknown_fields,
            "session_idle_timeout": a.session_idle_timeout,
            "require_referer": True,
            "allow_basic_auth": a.allow_basic_auth,
            "use_uuid_from_input": False,
            "default_api_version": DEFAULT_REQUEST_VERSION,
            # 404 for an unresolvable uuid ref, 400 for a by-name ref.
            "ref_not_found_status_uuid": 404,
            "ref_not_found_status_name": 400,
            # A pool may serve only one virtual service at a time.
            "pool_single_vs": True,
            # After a DELETE, POSTs reusing the name get 409 this long.
            "deleted_name_hold_ms": 0,
        }

    # ------------------------------------------------------------ state
    def reset_objects(self):
        self.objects = {}   # type -> {uuid: stored object}
        self.meta = {}      # uuid -> {"type", "tenant", "system"}
        self.last_us = 0
        self.tombstones = {}
        self._put_system("tenant", "admin", "admin", {
            "local": True, "description": "Admin tenant"})
        for t, name, extra in SYSTEM_OBJECTS:
            u = "%s-%s" % (t, pseudo_uuid4("avisim/%s/%s" % (t, name)))
            self._put_system(t, name, u, extra)
        for tname in self.args.tenant or []:
            self.create_tenant(tname)

    def _put_system(self, t, name, u, extra):
        obj = dict(copy.deepcopy(extra))
        obj["name"] = name
        dn = self.schema.defname(t)
        if t != "tenant":
            obj["tenant_ref"] = "/api/tenant/admin"
        if t == "vrfcontext" or (dn and "cloud_ref" in self.schema.fields(dn)
                                 and t != "cloud"):
            obj["cloud_ref"] = self.ref_by_name("cloud", "Default-Cloud")
        if t == "serviceenginegroup":
            obj["cloud_ref"] = self.ref_by_name("cloud", "Default-Cloud")
        if dn:
            self.walker.fill_defaults(dn, obj)
        self._store(t, u, obj, "admin", system=True)

    def ref_by_name(self, t, name, tenant="admin"):
        for u, o in self.objects.get(t, {}).items():
            if o.get("name") == name and self.meta[u]["tenant"] == tenant:
                return "/api/%s/%s" % (t, u)
        return None

    def _store(self, t, u, obj, tenant, system=False):
        obj["uuid"] = u
        obj["url"] = "/api/%s/%s" % (t, u)
        obj["_last_modified"] = self.next_lm()
        self.objects.setdefault(t, {})[u] = obj
        self.meta[u] = {"type": t, "tenant": tenant, "system": system}

    def next_lm(self):
        now = int(time.time() * 1e6)
        self.last_us = max(now, self.last_us + 1)
        return str(self.last_us)

    def create_tenant(self, name):
        for u, o in self.objects.get("tenant", {}).items():
            if o["name"] == name:
                return u
        u = "tenant-%s" % uuidlib.uuid4()
        obj = {"name": name}
        self.walker.fill_defaults("Tenant", obj)
        self._store("tenant", u, obj, "admin")
        return u

    def save_state(self):
        path = self.args.state_file
        if not path:
            return
        data = {"format": 1, "objects": self.objects, "meta": self.meta,
                "last_us": self.last_us}
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)

    def load_state(self, path):
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        self.objects = data["objects"]
        self.meta = data["meta"]
        self.last_us = data.get("last_us", 0)

    # ----------------------------------------------------------- lookup
    def tenant_by_name(self, name):
        for u, o in self.objects.get("tenant", {}).items():
            if o.get("name") == name:
                return u
        return None

    def name_of(self, u):
        m = self.meta.get(u)
        if not m:
            return None
        return self.objects[m["type"]][u].get("name")

    def visible(self, u, tenant):
        m = self.meta[u]
        if tenant == "*":
            return True
        return m["tenant"] == tenant or m["tenant"] == "admin" or \
            m["type"] == "tenant"

    def resolve_ref(self, value, target, tenant):
        """A reference in one of the accepted input forms -> canonical
        '/api/<type>/<uuid>', or ApiError '<Model> object not found!'."""
        v = value.split("#", 1)[0]
        parsed = urllib.parse.urlsplit(v)
        path = parsed.path
        m = re.fullmatch(r"/api/([a-z0-9]+)/?(?:([^/]+))?/?", path)
        by_name = None
        if m and parsed.query:
            q = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
            if "name" in q:
                by_name = q["name"][0]
        t = m.group(1) if m else None
        model = self.schema.model(target or t or "object")
        if not m or (target and t != target) or \
                (by_name is None and not m.group(2)):
            raise ApiError(self.config["ref_not_found_status_uuid"],
                           "%s object not found!" % model)
        if by_name is not None:
            for scope in ([tenant, "admin"] if tenant != "*" else ["admin"]):
                for u, o in self.objects.get(t, {}).items():
                    if o.get("name") == by_name and \
                            (self.meta[u]["tenant"] == scope or
                             t == "tenant"):
                        return "/api/%s/%s" % (t, u)
            raise ApiError(self.config["ref_not_found_status_name"],
                           "%s object not found!" % model)
        u = m.group(2)
        if u in self.objects.get(t, {}) and self.visible(u, tenant):
            return "/api/%s/%s" % (t, u)
        raise ApiError(self.config["ref_not_found_status_uuid"],
                       "%s object not found!" % model)

    def refs_of(self, t, obj):
        """Canonical refs an object holds (set of uuids)."""
        out = []

        def grab(v, _target):
            m = re.fullmatch(r"/api/[a-z0-9]+/([^/?#]+)", v)
            if m:
                out.append(m.group(1))
            return v
        self.walker.map_refs(self.schema.defname(t), copy.deepcopy(obj), grab)
        if t != "tenant":
            tr = obj.get("tenant_ref")
            if tr and self.schema.defname(t) and \
                    "tenant_ref" not in self.schema.fields(
                        self.schema.defname(t)):
                grab(tr, None)
        return out

    def referrers(self, u):
        out = []
        for t, objs in self.objects.items():
            for ou, o in objs.items():
                if ou != u and u in self.refs_of(t, o):
                    out.append((t, ou))
        return out

    # ----------------------------------------------------------- render
    def render(self, t, obj, base, include_name=False, version=None,
               fields=None, skip_default=False):
        out = copy.deepcopy(obj)
        dn = self.schema.defname(t)

        def fix(v, _target):
            m = re.fullmatch(r"/api/([a-z0-9]+)/([^/?#]+)", v)
            if not m:
                return v
            s = base + v
            if include_name:
                n = self.name_of(m.group(2))
                if n is not None:
                    s += "#" + n
            return s
        self.walker.map_refs(dn, out, fix)
        if "tenant_ref" in out and \
                (dn is None or "tenant_ref" not in self.schema.fields(dn)):
            out["tenant_ref"] = fix(out["tenant_ref"], "tenant")
        out["url"] = fix(out["url"], t)
        if version is not None and dn:
            self.walker.filter_version(dn, out, version)
            for k in ("uuid", "url", "name", "_last_modified"):
                if k in obj and k not in out:
                    out[k] = fix(obj[k], None) if k == "url" else obj[k]
        if t == "sslkeyandcertificate":
            if "key" in out:
                out["key"] = "<sensitive>"
            if "key_passphrase" in out:
                out["key_passphrase"] = "<sensitive>"
        if skip_default and dn:
            flds = self.schema.fields(dn)
            for k in list(out):
                f = flds.get(k)
                if f and "default" in f and out[k] == f["default"]:
                    del out[k]
        if fields:
            keep = set(fields) | {"name", "url", "uuid"}
            out = {k: v for k, v in out.items() if k in keep}
        return out

    # -------------------------------------------------------- write path
    def prepare(self, t, body, ctx, existing=None, check_version=True):
        """Cleans, resolves, fills and validates a full object body."""
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid request body: expected a JSON object")
        dn = self.schema.defname(t)
        tenant = ctx["tenant"]
        if dn:
            obj = self.walker.clean(dn, body,
                                    "", ctx["version"] if check_version
                                    else None, self.config["unknown_fields"])
        else:
            obj = {k: v for k, v in body.items()
                   if k not in ("url", "_last_modified")}
        obj.pop("uuid", None)
        obj.pop("tenant_ref", None)
        # Resolve references (all three input forms).
        self.walker.map_refs(dn, obj,
                             lambda v, tgt: self.resolve_ref(v, tgt, tenant))
        if t != "tenant":
            obj["tenant_ref"] = "/api/tenant/%s" % tenant
        if dn:
            self.fill_server_defaults(t, obj, existing)
            self.walker.fill_defaults(dn, obj)
            self.walker.validate(dn, obj)
        elif not isinstance(obj.get("name"), str):
            raise field_error("name", "This field is required.")
        self.cross_checks(t, obj, existing)
        return obj

    def fill_server_defaults(self, t, obj, existing):
        fields = self.schema.fields(self.schema.defname(t))
        cloud = self.ref_by_name("cloud", "Default-Cloud")
        if "cloud_ref" in fields and "cloud_ref" not in obj:
            obj["cloud_ref"] = cloud
        global_vrf = self.global_vrf(obj.get("cloud_ref") or cloud)
        if t == "virtualservice":
            child = obj.get("type") == "VS_TYPE_VH_CHILD"
            obj.setdefault("application_profile_ref",
                           self.ref_by_name("applicationprofile",
                                            "System-HTTP"))
            obj.setdefault("network_profile_ref",
                           self.ref_by_name("networkprofile",
                                            "System-TCP-Proxy"))
            obj.setdefault("se_group_ref",
                           self.ref_by_name("serviceenginegroup",
                                            "Default-Group"))
            obj.setdefault("analytics_profile_ref",
                           self.ref_by_name("analyticsprofile",
                                            "System-Analytics-Profile"))
            if not child and global_vrf:
                obj.setdefault("vrf_context_ref", global_vrf)
        if t == "vsvip" and global_vrf:
            obj.setdefault("vrf_context_ref", global_vrf)
        if t in ("vsvip", "virtualservice") and isinstance(obj.get("vip"),
                                                           list):
            old = (existing or {}).get("vip") or []
            used = {v.get("vip_id") for v in obj["vip"]
                    if isinstance(v, dict)}
            nxt = 0
            for i, v in enumerate(obj["vip"]):
                if not isinstance(v, dict):
                    continue
                if i < len(old) and "vip_id" in v and \
                        v["vip_id"] != old[i].get("vip_id"):
                    raise ApiError(400, "Changing an existing VIP's vip_id "
                                   "is not supported")
                if "vip_id" not in v:
                    if i < len(old) and old[i].get("vip_id") is not None:
                        v["vip_id"] = old[i]["vip_id"]
                    else:
                        while str(nxt) in used:
                            nxt += 1
                        v["vip_id"] = str(nxt)
                        used.add(v["vip_id"])
        if t == "pool" and isinstance(obj.get("servers"), list):
            for s in obj["servers"]:
                if isinstance(s, dict) and isinstance(s.get("ip"), dict) \
                        and "hostname" not in s and "addr" in s["ip"]:
                    s["hostname"] = s["ip"]["addr"]
        if t == "sslkeyandcertificate":
            obj.setdefault("type", "SSL_CERTIFICATE_TYPE_VIRTUALSERVICE")
            cert = obj.get("certificate")
            if isinstance(cert, dict) and isinstance(
                    cert.get("certificate"), str):
                der = re.sub(r"-----[A-Z ]+-----|\s", "", cert["certificate"])
                try:
                    raw = base64.b64decode(der, validate=True)
                    fp = hashlib.sha1(raw).hexdigest().upper()
                    cert.setdefault("fingerprint", "SHA1 Fingerprint=" +
                                    ":".join(fp[i:i + 2]
                                             for i in range(0, 40, 2)))
                except ValueError:
                    pass

    def global_vrf(self, cloud_ref):
        for u, o in self.objects.get("vrfcontext", {}).items():
            if o.get("name") == "global" and o.get("cloud_ref") == cloud_ref:
                return "/api/vrfcontext/%s" % u
        return None

    def get_ref(self, ref):
        m = re.fullmatch(r"/api/([a-z0-9]+)/([^/?#]+)", ref or "")
        if not m:
            return None
        return self.objects.get(m.group(1), {}).get(m.group(2))

    def cross_checks(self, t, obj, existing):
        if t == "healthmonitor":
            rt, si = obj.get("receive_timeout"), obj.get("send_interval")
            if isinstance(rt, int) and isinstance(si, int) and rt >= si:
                raise ApiError(400, "Health monitor receive timeout (%d) "
                               "must be less than send interval (%d)"
                               % (rt, si))
        if t == "virtualservice":
            if obj.get("type") == "VS_TYPE_VH_CHILD":
                parent = self.get_ref(obj.get("vh_parent_vs_ref"))
                if parent is None:
                    raise ApiError(400, "Virtual service of type "
                                   "VS_TYPE_VH_CHILD needs vh_parent_vs_ref")
                if parent.get("type") != "VS_TYPE_VH_PARENT":
                    raise ApiError(400, "Parent virtual service %s is not of "
                                   "type VS_TYPE_VH_PARENT"
                                   % parent.get("name"))
            ap = self.get_ref(obj.get("application_profile_ref"))
            if ap and ap.get("type") == "APPLICATION_PROFILE_TYPE_L4" and \
                    obj.get("http_policies"):
                raise ApiError(400, "Layer-4 virtual service should not "
                               "refer to any HTTP policyset")
            vrf = obj.get("vrf_context_ref")
            if vrf:
                for pool in self.vs_pools(obj):
                    if pool.get("vrf_ref") and pool["vrf_ref"] != vrf:
                        raise ApiError(400, "VRF Context for %s and pool %s "
                                       "different" % (obj.get("name"),
                                                      pool.get("name")))
            if self.config["pool_single_vs"]:
                self.check_pool_sharing(obj, existing)

    def check_pool_sharing(self, vs, existing):
        """A pool serves one virtual service at a time (AVI docs)."""
        mine = {p["uuid"] for p in self.vs_pools(vs)}
        if not mine:
            return
        me = (existing or {}).get("uuid")
        for u, other in self.objects.get("virtualservice", {}).items():
            if u == me:
                continue
            for p in self.vs_pools(other):
                if p["uuid"] in mine:
                    raise ApiError(400, "Pool %s is already used by "
                                   "VirtualService %s"
                                   % (p.get("name"), other.get("name")))

    def vs_pools(self, vs):
        pools = []

        def add_pg(ref):
            pg = self.get_ref(ref)
            for m in (pg or {}).get("members") or []:
                p = self.get_ref(m.get("pool_ref"))
                if p:
                    pools.append(p)
        p = self.get_ref(vs.get("pool_ref"))
        if p:
            pools.append(p)
        if vs.get("pool_group_ref"):
            add_pg(vs["pool_group_ref"])
        for hp in vs.get("http_policies") or []:
            ps = self.get_ref(hp.get("http_policy_set_ref"))
            rules = (((ps or {}).get("http_request_policy") or {})
                     .get("rules") or [])
            for r in rules:
                sa = r.get("switching_action") or {}
                p = self.get_ref(sa.get("pool_ref"))
                if p:
                    pools.append(p)
                if sa.get("pool_group_ref"):
                    add_pg(sa["pool_group_ref"])
        return pools

    def check_dup(self, t, name, tenant, self_uuid=None):
        for u, o in self.objects.get(t, {}).items():
            if u != self_uuid and o.get("name") == name and \
                    (self.meta[u]["tenant"] == tenant or t == "tenant"):
                raise ApiError(409, "%s with this name already exists in "
                               "tenant %s" % (self.schema.model(t),
                                              self.name_of(tenant) or tenant))
        hold = self.config["deleted_name_hold_ms"] / 1000.0
        ts = self.tombstones.get((t, tenant, name))
        if ts and time.time() - ts < hold:
            raise ApiError(409, "%s with this name already exists in tenant "
                           "%s" % (self.schema.model(t),
                                   self.name_of(tenant) or tenant))

    def create(self, t, body, ctx, slug=None, check_version=True):
        obj = self.prepare(t, body, ctx, check_version=check_version)
        tenant = "admin" if t == "tenant" else ctx["tenant"]
        self.check_dup(t, obj["name"], tenant)
        if slug:
            u = slug
        elif self.config["use_uuid_from_input"] and \
                isinstance(body.get("uuid"), str):
            u = body["uuid"]
        else:
            u = "%s-%s" % (t, uuidlib.uuid4())
        if u in self.meta:
            raise ApiError(409, "Object with uuid %s already exists" % u)
        self._store(t, u, obj, tenant)
        self.save_state()
        return u

    def writable(self, t, u, ctx, method):
        if u not in self.objects.get(t, {}) or \
                not self.visible(u, ctx["tenant"]):
            raise ApiError(404, "%s object not found!" % self.schema.model(t))
        m = self.meta[u]
        if method != "DELETE" and m["system"] and \
                t not in MODIFIABLE_SYSTEM_TYPES:
            raise ApiError(403, "Cannot modify system default object")
        if m["tenant"] != ctx["tenant"] and t != "tenant":
            raise ApiError(403, "Permission denied: object %s belongs to "
                           "tenant %s" % (u, self.name_of(m["tenant"])))
        return self.objects[t][u]

    def replace(self, t, u, body, ctx, check_version=True, stale_check=True):
        old = self.writable(t, u, ctx, "PUT")
        if stale_check and isinstance(body, dict) and \
                "_last_modified" in body and \
                str(body["_last_modified"]) != old["_last_modified"]:
            raise ApiError(412, "Need to reload object data %s %s"
                           % (self.schema.model(t), old.get("name")))
        if t == "sslkeyandcertificate" and isinstance(body, dict):
            body = dict(body)
            for k in ("key", "key_passphrase"):
                if body.get(k) == "<sensitive>":
                    if k in old:
                        body[k] = old[k]
                    else:
                        body.pop(k)
        obj = self.prepare(t, body, ctx, existing=old,
                           check_version=check_version)
        tenant = self.meta[u]["tenant"]
        if t == "tenant":
            obj.pop("tenant_ref", None)
        self.check_dup(t, obj["name"], tenant, self_uuid=u)
        system = self.meta[u]["system"]
        self._store(t, u, obj, tenant, system)
        self.save_state()

    def patch(self, t, u, body, ctx):
        old = self.writable(t, u, ctx, "PATCH")
        if not isinstance(body, dict) or not body or \
                set(body) - {"add", "replace", "delete", "json_patch"}:
            raise ApiError(400, "PATCH body must contain add, replace, "
                           "delete or json_patch")
        dn = self.schema.defname(t)
        tenant = self.meta[u]["tenant"]
        cur = copy.deepcopy(old)
        for k in ("url", "_last_modified", "uuid"):
            cur.pop(k, None)
        for op in ("replace", "add", "delete"):
            payload = body.get(op)
            if payload is None:
                continue
            if not isinstance(payload, dict):
                raise ApiError(400, "PATCH %s must be an object" % op)
            if dn:
                payload = self.walker.clean(dn, payload, "", ctx["version"],
                                            self.config["unknown_fields"])
            self.walker.map_refs(dn, payload,
                                 lambda v, tgt: self.resolve_ref(v, tgt,
                                                                 tenant))
            for k, v in payload.items():
                if op == "replace":
                    cur[k] = v
                elif op == "add":
                    if isinstance(v, list) and isinstance(cur.get(k), list):
                        for e in v:
                            for i, have in enumerate(cur[k]):
                                if entry_matches(have, e):
                                    cur[k][i] = e
                                    break
                            else:
                                cur[k].append(e)
                    else:
                        cur[k] = v
                else:
                    if isinstance(v, list) and isinstance(cur.get(k), list):
                        cur[k] = [e for e in cur[k]
                                  if not any(entry_matches(e, d) for d in v)]
                    else:
                        cur.pop(k, None)
        if "json_patch" in body:
            ops = body["json_patch"]
            if not isinstance(ops, list):
                raise ApiError(400, "json_patch must be a list")
            for op in ops:
                if not isinstance(op, dict):
                    raise ApiError(400, "json_patch entries must be objects")
                json_pointer_apply(cur, op)
        # The merged object is re-validated as a whole; only the patch
        # payload was version-checked.
        self.replace(t, u, cur, ctx, check_version=False, stale_check=False)

    def delete(self, t, u, ctx):
        obj = self.writable(t, u, ctx, "DELETE")
        if self.meta[u]["system"]:
            raise ApiError(403, "Cannot delete system default object")
        refs = self.referrers(u)
        if refs:
            names = sorted("%s %s" % (self.schema.model(rt),
                                      self.objects[rt][ru].get("name"))
                           for rt, ru in refs)
            raise ApiError(400 if t == "cloud" else 403,
                           "Cannot delete, object is referred by: %s"
                           % repr(names))
        del self.objects[t][u]
        tenant = self.meta.pop(u)["tenant"]
        self.tombstones[(t, tenant, obj.get("name"))] = time.time()
        self.save_state()

    # -------------------------------------------------------- list path
    def list(self, t, q, ctx, base, path):
        tenant = ctx["tenant"]

        def one(name):
            return q.get(name, [None])[-1]
        try:
            page_size = int(one("page_size") or DEFAULT_PAGE_SIZE)
            page = int(one("page") or 1)
        except ValueError:
            raise ApiError(400, "page and page_size must be integers")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ApiError(400, "page_size must be between 1 and %d"
                           % MAX_PAGE_SIZE)
        if page < 1:
            raise ApiError(404, "Invalid page.")
        res = []
        for u, o in self.objects.get(t, {}).items():
            if not self.visible(u, tenant):
                continue
            if not self.list_match(t, u, o, q):
                continue
            res.append(o)
        count = len(res)
        start = (page - 1) * page_size
        if start >= count and page > 1:
            raise ApiError(404, "Invalid page.")
        fields = None
        if one("fields"):
            fields = [f for f in one("fields").split(",") if f]
        flag = truthy(one("include_name"))
        out = {"count": count,
               "results": [self.render(t, o, base, flag, ctx["out_version"],
                                       fields, truthy(one("skip_default")))
                           for o in res[start:start + page_size]]}
        if start + page_size < count:
            pairs = [(k, v) for k, vs in q.items() for v in vs if k != "page"]
            pairs.append(("page", str(page + 1)))
            out["next"] = base + path + "?" + urllib.parse.urlencode(pairs)
        return out

    def list_match(self, t, u, o, q):
        def one(name):
            return q.get(name, [None])[-1]
        name = o.get("name") or ""
        if one("name") is not None and name != one("name"):
            return False
        if one("name.contains") is not None and one("name.contains") \
                not in name:
            return False
        if one("name.icontains") is not None and \
                one("name.icontains").lower() not in name.lower():
            return False
        if one("name.in") is not None and \
                name not in one("name.in").split(","):
            return False
        if one("uuid.in") is not None and u not in one("uuid.in").split(","):
            return False
        if one("created_by") is not None and \
                o.get("created_by") != one("created_by"):
            return False
        cref = o.get("cloud_ref") or ""
        if one("cloud_ref.name") is not None and \
                self.name_of(cref.rsplit("/", 1)[-1]) != one("cloud_ref.name"):
            return False
        for p in ("cloud_ref.uuid", "cloud_uuid"):
            if one(p) is not None and cref.rsplit("/", 1)[-1] != one(p):
                return False
        if one("refers_to") is not None:
            ref_t, _, ref_u = one("refers_to").partition(":")
            if ref_u not in self.refs_of(t, o) or \
                    self.meta.get(ref_u, {}).get("type") != ref_t:
                return False
        if one("referred_by") is not None:
            by_t, _, by_u = one("referred_by").partition(":")
            by = self.objects.get(by_t, {}).get(by_u)
            if by is None or u not in self.refs_of(by_t, by):
                return False
        if one("label_key") is not None:
            want_v = one("label_value")
            ok = False
            for mk in o.get("markers") or []:
                if mk.get("key") == one("label_key") and \
                        (want_v is None or want_v in (mk.get("values") or [])):
                    ok = True
            if not ok:
                return False
        return True

    # --------------------------------------------------- sessions, limits
    def new_session(self, user):
        sid = secrets.token_hex(16)
        csrf = secrets.token_hex(16)
        self.sessions[sid] = {"user": user, "csrf": csrf,
                              "last": time.monotonic()}
        return sid, csrf

    def session(self, sid):
        s = self.sessions.get(sid)
        if not s:
            return None
        idle = self.config["session_idle_timeout"]
        if idle and time.monotonic() - s["last"] > idle:
            del self.sessions[sid]
            return None
        s["last"] = time.monotonic()
        return s

    def rate_ok(self, client):
        rate = self.config["rate_limit"]
        if not rate:
            return True
        burst = self.config["burst"] or max(1, int(rate))
        now = time.monotonic()
        b = self.buckets.get(client)
        if b is None:
            b = self.buckets[client] = {"tokens": float(burst), "t": now}
        b["tokens"] = min(float(burst), b["tokens"] + (now - b["t"]) * rate)
        b["t"] = now
        if b["tokens"] >= 1.0:
            b["tokens"] -= 1.0
            return True
        return False

    def take_fault(self, method, path):
        for f in self.faults:
            if f["method"] not in ("*", method):
                continue
            if not re.search(f["path"], path):
                continue
            f["hits"] += 1
            if f["times"]:
                f["times"] -= 1
                if f["times"] == 0:
                    self.faults.remove(f)
            return dict(f)
        return None

    def log_request(self, entry):
        self.request_seq += 1
        entry["seq"] = self.request_seq
        self.requests.append(entry)
        if len(self.requests) > REQUEST_LOG_MAX:
            del self.requests[:len(self.requests) - REQUEST_LOG_MAX]
        if self.log_fh:
            self.log_fh.write("%.6f %s %s %s %s tenant=%s\n" % (
                entry["time"], entry["client"], entry["method"],
                entry["path"] + ("?" + entry["query"] if entry["query"]
                                 else ""), entry["status"], entry["tenant"]))
            self.log_fh.flush()

    def login_body(self):
        v = self.server_version
        return {
            "version": {"Version": v, "build": 9001, "Tag": "%s-9001" % v,
                        "Date": "2023-01-01T00:00:00+00:00",
                        "min_version": "15.2", "ProductName": "Avi Cloud "
                        "Controller"},
            "user": {"username": self.args.username, "name":
                     self.args.username, "uuid": "user-1", "is_superuser":
                     True, "local": True, "full_name": "System Administrator",
                     "default_tenant_ref": "/api/tenant/admin"},
            "tenants": [{"name": o["name"], "uuid": u,
                         "url": "/api/tenant/%s" % u}
                        for u, o in self.objects.get("tenant", {}).items()],
            "system_config": {"url": "/api/systemconfiguration",
                              "uuid": "default",
                              "portal_configuration": {
                                  "allow_basic_authentication":
                                  bool(self.config["allow_basic_auth"]),
                                  "use_uuid_from_input":
                                  bool(self.config["use_uuid_from_input"]),
                                  "api_force_timeout": 24}},
            "controller": {"api_idle_timeout":
                           max(1, int(self.config["session_idle_timeout"]
                                      // 60))},
            "session_cookie_name": "avi-sessionid",
        }


SECRET_KEYS = {"key", "key_passphrase", "password", "token", "secret",
               "shared_secret", "secret_access_key"}


def redact(v):
    """A copy of a request body with secret-looking values hidden."""
    if isinstance(v, dict):
        return {k: "<redacted>" if k in SECRET_KEYS and isinstance(x, str)
                else redact(x) for k, x in v.items()}
    if isinstance(v, list):
        return [redact(x) for x in v]
    return v


def truthy(v):
    return v is not None and v.lower() not in ("false", "0", "no")


# ----------------------------------------------------------------- server

# Linux: SO_TIMESTAMPNS (not in Python's socket module) makes recvmsg()
# return the time the kernel received the data (SCM_TIMESTAMPNS, a struct
# timespec). That is the request's arrival: when its bytes reached this
# server, however late this process's thread then wakes up to read them.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
STAMP_SPACE = socket.CMSG_SPACE(struct.calcsize("qq"))


class StampedReader(io.RawIOBase):
    """A raw reader of a plain socket that keeps the kernel's receive time
    of the data read last (`stamp`, Unix seconds, or None)."""

    def __init__(self, sock):
        super().__init__()
        self.sock = sock
        self.stamp = None

    def readable(self):
        return True

    def fileno(self):
        return self.sock.fileno()

    def readinto(self, b):
        n, anc, _flags, _addr = self.sock.recvmsg_into([b], STAMP_SPACE)
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == SCM_TIMESTAMPNS and \
                    len(data) >= 16:
                sec, nsec = struct.unpack("qq", data[:16])
                self.stamp = sec + nsec / 1e9
        return n


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "avisim"
    sys_version = ""
    timeout = 120
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def version_string(self):
        return "avisim"

    def setup(self):
        super().setup()
        self.stamped = None
        if isinstance(self.connection, ssl.SSLSocket) or \
                not sys.platform.startswith("linux"):
            return
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            return
        self.rfile.close()  # nothing read yet: give the socket back
        self.stamped = StampedReader(self.connection)
        self.rfile = io.BufferedReader(self.stamped)

    def parse_request(self):
        # The request's arrival (the request log's "time"): when the kernel
        # received the bytes of its request line (plain sockets on Linux),
        # else when this thread read the line (TLS): either way before the
        # headers are parsed, and not counting the Python thread's wake-up.
        stamp = self.stamped.stamp if self.stamped else None
        self.arrived = stamp or time.time()
        return super().parse_request()

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def do_patch(self):
        self.read_body()
        self.answer(400, json.dumps({"error": "Method must be upper-case "
                                     "PATCH"}).encode(), "application/json")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def answer(self, status, body, ctype, headers=()):
        self.send_response(status)
        if status != 204 or body:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        # Headers and body in one write (no Nagle/delayed-ACK stall).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def reset_connection(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            socket.socket.close(self.connection)
        except OSError:
            pass
        self.close_connection = True

    def dispatch(self):
        sim = self.server.sim
        t0 = getattr(self, "arrived", None) or time.time()
        parsed = urllib.parse.urlsplit(self.path)
        path, query = parsed.path, parsed.query
        body = self.read_body()
        if path.startswith("/_sim/") or path == "/_sim":
            return self.control(path, query, body)
        client = self.client_address[0]
        entry = {"time": t0, "client": client, "method": self.command,
                 "path": path, "query": query,
                 "tenant": self.headers.get("X-Avi-Tenant") or
                 self.headers.get("X-Avi-Tenant-UUID") or "admin",
                 "avi_version": self.headers.get("X-Avi-Version"),
                 "status": None}
        if path.startswith("/api/") and body and \
                self.command in ("POST", "PUT", "PATCH"):
            try:
                entry["body"] = redact(json.loads(body.decode("utf-8")))
            except (UnicodeDecodeError, ValueError):
                entry["body"] = None
        resp_headers = []
        try:
            with sim.lock:
                limited = not sim.rate_ok(client)
                fault = None if limited else sim.take_fault(self.command, path)
            if limited:
                raise ApiError(429, "Too many requests")
            if fault:
                entry["fault"] = fault["id"]
                if fault.get("delay_ms"):
                    time.sleep(fault["delay_ms"] / 1000.0)
                if fault.get("reset"):
                    raise ResetConnection()
                if fault.get("status"):
                    raise ApiError(fault["status"], fault.get("body") or "",
                                   plain=True)
            with sim.lock:
                try:
                    status, out, resp_headers = self.route(
                        sim, path, query, body, resp_headers)
                except (ApiError, ResetConnection):
                    raise
                except Exception as e:  # a simulator bug: answer, log
                    traceback.print_exc()
                    raise ApiError(500, "avisim internal error: %s: %s"
                                   % (type(e).__name__, e))
            ctype = "application/json"
        except ResetConnection:
            entry["status"] = 0
            with sim.lock:
                sim.log_request(entry)
            self.reset_connection()
            return
        except ApiError as e:
            status = e.status
            if e.plain:
                out = e.text.encode()
            else:
                out = json.dumps({"error": e.text}).encode()
            ctype = "application/json"
        if isinstance(out, (dict, list)):
            out = json.dumps(out).encode()
        elif isinstance(out, str):
            out = out.encode()
        entry["status"] = status
        entry["duration_ms"] = round((time.time() - t0) * 1000, 3)
        with sim.lock:
            sim.log_request(entry)
        ver = self.headers.get("X-Avi-Version") or sim.server_version
        resp_headers = list(resp_headers) + [("AVI_API_VERSION", ver)]
        self.answer(status, out, ctype, resp_headers)

    # ------------------------------------------------------------ routes
    def base_url(self):
        host = self.headers.get("Host") or "%s:%d" % \
            self.server.server_address[:2]
        return "%s://%s" % (self.server.scheme, host)

    def cookies(self):
        out = {}
        for part in (self.headers.get("Cookie") or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k:
                out[k] = v
        return out

    def cookie_headers(self, sid, csrf=None, kill=False):
        sec = "; Secure; SameSite=None" if self.server.scheme == "https" \
            else ""
        hs = []
        if csrf:
            hs.append(("Set-Cookie", "csrftoken=%s; Max-Age=31449600; Path=/%s"
                       % (csrf, sec)))
        age = 0 if kill else 86400
        for n in ("avi-sessionid", "sessionid"):
            hs.append(("Set-Cookie", "%s=%s; HttpOnly; Max-Age=%d; Path=/%s"
                       % (n, "" if kill else sid, age, sec)))
        return hs

    def parse_json(self, body):
        if not body:
            return {}
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ApiError(400, "JSON parse error - %s" % e)

    def authenticate(self, sim, write):
        """-> (session id or None, extra response headers)."""
        c = self.cookies()
        sid = c.get("avi-sessionid") or c.get("sessionid")
        auth = self.headers.get("Authorization") or ""
        if sid:
            s = sim.session(sid)
            if s is None:
                raise ApiError(401, "Invalid or expired session")
            if write:
                tok = self.headers.get("X-CSRFToken")
                if tok != s["csrf"] or (sim.config["require_referer"] and
                                        not self.headers.get("Referer")):
                    raise ApiError(401, CSRF_TEXT, plain=True)
            return sid, self.cookie_headers(sid)
        if auth.startswith("Basic ") and sim.config["allow_basic_auth"]:
            try:
                u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                u, p = None, None
            if u == sim.args.username and p == sim.args.password:
                return None, []
            raise ApiError(401, "Invalid credentials")
        raise ApiError(401, "Authentication credentials were not provided.")

    def route(self, sim, path, query, body, hs):
        m = self.command
        if path == "/login":
            if m != "POST":
                raise ApiError(405, 'Method "%s" not allowed.' % m)
            return self.login(sim, body)
        if path == "/logout":
            if m != "POST":
                raise ApiError(405, 'Method "%s" not allowed.' % m)
            sid, _ = self.authenticate(sim, True)
            sim.sessions.pop(sid, None)
            return 200, {}, self.cookie_headers("", kill=True)
        if path in ("/api/initial-data", "/api/initial-data/"):
            return 200, {"version": sim.login_body()["version"],
                         "user_initial_setup": False}, []
        if path in ("/api/cluster/status", "/api/cluster/status/"):
            return 200, {"cluster_state": {"state": "CLUSTER_UP_NO_HA",
                                           "progress": 100}}, []
        mm = re.fullmatch(r"/api/([a-z0-9-]+)(?:/([^/]+))?/?", path)
        if not mm:
            raise ApiError(404, "Resource not found")
        write = m in ("POST", "PUT", "PATCH", "DELETE")
        sid, hs = self.authenticate(sim, write)
        t, u = mm.group(1), mm.group(2)
        if t in ("systemconfiguration", "controllerproperties") and \
                u is None:
            if m != "GET":
                raise ApiError(403, "Cannot modify %s in avisim" % t)
            return 200, self.singleton(sim, t), hs
        if t == "user-token" and m == "POST":
            tok = secrets.token_hex(20)
            sim.tokens.add(tok)
            return 200, {"token": tok}, hs
        ctx = self.context(sim, write)
        known = t in sim.schema.models or t in sim.objects
        if not known:
            raise ApiError(404, "Resource not found")
        base = self.base_url()
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        incl = truthy(q.get("include_name", [None])[-1])
        if m == "GET" and u is None:
            return 200, sim.list(t, q, ctx, base, path), hs
        if m == "GET":
            o = sim.objects.get(t, {}).get(u)
            if o is None or not sim.visible(u, ctx["tenant"]):
                raise ApiError(404, "%s object not found!"
                               % sim.schema.model(t))
            fields = [f for f in (q.get("fields", [""])[-1]).split(",") if f]
            return 200, sim.render(t, o, base, incl, ctx["out_version"],
                                   fields or None,
                                   truthy(q.get("skip_default",
                                                [None])[-1])), hs
        if m == "POST" and u is None:
            self.check_writable_type(sim, t)
            new = sim.create(t, self.parse_json(body), ctx,
                             slug=self.headers.get("Slug"))
            o = sim.objects[t][new]
            out = sim.render(t, o, base, True, ctx["out_version"])
            if t == "sslkeyandcertificate":
                out.pop("key", None)
                out.pop("key_passphrase", None)
                if isinstance(out.get("certificate"), dict):
                    out["certificate"].pop("certificate", None)
            loc = "%s/api/%s/%s#%s" % (base, t, new, o.get("name"))
            return 201, out, hs + [("Location", loc)]
        if u is None:
            raise ApiError(405, 'Method "%s" not allowed.' % m)
        if m == "PUT":
            sim.replace(t, u, self.parse_json(body), ctx)
        elif m == "PATCH":
            sim.patch(t, u, self.parse_json(body), ctx)
        elif m == "DELETE":
            sim.delete(t, u, ctx)
            return 204, b"", hs
        else:
            raise ApiError(405, 'Method "%s" not allowed.' % m)
        return 200, sim.render(t, sim.objects[t][u], base, True,
                               ctx["out_version"]), hs

    def singleton(self, sim, t):
        base = self.base_url()
        if t == "systemconfiguration":
            pc = sim.login_body()["system_config"]["portal_configuration"]
            return {"uuid": "default",
                    "url": base + "/api/systemconfiguration",
                    "portal_configuration": pc}
        cfg = sim.config
        return {"uuid": "default", "url": base + "/api/controllerproperties",
                "api_idle_timeout": max(1, int(cfg["session_idle_timeout"]
                                               // 60)),
                "portal_request_rate_limit": int(cfg["rate_limit"]),
                "portal_request_burst_limit": int(cfg["burst"] or
                                                  cfg["rate_limit"])}

    def check_writable_type(self, sim, t):
        if t in SYSTEM_ONLY_TYPES:
            raise ApiError(403, "Cannot modify system default object")

    def context(self, sim, write):
        raw = self.headers.get("X-Avi-Version")
        if raw is not None:
            v = parse_version(raw)
            if v is None:
                raise ApiError(400, "Invalid version %s" % raw)
        else:
            v = parse_version(sim.config["default_api_version"])
        tname = self.headers.get("X-Avi-Tenant")
        tuuid = self.headers.get("X-Avi-Tenant-UUID")
        if tname == "*" or tuuid == "*":
            if write:
                raise ApiError(400, "Tenant '*' is only allowed for reads")
            tenant = "*"
        elif tname:
            tenant = sim.tenant_by_name(tname)
            if tenant is None:
                raise ApiError(403, "Tenant '%s' does not exist!" % tname)
        elif tuuid:
            if tuuid not in sim.objects.get("tenant", {}):
                raise ApiError(403, "Tenant '%s' does not exist!" % tuuid)
            tenant = tuuid
        else:
            tenant = "admin"
        return {"tenant": tenant, "version": v, "out_version": v}

    def login(self, sim, body):
        ctype = (self.headers.get("Content-Type") or "").lower()
        creds = {}
        if "application/x-www-form-urlencoded" in ctype or \
                (body[:1] not in (b"{", b"") and b"=" in body):
            q = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            creds = {k: v[-1] for k, v in q.items()}
        elif body:
            try:
                creds = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                creds = {}
        if not isinstance(creds, dict):
            creds = {}
        ok = creds.get("username") == sim.args.username and (
            (creds.get("password") is not None and
             creds.get("password") == sim.args.password) or
            (creds.get("token") is not None and
             creds.get("token") in sim.tokens))
        if not ok:
            raise ApiError(401, "Invalid credentials")
        sid, csrf = sim.new_session(creds["username"])
        return 200, sim.login_body(), self.cookie_headers(sid, csrf)

    # ------------------------------------------------------ control API
    def control(self, path, query, body):
        sim = self.server.sim
        m = self.command
        try:
            data = json.loads(body.decode("utf-8")) if body else {}
        except (UnicodeDecodeError, ValueError):
            return self.answer(400, b'{"error": "bad JSON"}',
                               "application/json")
        try:
            with sim.lock:
                status, out = self.control_locked(sim, m, path, data)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            status, out = 400, {"error": "bad control request: %s" % e}
        self.answer(status, json.dumps(out).encode(), "application/json")

    def control_locked(self, sim, m, path, data):
        status, out = 200, {}
        base = self.base_url()
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        if path == "/_sim/state" and m == "GET":
            out = {"objects": {t: [sim.render(t, o, base, True)
                                   for o in objs.values()]
                               for t, objs in sim.objects.items()},
                   "tenants": {u: o["name"] for u, o in
                               sim.objects.get("tenant", {}).items()},
                   "sessions": len(sim.sessions)}
        elif path == "/_sim/reset" and m == "POST":
            sim.reset_config()
            sim.reset_objects()
            sim.sessions.clear()
            sim.faults.clear()
            sim.requests.clear()
            sim.buckets.clear()
            sim.save_state()
        elif path == "/_sim/requests" and m == "GET":
            out = {"requests": list(sim.requests)}
        elif path == "/_sim/requests" and m == "DELETE":
            sim.requests.clear()
        elif path == "/_sim/faults" and m == "POST":
            try:
                re.compile(data.get("path", ""))
            except re.error as e:
                return 400, {"error": "bad path regex: %s" % e}
            sim.fault_seq += 1
            f = {"id": sim.fault_seq,
                 "method": (data.get("method") or "*").upper()
                 if data.get("method") != "*" else "*",
                 "path": data.get("path", ""),
                 "status": data.get("status"),
                 "body": data.get("body", ""),
                 "delay_ms": data.get("delay_ms", 0),
                 "reset": bool(data.get("reset")),
                 "times": int(data.get("times", 1)), "hits": 0}
            sim.faults.append(f)
            out = {"id": f["id"]}
        elif path == "/_sim/faults" and m == "GET":
            out = {"faults": sim.faults}
        elif path == "/_sim/faults" and m == "DELETE":
            sim.faults.clear()
        elif path.startswith("/_sim/faults/") and m == "DELETE":
            fid = path.rsplit("/", 1)[-1]
            sim.faults[:] = [f for f in sim.faults
                             if str(f["id"]) != fid]
        elif path == "/_sim/config" and m == "POST":
            bad = set(data) - set(sim.config)
            if bad:
                status, out = 400, {"error": "unknown config keys: %s"
                                    % sorted(bad)}
            else:
                sim.config.update(data)
                sim.buckets.clear()
                out = dict(sim.config)
        elif path == "/_sim/config" and m == "GET":
            out = dict(sim.config)
        elif path == "/_sim/expire-sessions" and m == "POST":
            sim.sessions.clear()
        elif path == "/_sim/objects" and m == "POST":
            status, out = self.seed(sim, data, base)
        else:
            status, out = 404, {"error": "unknown control path"}
        return status, out

    def seed(self, sim, data, base):
        t = data.get("type")
        obj = data.get("object") or {}
        tname = data.get("tenant") or "admin"
        if not isinstance(t, str) or not isinstance(obj, dict):
            return 400, {"error": "need type and object"}
        try:
            if t == "tenant":
                u = sim.create_tenant(obj.get("name") or "")
                sim.save_state()
            else:
                tenant = sim.tenant_by_name(tname)
                if tenant is None:
                    return 400, {"error": "no tenant %s" % tname}
                ctx = {"tenant": tenant, "version": None, "out_version": None}
                saved = sim.config["unknown_fields"]
                sim.config["unknown_fields"] = "ignore"
                try:
                    u = sim.create(t, obj, ctx, slug=data.get("uuid"),
                                   check_version=False)
                finally:
                    sim.config["unknown_fields"] = saved
        except ApiError as e:
            return e.status, {"error": e.text}
        return 201, sim.render(t, sim.objects[t][u], base, True)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 stalls a client's 6th simultaneous
    # connect for about a second; a real controller accepts many more.
    request_queue_size = 128

    def __init__(self, addr, sim, scheme, tls=None):
        self.sim = sim
        self.scheme = scheme
        self.tls = tls
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        if self.tls is None:
            return super().finish_request(request, client_address)
        request.settimeout(10)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        conn.settimeout(None)
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            try:
                conn.close()
            except OSError:
                pass


def make_cert(host, workdir):
    cert = os.path.join(workdir, "cert.pem")
    key = os.path.join(workdir, "key.pem")
    san = "IP:127.0.0.1,DNS:localhost"
    if host not in ("127.0.0.1", "localhost", "0.0.0.0", ""):
        san += (",IP:" if re.fullmatch(r"[\d.]+", host) else ",DNS:") + host
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "30", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=" + san],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return cert, key


def write_port_file(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def parse_args(argv):
    p = argparse.ArgumentParser(description="AVI controller simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=0)
    p.add_argument("--https-port", type=int, default=0)
    p.add_argument("--no-https", action="store_true")
    p.add_argument("--no-http", action="store_true")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--port-file")
    p.add_argument("--state-file")
    p.add_argument("--username", default="admin")
    p.add_argument("--password", default="avisim-password")
    p.add_argument("--version", default="22.1.6")
    p.add_argument("--rate-limit", type=float, default=0)
    p.add_argument("--burst", type=int, default=0)
    p.add_argument("--unknown-fields", choices=("ignore", "reject"),
                   default="ignore")
    p.add_argument("--session-idle-timeout", type=float, default=900)
    p.add_argument("--allow-basic-auth", action="store_true")
    p.add_argument("--tenant", action="append",
                   help="create this tenant at start (repeatable)")
    p.add_argument("--log")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="exit when the parent process goes away (tests)")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    sim = Simulator(args)
    servers = []
    info = {"http": None, "https": None, "ca": None, "pid": os.getpid()}
    workdir = None
    if not args.no_http:
        s = Server((args.host, args.http_port), sim, "http")
        servers.append(s)
        info["http"] = s.server_address[1]
    if not args.no_https:
        if args.cert and args.key:
            cert, key = args.cert, args.key
        else:
            workdir = tempfile.mkdtemp(prefix="avisim-")
            cert, key = make_cert(args.host, workdir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        s = Server((args.host, args.https_port), sim, "https", tls=ctx)
        servers.append(s)
        info["https"] = s.server_address[1]
        info["ca"] = os.path.abspath(cert)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    threads = [threading.Thread(target=s.serve_forever, daemon=True)
               for s in servers]
    for th in threads:
        th.start()
    if args.port_file:
        write_port_file(args.port_file, info)
    else:
        print(json.dumps(info), flush=True)
    parent = os.getppid()
    while not stop.wait(0.5):
        if args.exit_with_parent and os.getppid() != parent:
            break
    for s in servers:
        s.shutdown()
        s.server_close()
    with sim.lock:
        sim.save_state()
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
