#!/usr/bin/python3
"""kubefake: a fake Kubernetes API server for amc's tests.

Standard library only (plus python3-yaml for YAML manifests and apply
patches). See README.md next to this file for the interface; the behaviour
follows the Kubernetes API conventions (discovery, CRUD, list paging, watch
with bookmarks and 410, status subresources, patches, RBAC, Status errors).
"""

import argparse
import base64
import copy
import csv
import datetime
import io
import ipaddress
import json
import os
import random
import re
import secrets
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
from bisect import bisect_right
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import yaml
except ImportError:  # YAML is optional: JSON manifests still work
    yaml = None

KUBE_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kubefake",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.23.0", "compiler": "gc",
                "platform": "linux/amd64"}
MASTERS = "system:masters"
ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSIONS = ["v1", "v1beta1", "v1alpha3"]
ISTIO_KINDS = [("Gateway", "gateways", "gateway", ["gw"]),
               ("VirtualService", "virtualservices", "virtualservice", ["vs"]),
               ("DestinationRule", "destinationrules", "destinationrule",
                ["dr"]),
               ("ServiceEntry", "serviceentries", "serviceentry", ["se"])]
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch",
             "update", "watch"]
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def log(msg):
    sys.stderr.write("kubefake: %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------- errors ---

class ApiError(Exception):
    """An error answered as a Kubernetes Status object."""

    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {},
              "status": "Failure", "message": self.message,
              "reason": self.reason, "code": self.code}
        if self.details:
            st["details"] = self.details
        return st


def qualified(rt):
    return rt.plural if not rt.group else "%s.%s" % (rt.plural, rt.group)


def details(rt, name):
    d = {"kind": rt.plural}
    if name:
        d["name"] = name
    if rt.group:
        d["group"] = rt.group
    return d


def err_not_found(rt, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (qualified(rt), name),
                    details(rt, name))


def err_exists(rt, name):
    return ApiError(409, "AlreadyExists",
                    '%s "%s" already exists' % (qualified(rt), name),
                    details(rt, name))


def err_conflict(rt, name):
    return ApiError(
        409, "Conflict",
        'Operation cannot be fulfilled on %s "%s": the object has been '
        'modified; please apply your changes to the latest version and try '
        'again' % (qualified(rt), name), details(rt, name))


def err_invalid(rt, name, field, value, detail):
    kind = rt.kind if not rt.group else "%s.%s" % (rt.kind, rt.group)
    cause = "%s: Invalid value: %s: %s" % (field, json.dumps(value), detail)
    d = {"name": name or "", "kind": rt.kind,
         "causes": [{"reason": "FieldValueInvalid", "message":
                     "Invalid value: %s: %s" % (json.dumps(value), detail),
                     "field": field}]}
    if rt.group:
        d["group"] = rt.group
    return ApiError(422, "Invalid", '%s "%s" is invalid: %s' %
                    (kind, name or "", cause), d)


def err_bad_request(msg):
    return ApiError(400, "BadRequest", msg)


def err_path_not_found():
    return ApiError(404, "NotFound",
                    "the server could not find the requested resource",
                    {})


def err_unauthorized():
    return ApiError(401, "Unauthorized", "Unauthorized")


def err_gone(msg):
    return ApiError(410, "Expired", msg)


def err_too_old(rv, oldest):
    return err_gone("too old resource version: %s (%s)" % (rv, oldest))


def err_media(types):
    return ApiError(415, "UnsupportedMediaType",
                    "the body of the request was in an unknown format - "
                    "accepted media types include: " + ", ".join(types))


CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list "
    "result. You can start a new list without the continue parameter, or use "
    "the continue token in this response to retrieve the remainder of the "
    "results. Continuing with the provided token results in an inconsistent "
    "list - objects that were created, modified, or deleted between the time "
    "the first chunk was returned and now may show up in the list.")


# --------------------------------------------------------- resource types ---

class RType:
    """One served resource: group/version/plural plus what it supports."""

    def __init__(self, group, version, plural, singular, kind, namespaced,
                 short=None, status=False, custom=False, categories=None,
                 list_kind=None, extra_subresources=None):
        self.group = group
        self.version = version
        self.plural = plural
        self.singular = singular
        self.kind = kind
        self.namespaced = namespaced
        self.short = short or []
        self.status = status
        self.custom = custom
        self.categories = categories or []
        self.list_kind = list_kind or kind + "List"
        self.extra_subresources = extra_subresources or []

    @property
    def skey(self):
        """Storage key: one store for all versions of a group resource
        (events.k8s.io Events share the core Events' store)."""
        if self.group == "events.k8s.io" and self.plural == "events":
            return "/events"
        return "%s/%s" % (self.group, self.plural)

    @property
    def api_version(self):
        return self.version if not self.group else "%s/%s" % (self.group,
                                                              self.version)


def _b(group, version, plural, singular, kind, namespaced, short=None,
       status=False, extra=None):
    return RType(group, version, plural, singular, kind, namespaced, short,
                 status, extra_subresources=extra)


BUILTIN_TYPES = [
    _b("", "v1", "namespaces", "namespace", "Namespace", False, ["ns"], True),
    _b("", "v1", "services", "service", "Service", True, ["svc"], True),
    _b("", "v1", "endpoints", "endpoints", "Endpoints", True, ["ep"]),
    _b("", "v1", "pods", "pod", "Pod", True, ["po"], True),
    _b("", "v1", "secrets", "secret", "Secret", True),
    _b("", "v1", "configmaps", "configmap", "ConfigMap", True, ["cm"]),
    _b("", "v1", "events", "event", "Event", True, ["ev"]),
    _b("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True,
       ["sa"], extra=[("token", "TokenRequest", ["create"])]),
    _b("discovery.k8s.io", "v1", "endpointslices", "endpointslice",
       "EndpointSlice", True),
    _b("events.k8s.io", "v1", "events", "event", "Event", True, ["ev"]),
    _b("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
    _b("apiextensions.k8s.io", "v1", "customresourcedefinitions",
       "customresourcedefinition", "CustomResourceDefinition", False,
       ["crd", "crds"], True),
    _b("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", True),
    _b("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding",
       "RoleBinding", True),
    _b("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole",
       "ClusterRole", False),
    _b("rbac.authorization.k8s.io", "v1", "clusterrolebindings",
       "clusterrolebinding", "ClusterRoleBinding", False),
]

VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(v):
    """Kubernetes version ordering: GA > beta > alpha, higher first."""
    m = VERSION_RE.match(v)
    if not m:
        return (0, 0, 0, v)
    major, kind, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 3, "beta": 2, "alpha": 1}[kind]
    return (rank, major, minor, "")


def istio_crd(kind, plural, singular, short, versions):
    vs = []
    for v in ISTIO_VERSIONS:
        vs.append({
            "name": v, "served": v in versions, "storage": v == "v1",
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"spec": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True},
                    "status": {"type": "object",
                               "x-kubernetes-preserve-unknown-fields": True}}}},
        })
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "%s.%s" % (plural, ISTIO_GROUP),
                     "labels": {"app": "istio-pilot"}},
        "spec": {"group": ISTIO_GROUP, "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural,
                           "singular": singular, "shortNames": short,
                           "listKind": kind + "List",
                           "categories": ["istio-io", "networking-istio-io"]},
                 "versions": vs},
    }


def crd_types(crd):
    """The RTypes a CustomResourceDefinition object makes servable."""
    out = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group"), names.get("plural"), \
        names.get("kind")
    if not (group and plural and kind):
        return out
    for v in spec.get("versions") or []:
        if not v.get("served", True) or not v.get("name"):
            continue
        status = "status" in ((v.get("subresources") or
                               spec.get("subresources") or {}))
        out.append(RType(group, v["name"], plural,
                         names.get("singular") or kind.lower(), kind,
                         spec.get("scope", "Namespaced") == "Namespaced",
                         names.get("shortNames"), status, True,
                         names.get("categories"), names.get("listKind")))
    return out


# --------------------------------------------------------------- selectors ---

def _split_top(s):
    """Split on commas that are not inside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]


SET_RE = re.compile(r"^([^\s!=<>]+)\s+(in|notin)\s+\((.*)\)$")
CMP_RE = re.compile(r"^([^\s!=<>]+)\s*(==|=|!=|<|>)\s*(.*)$")


def parse_label_selector(s):
    reqs = []
    for part in _split_top(s or ""):
        m = SET_RE.match(part)
        if m:
            vals = {v.strip() for v in m.group(3).split(",") if v.strip()}
            reqs.append((m.group(1), m.group(2), vals))
            continue
        m = CMP_RE.match(part)
        if m:
            op = "=" if m.group(2) == "==" else m.group(2)
            reqs.append((m.group(1), op, m.group(3).strip()))
            continue
        if part.startswith("!") and re.match(r"^![\w./-]+$", part):
            reqs.append((part[1:], "!exists", None))
            continue
        if re.match(r"^[\w./-]+$", part):
            reqs.append((part, "exists", None))
            continue
        raise err_bad_request("unable to parse requirement: %r" % part)
    return reqs


def label_match(reqs, labels):
    labels = labels or {}
    for key, op, val in reqs:
        have = key in labels
        cur = labels.get(key)
        if op == "=" and cur != val:
            return False
        if op == "!=" and have and cur == val:
            return False
        if op == "in" and (not have or cur not in val):
            return False
        if op == "notin" and have and cur in val:
            return False
        if op == "exists" and not have:
            return False
        if op == "!exists" and have:
            return False
        if op in ("<", ">"):
            try:
                a, b = int(cur), int(val)
            except (TypeError, ValueError):
                return False
            if (op == "<" and not a < b) or (op == ">" and not a > b):
                return False
    return True


def parse_field_selector(s):
    reqs = []
    for part in _split_top(s or ""):
        m = re.match(r"^([\w.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise err_bad_request("invalid selector: '%s'; can't understand "
                                  "'%s'" % (s, part))
        reqs.append((m.group(1), "!=" if m.group(2) == "!=" else "=",
                     m.group(3)))
    return reqs


def field_value(obj, path):
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(p)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_match(reqs, obj):
    for path, op, val in reqs:
        cur = field_value(obj, path)
        if (op == "=") != (cur == val):
            return False
    return True


# ----------------------------------------------------------------- patches ---

def merge_patch(orig, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(orig) if isinstance(orig, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def _ptr_tokens(ptr):
    if ptr == "":
        return []
    if not ptr.startswith("/"):
        raise err_bad_request("invalid JSON pointer %r" % ptr)
    return [t.replace("~1", "/").replace("~0", "~")
            for t in ptr[1:].split("/")]


def _ptr_parent(doc, ptr):
    toks = _ptr_tokens(ptr)
    if not toks:
        raise err_bad_request("cannot address the document root")
    cur = doc
    for t in toks[:-1]:
        if isinstance(cur, list):
            cur = cur[int(t)]
        elif isinstance(cur, dict) and t in cur:
            cur = cur[t]
        else:
            raise ApiError(422, "Invalid",
                           "doc is missing path: %s" % ptr)
    return cur, toks[-1]


def _ptr_get(doc, ptr):
    cur = doc
    for t in _ptr_tokens(ptr):
        try:
            cur = cur[int(t)] if isinstance(cur, list) else cur[t]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(422, "Invalid", "doc is missing path: %s" % ptr)
    return cur


def json_patch(doc, ops):
    """RFC 6902 JSON patch."""
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise err_bad_request("json patch must be a list of operations")

    def add(path, value):
        parent, key = _ptr_parent(doc, path)
        if isinstance(parent, list):
            if key == "-":
                parent.append(value)
            else:
                parent.insert(int(key), value)
        else:
            parent[key] = value

    def remove(path):
        parent, key = _ptr_parent(doc, path)
        try:
            if isinstance(parent, list):
                return parent.pop(int(key))
            return parent.pop(key)
        except (KeyError, IndexError, ValueError):
            raise ApiError(422, "Invalid", "doc is missing path: %s" % path)

    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "add":
            add(path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            remove(path)
        elif kind == "replace":
            remove(path)
            add(path, copy.deepcopy(op.get("value")))
        elif kind == "move":
            add(path, remove(op.get("from", "")))
        elif kind == "copy":
            add(path, copy.deepcopy(_ptr_get(doc, op.get("from", ""))))
        elif kind == "test":
            if _ptr_get(doc, path) != op.get("value"):
                raise ApiError(422, "Invalid",
                               "testing value %s failed" % path)
        else:
            raise err_bad_request("unknown json patch op %r" % kind)
    return doc


# Strategic merge patch, enough for kubectl's client-side apply of the
# built-in types amc uses: merge keys of the common list fields.
SMP_KEYS = {"containers": "name", "initContainers": "name",
            "ephemeralContainers": "name", "env": "name", "volumes": "name",
            "volumeMounts": "mountPath", "imagePullSecrets": "name",
            "conditions": "type", "ownerReferences": "uid",
            "hostAliases": "ip", "subsets": None, "endpoints": None}
SMP_PRIMITIVE_MERGE = {"finalizers"}
_DELETE = object()


def _smp_key(field, patch_list, orig_list):
    if field == "ports":
        for el in list(patch_list) + list(orig_list or []):
            if isinstance(el, dict) and "containerPort" in el:
                return "containerPort"
        return "port"
    return SMP_KEYS.get(field)


def _strip(v):
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items() if not k.startswith("$")}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def strategic_patch(orig, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _strip(patch)
    result = copy.deepcopy(orig) if isinstance(orig, dict) else {}
    orders, deletes = {}, {}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v
        elif k.startswith("$deleteFromPrimitiveList/"):
            deletes[k.split("/", 1)[1]] = v
        elif k.startswith("$"):
            continue
        elif v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            r = strategic_patch(result.get(k), v)
            if r is _DELETE:
                result.pop(k, None)
            else:
                result[k] = r
        elif isinstance(v, list):
            result[k] = _smp_list(k, result.get(k), v)
        else:
            result[k] = v
    for field, vals in deletes.items():
        if isinstance(result.get(field), list):
            result[field] = [x for x in result[field] if x not in vals]
    for field, order in orders.items():
        lst = result.get(field)
        if not isinstance(lst, list):
            continue
        key = _smp_key(field, order, lst)
        if key is None:
            if all(not isinstance(x, dict) for x in order):
                rank = {json.dumps(x): i for i, x in enumerate(order)}
                lst.sort(key=lambda x: rank.get(json.dumps(x), len(rank)))
            continue
        rank = {json.dumps(x.get(key)): i for i, x in enumerate(order)
                if isinstance(x, dict)}
        lst.sort(key=lambda x: rank.get(json.dumps(x.get(key))
                                        if isinstance(x, dict) else "",
                                        len(rank)))
    if "$retainKeys" in patch:
        keep = set(patch["$retainKeys"])
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _smp_list(field, orig, patch):
    orig = orig if isinstance(orig, list) else []
    key = _smp_key(field, patch, orig)
    if key is None:
        if field in SMP_PRIMITIVE_MERGE:
            out = list(orig)
            for x in patch:
                if x not in out:
                    out.append(x)
            return out
        return _strip(patch)
    if any(isinstance(el, dict) and el.get("$patch") == "replace"
           for el in patch):
        return [_strip(el) for el in patch
                if not (isinstance(el, dict) and "$patch" in el)]
    out = copy.deepcopy(orig)
    for el in patch:
        if not isinstance(el, dict):
            continue
        idx = next((i for i, o in enumerate(out)
                    if isinstance(o, dict) and o.get(key) == el.get(key)),
                   None)
        if el.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_strip(el))
        else:
            out[idx] = strategic_patch(out[idx], el)
    return out


# core/v1 Event field <-> events.k8s.io/v1 Event field (one store, two views)
EVENT_FIELDS = [("message", "note"), ("involvedObject", "regarding"),
                ("source", "deprecatedSource"),
                ("firstTimestamp", "deprecatedFirstTimestamp"),
                ("lastTimestamp", "deprecatedLastTimestamp"),
                ("count", "deprecatedCount"),
                ("reportingComponent", "reportingController")]


def rename_fields(obj, mapping):
    return {mapping.get(k, k): v for k, v in obj.items()}


def to_storage(rt, obj):
    if rt.group == "events.k8s.io":
        return rename_fields(obj, {b: a for a, b in EVENT_FIELDS})
    return obj


# ---------------------------------------------------------------- protobuf ---
# kubectl's typed commands (create namespace/serviceaccount/secret/configmap/
# token) send protobuf. Enough of the wire format and of those few messages
# is decoded here to turn such bodies into the JSON objects they stand for.

PROTOBUF = "application/vnd.kubernetes.protobuf"


def _varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def pb_fields(buf):
    out, i = {}, 0
    while i < len(buf):
        key, i = _varint(buf, i)
        fno, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = bytes(buf[i:i + n]), i + n
        elif wt == 1:
            v, i = bytes(buf[i:i + 8]), i + 8
        elif wt == 5:
            v, i = bytes(buf[i:i + 4]), i + 4
        else:
            raise ValueError("unsupported protobuf wire type %d" % wt)
        out.setdefault(fno, []).append(v)
    return out


def _pb_str(f, n):
    return f[n][-1].decode() if f.get(n) else ""


def _pb_map(f, n, as_bytes=False):
    out = {}
    for entry in f.get(n, []):
        e = pb_fields(entry)
        val = e.get(2, [b""])[-1]
        out[_pb_str(e, 1)] = base64.b64encode(val).decode() if as_bytes \
            else val.decode()
    return out


def _pb_meta(buf):
    f = pb_fields(buf)
    meta = {}
    for n, key in ((1, "name"), (2, "generateName"), (3, "namespace"),
                   (6, "resourceVersion")):
        if _pb_str(f, n):
            meta[key] = _pb_str(f, n)
    for n, key in ((11, "labels"), (12, "annotations")):
        m = _pb_map(f, n)
        if m:
            meta[key] = m
    if f.get(14):
        meta["finalizers"] = [x.decode() for x in f[14]]
    return meta


def pb_decode(body):
    """A protobuf-encoded object (k8s envelope) -> its JSON form."""
    if not body.startswith(b"k8s\x00"):
        raise ValueError("no k8s protobuf magic")
    env = pb_fields(body[4:])
    tm = pb_fields(env[1][-1]) if env.get(1) else {}
    api_version, kind = _pb_str(tm, 1), _pb_str(tm, 2)
    f = pb_fields(env[2][-1]) if env.get(2) else {}
    obj = {"apiVersion": api_version, "kind": kind,
           "metadata": _pb_meta(f[1][-1]) if f.get(1) else {}}
    if kind in ("Namespace", "ServiceAccount"):
        pass
    elif kind == "Secret":
        if f.get(2):
            obj["data"] = _pb_map(f, 2, as_bytes=True)
        if _pb_str(f, 3):
            obj["type"] = _pb_str(f, 3)
        if f.get(4):
            obj["stringData"] = _pb_map(f, 4)
    elif kind == "ConfigMap":
        if f.get(2):
            obj["data"] = _pb_map(f, 2)
        if f.get(3):
            obj["binaryData"] = _pb_map(f, 3, as_bytes=True)
    elif kind == "TokenRequest":
        spec = pb_fields(f[2][-1]) if f.get(2) else {}
        obj["spec"] = {"audiences": [a.decode() for a in spec.get(1, [])]}
        if spec.get(4):
            obj["spec"]["expirationSeconds"] = spec[4][-1]
    else:
        raise ValueError("kubefake decodes protobuf only for Namespace, "
                         "ServiceAccount, Secret, ConfigMap and TokenRequest, "
                         "not %s; send JSON" % kind)
    return obj


# ------------------------------------------------------------------- store ---

class Event:
    __slots__ = ("rv", "type", "skey", "obj", "prev")

    def __init__(self, rv, etype, skey, obj, prev):
        self.rv, self.type, self.skey, self.obj, self.prev = \
            rv, etype, skey, obj, prev

    def to_json(self):
        return {"rv": self.rv, "type": self.type, "skey": self.skey,
                "obj": self.obj, "prev": self.prev}


class Server:
    """All state: objects, history, auth, RBAC, faults and logs."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.objects = {}          # skey -> {(ns, name): obj}
        self.rv = 0
        self.compacted = 0         # history holds every event with rv > this
        self.history = []          # list of Event, rv ascending
        self.history_max = args.watch_history
        self.gone_mode = "event"   # how a too-old watch RV is answered
        self.bookmark_interval = args.bookmark_interval
        self.bookmark_seq = 0      # bumped by POST /_fake/bookmark
        self.bookmarks_sent = 0    # bookmarks written to watch streams
        self.continue_ttl = args.continue_ttl
        self.continue_epoch = 0    # bumped by POST /_fake/expire-continue
        self.snapshots = {}        # continue id -> (rv, remaining items)
        self.drop_gen = 0
        self.watch_errors = []     # injected ERROR events: (status, regex)
        self.conns = set()
        self.faults = []
        self.requests = []
        self.rbac_log = []
        self.rbac = args.rbac
        self.dynamic_tokens = {}   # token -> (user, groups)
        self.ip_next = 1
        self.port = None
        self.state_file = os.path.join(args.state_dir, "state.json")
        self.journal_file = os.path.join(args.state_dir, "journal.jsonl")
        self.pending = []          # journal lines not yet written
        self.journal_lines = 0
        self.pki = os.path.join(args.state_dir, "pki")
        self.dirty = False

    # ---- persistence

    def load(self):
        if not os.path.exists(self.state_file):
            return False
        with open(self.state_file) as f:
            st = json.load(f)
        self.rv = st["rv"]
        self.compacted = st["compacted"]
        self.objects = {}
        for skey, objs in st["objects"].items():
            self.objects[skey] = {(o["metadata"].get("namespace", ""),
                                   o["metadata"]["name"]): o for o in objs}
        self.history = [Event(e["rv"], e["type"], e["skey"], e["obj"],
                              e["prev"]) for e in st.get("history", [])]
        self.dynamic_tokens = {k: (v[0], v[1]) for k, v in
                               st.get("tokens", {}).items()}
        self.ip_next = st.get("ip_next", 1)
        self.port = st.get("port")
        self.replay_journal()
        return True

    def replay_journal(self):
        """Apply the events written since the last snapshot."""
        try:
            with open(self.journal_file) as f:
                lines = f.readlines()
        except OSError:
            return
        for line in lines:
            try:
                j = json.loads(line)
            except ValueError:       # a torn last line after a crash
                break
            e = Event(j["rv"], j["type"], j["skey"], j["obj"], j["prev"])
            if e.rv <= self.rv:
                continue
            m = e.obj["metadata"]
            key = (m.get("namespace", ""), m["name"])
            store = self.objects.setdefault(e.skey, {})
            if e.type == "DELETED":
                store.pop(key, None)
            else:
                store[key] = e.obj
            self.rv = e.rv
            self.ip_next = j.get("ip_next", self.ip_next)
            self.history.append(e)
            while len(self.history) > self.history_max:
                self.compacted = self.history.pop(0).rv
        self.journal_lines = len(lines)

    def save(self):
        st = {"rv": self.rv, "compacted": self.compacted,
              "objects": {k: list(v.values()) for k, v in self.objects.items()},
              "history": [e.to_json() for e in self.history],
              "tokens": {k: list(v) for k, v in self.dynamic_tokens.items()},
              "ip_next": self.ip_next, "port": self.port}
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, separators=(",", ":"))
        os.replace(tmp, self.state_file)
        # the snapshot holds everything: start a new journal
        try:
            os.unlink(self.journal_file)
        except OSError:
            pass
        self.pending = []
        self.journal_lines = 0
        self.dirty = False

    def initial_state(self):
        for ns in ("default", "kube-system", "kube-public"):
            self._create_internal(self.rtype_by_skey("/namespaces"),
                                  {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": ns}})
        if not self.args.no_istio_crds:
            versions = [v.strip() for v in self.args.istio_versions.split(",")
                        if v.strip()]
            crdt = self.rtype_by_skey("apiextensions.k8s.io/"
                                      "customresourcedefinitions")
            for kind, plural, singular, short in ISTIO_KINDS:
                self._create_internal(crdt, istio_crd(kind, plural, singular,
                                                      short, versions))
        self.history = []
        self.compacted = self.rv

    RBAC_KINDS = {"Namespace", "ServiceAccount", "Role", "ClusterRole",
                  "RoleBinding", "ClusterRoleBinding",
                  "CustomResourceDefinition"}

    def load_manifests(self, paths, only=RBAC_KINDS):
        """Create (or update) the objects of YAML/JSON files/directories.

        With `only`, other kinds are skipped (RBAC from deploy/); with
        only=None every object must be of a served kind (fixtures)."""
        docs = []
        for p in paths:
            files = []
            if os.path.isdir(p):
                for root, _, names in os.walk(p):
                    files += [os.path.join(root, n) for n in sorted(names)
                              if n.endswith((".yaml", ".yml", ".json"))]
            else:
                files.append(p)
            for fn in sorted(files):
                try:
                    with open(fn) as f:
                        text = f.read()
                    if fn.endswith(".json"):
                        loaded = [json.loads(text)]
                    elif yaml is None:
                        raise SystemExit("kubefake: python3-yaml is needed "
                                         "for %s" % fn)
                    else:
                        loaded = list(yaml.safe_load_all(text))
                except SystemExit:
                    raise
                except Exception as e:   # OSError, JSON or YAML errors
                    raise SystemExit("kubefake: cannot load %s: %s" % (fn, e))
                for d in loaded:
                    if isinstance(d, dict) and d.get("kind") == "List":
                        docs += [(fn, i) for i in d.get("items") or []]
                    elif isinstance(d, dict) and d.get("kind"):
                        docs.append((fn, d))
        order = ["Namespace", "CustomResourceDefinition", "ServiceAccount",
                 "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding"]
        if only is not None:
            docs = [x for x in docs if x[1]["kind"] in only]
        docs.sort(key=lambda x: order.index(x[1]["kind"])
                  if x[1]["kind"] in order else len(order))
        for fn, d in docs:
            rt = self.rtype_for_kind(d.get("apiVersion", ""), d["kind"])
            if rt is None:
                if only is None:
                    raise SystemExit("kubefake: %s: kind %s (apiVersion %s) "
                                     "is not served" % (fn, d["kind"],
                                                        d.get("apiVersion")))
                continue
            d = copy.deepcopy(d)
            meta = d.setdefault("metadata", {})
            if rt.namespaced:
                meta.setdefault("namespace", "default")
                self.ensure_namespace(meta["namespace"])
            key = (meta.get("namespace", "") if rt.namespaced else "",
                   meta.get("name"))
            try:
                cur = self.objects.get(rt.skey, {}).get(key)
                if cur is None:
                    self._create_internal(rt, d)
                else:
                    d["metadata"]["resourceVersion"] = \
                        cur["metadata"]["resourceVersion"]
                    self.do_update(rt, key[0], key[1], d, sub=None, user=None)
                if rt.status and "status" in d:   # fixtures keep status
                    self.do_update(rt, key[0], key[1],
                                   {"metadata": {}, "status": d["status"]},
                                   sub="status", user=None)
            except ApiError as e:
                raise SystemExit("kubefake: %s: %s %s: %s" % (
                    fn, d["kind"], key[1], e.message))

    def ensure_namespace(self, ns):
        if ("", ns) not in self.objects.get("/namespaces", {}):
            self._create_internal(self.rtype_by_skey("/namespaces"),
                                  {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": ns}})

    # ---- types

    def all_types(self):
        types = list(BUILTIN_TYPES)
        if self.args.no_endpointslices:
            types = [t for t in types if t.group != "discovery.k8s.io"]
        for crd in self.objects.get("apiextensions.k8s.io/"
                                    "customresourcedefinitions", {}).values():
            types += crd_types(crd)
        return types

    def rtype(self, group, version, plural):
        for t in self.all_types():
            if t.group == group and t.version == version and \
                    t.plural == plural:
                return t
        return None

    def rtype_by_skey(self, skey):
        for t in self.all_types():
            if t.skey == skey:
                return t
        return None

    def rtype_for_kind(self, api_version, kind):
        group, _, version = api_version.rpartition("/")
        for t in self.all_types():
            if t.group == group and t.version == version and t.kind == kind:
                return t
        return None

    def groups(self):
        """group -> served versions, preferred first."""
        out = {}
        for t in self.all_types():
            vs = out.setdefault(t.group, [])
            if t.version not in vs:
                vs.append(t.version)
        for g in out:
            out[g].sort(key=version_priority, reverse=True)
        return out

    # ---- object helpers

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def record(self, etype, rt, obj, prev):
        ev = Event(self.rv, etype, rt.skey, copy.deepcopy(obj),
                   copy.deepcopy(prev) if prev is not None else None)
        self.history.append(ev)
        while len(self.history) > self.history_max:
            old = self.history.pop(0)
            self.compacted = old.rv
        j = ev.to_json()
        j["ip_next"] = self.ip_next
        self.pending.append(json.dumps(j, separators=(",", ":")) + "\n")
        self.cond.notify_all()

    def commit(self):
        """Persist: journal lines for events, a snapshot now and then."""
        if self.dirty or self.journal_lines + len(self.pending) > 2000:
            self.save()
            return
        if self.pending:
            with open(self.journal_file, "a") as f:
                f.write("".join(self.pending))
            self.journal_lines += len(self.pending)
            self.pending = []

    def view(self, rt, obj):
        """The stored object as the requested version shows it."""
        o = copy.deepcopy(obj)
        if rt.group == "events.k8s.io":
            o = rename_fields(o, {a: b for a, b in EVENT_FIELDS})
        o["apiVersion"] = rt.api_version
        o["kind"] = rt.kind
        return o

    def _defaults(self, rt, obj, old=None):
        if rt.skey == "/services":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if old is not None and "clusterIP" not in spec:
                ospec = old.get("spec") or {}
                if "clusterIP" in ospec:
                    spec["clusterIP"] = ospec["clusterIP"]
                    spec["clusterIPs"] = ospec.get("clusterIPs",
                                                   [ospec["clusterIP"]])
            if "clusterIP" not in spec and spec["type"] != "ExternalName":
                n = self.ip_next
                self.ip_next += 1
                spec["clusterIP"] = "10.96.%d.%d" % (n // 250, n % 250 + 1)
                spec["clusterIPs"] = [spec["clusterIP"]]
            obj.setdefault("status", {}).setdefault("loadBalancer", {})
        elif rt.skey == "/namespaces":
            obj.setdefault("status", {"phase": "Active"})
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["metadata"].setdefault("labels", {})[
                "kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif rt.skey == "/secrets":
            sd = obj.pop("stringData", None)
            if sd:
                data = obj.setdefault("data", {})
                for k, v in sd.items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
            obj.setdefault("type", "Opaque")
        elif rt.skey == "/pods":
            obj.setdefault("status", {"phase": "Pending"})

    def _validate(self, rt, obj, ns):
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise err_invalid(rt, "", "metadata", None, "metadata is required")
        name = meta.get("name")
        if not name:
            raise err_invalid(rt, "", "metadata.name", "",
                              "name or generateName is required")
        if not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", name) or \
                len(name) > 253:
            raise err_invalid(
                rt, name, "metadata.name", name,
                "a lowercase RFC 1123 subdomain must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end "
                "with an alphanumeric character")
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise err_bad_request(
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        kind = obj.get("kind")
        if kind and kind != rt.kind:
            raise err_bad_request(
                "the kind of the provided object (%s) does not match the kind "
                "of the request (%s)" % (kind, rt.kind))
        av = obj.get("apiVersion")
        if av and av.rpartition("/")[0] != rt.group:
            raise err_bad_request(
                "the API version in the data (%s) does not match the expected "
                "API version (%s)" % (av, rt.api_version))
        if rt.skey == "apiextensions.k8s.io/customresourcedefinitions":
            spec = obj.get("spec") or {}
            names = spec.get("names") or {}
            want = "%s.%s" % (names.get("plural"), spec.get("group"))
            if name != want:
                raise err_invalid(rt, name, "metadata.name", name,
                                  'must be spec.names.plural+"."+spec.group')

    def _create_internal(self, rt, obj):
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        ns = meta.get("namespace", "") if rt.namespaced else ""
        return self.do_create(rt, ns, obj, user=None)

    def do_create(self, rt, ns, obj, user, dry=False):
        meta = obj.setdefault("metadata", {}) \
            if isinstance(obj, dict) else None
        if meta is None:
            raise err_bad_request("the body must be a JSON object")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        self._validate(rt, obj, ns)
        obj = to_storage(rt, obj)
        meta = obj["metadata"]
        name = meta["name"]
        if rt.namespaced and ("", ns) not in self.objects.get("/namespaces",
                                                              {}):
            raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns,
                           {"name": ns, "kind": "namespaces"})
        store = self.objects.setdefault(rt.skey, {})
        if (ns, name) in store:
            raise err_exists(rt, name)
        if rt.status:
            if rt.custom:
                obj.pop("status", None)
        for k in ("resourceVersion", "uid", "creationTimestamp",
                  "deletionTimestamp", "selfLink"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rt.custom or rt.skey.startswith("apiextensions"):
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        self._defaults(rt, obj)
        if rt.skey == "apiextensions.k8s.io/customresourcedefinitions":
            obj["status"] = self._crd_status(obj)
        if dry:
            meta["resourceVersion"] = str(self.rv)
            return self.view(rt, obj)
        meta["resourceVersion"] = self.next_rv()
        store[(ns, name)] = obj
        self.record("ADDED", rt, obj, None)
        return self.view(rt, obj)

    def _crd_status(self, crd, old=None):
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        if old and old.get("conditions"):
            return dict(old, acceptedNames=names)
        return {"acceptedNames": names,
                "storedVersions": [v["name"] for v in spec.get("versions", [])
                                   if v.get("storage")],
                "conditions": [
                    {"type": "Established", "status": "True",
                     "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted",
                     "lastTransitionTime": now_rfc3339()},
                    {"type": "NamesAccepted", "status": "True",
                     "reason": "NoConflicts",
                     "message": "no conflicts found",
                     "lastTransitionTime": now_rfc3339()}]}

    def get(self, rt, ns, name):
        obj = self.objects.get(rt.skey, {}).get((ns, name))
        if obj is None:
            raise err_not_found(rt, name)
        return obj

    def do_update(self, rt, ns, name, new, sub, user, dry=False,
                  check_rv=True):
        """PUT semantics (also the end of every patch)."""
        old = self.get(rt, ns, name)
        if not isinstance(new, dict):
            raise err_bad_request("the body must be a JSON object")
        nmeta = new.setdefault("metadata", {})
        if nmeta.get("name") not in (None, name):
            raise err_bad_request(
                "the name of the object (%s) does not match the name on the "
                "URL (%s)" % (nmeta.get("name"), name))
        nmeta["name"] = name
        if rt.namespaced and nmeta.get("namespace") not in (None, "", ns):
            raise err_bad_request(
                "the namespace of the provided object does not match the "
                "namespace sent on the request")
        want_rv = nmeta.get("resourceVersion")
        if check_rv and want_rv and want_rv != old["metadata"][
                "resourceVersion"]:
            raise err_conflict(rt, name)
        if nmeta.get("uid") and nmeta["uid"] != old["metadata"]["uid"]:
            raise ApiError(
                409, "Conflict",
                'Operation cannot be fulfilled on %s "%s": Precondition '
                'failed: UID in precondition: %s, UID in object meta: %s' %
                (qualified(rt), name, nmeta["uid"], old["metadata"]["uid"]),
                details(rt, name))
        if sub == "status":
            obj = copy.deepcopy(old)
            if "status" in new:
                obj["status"] = copy.deepcopy(new["status"])
            else:
                obj.pop("status", None)
        else:
            obj = copy.deepcopy(new)
            self._validate(rt, obj, ns)
            obj = to_storage(rt, obj)
            meta = obj["metadata"]
            ometa = old["metadata"]
            for k in ("uid", "creationTimestamp", "deletionTimestamp",
                      "generation"):
                if k in ometa:
                    meta[k] = ometa[k]
                else:
                    meta.pop(k, None)
            if rt.status:
                if "status" in old:
                    obj["status"] = copy.deepcopy(old["status"])
                else:
                    obj.pop("status", None)
            obj["apiVersion"] = rt.api_version
            obj["kind"] = rt.kind
            self._defaults(rt, obj, old)
            if rt.skey == "apiextensions.k8s.io/customresourcedefinitions":
                obj["status"] = self._crd_status(obj, old.get("status"))
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        obj["apiVersion"] = old["apiVersion"] if sub == "status" else \
            obj["apiVersion"]

        def body(o):
            o = dict(o)
            o.pop("apiVersion", None)
            m = dict(o.get("metadata", {}))
            o["metadata"] = m
            return o

        if body(obj) == body(old):          # no-op: no new RV, no event
            return self.view(rt, old)
        if "generation" in obj["metadata"]:
            strip = lambda o: {k: v for k, v in o.items()
                               if k not in ("metadata", "status",
                                            "apiVersion", "kind")}
            if strip(obj) != strip(old):
                obj["metadata"]["generation"] = \
                    old["metadata"].get("generation", 1) + 1
        if dry:
            return self.view(rt, obj)
        # a deleting object whose last finalizer went away is removed now
        if obj["metadata"].get("deletionTimestamp") and \
                not obj["metadata"].get("finalizers"):
            obj["metadata"]["resourceVersion"] = self.next_rv()
            del self.objects[rt.skey][(ns, name)]
            self.record("DELETED", rt, obj, old)
            return self.view(rt, obj)
        obj["metadata"]["resourceVersion"] = self.next_rv()
        self.objects[rt.skey][(ns, name)] = obj
        self.record("MODIFIED", rt, obj, old)
        return self.view(rt, obj)

    def do_delete(self, rt, ns, name, opts, dry=False):
        old = self.get(rt, ns, name)
        pre = (opts or {}).get("preconditions") or {}
        if pre.get("resourceVersion") and \
                pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409, "Conflict",
                'Operation cannot be fulfilled on %s "%s": Precondition '
                'failed: ResourceVersion in precondition: %s, '
                'ResourceVersion in object meta: %s' %
                (qualified(rt), name, pre["resourceVersion"],
                 old["metadata"]["resourceVersion"]), details(rt, name))
        if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
            raise ApiError(
                409, "Conflict",
                'Operation cannot be fulfilled on %s "%s": Precondition '
                'failed: UID in precondition: %s, UID in object meta: %s' %
                (qualified(rt), name, pre["uid"], old["metadata"]["uid"]),
                details(rt, name))
        if dry:
            return self.view(rt, old)
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return self.view(rt, old)
            obj = copy.deepcopy(old)
            obj["metadata"]["deletionTimestamp"] = now_rfc3339()
            obj["metadata"]["resourceVersion"] = self.next_rv()
            self.objects[rt.skey][(ns, name)] = obj
            self.record("MODIFIED", rt, obj, old)
            return self.view(rt, obj)
        obj = copy.deepcopy(old)
        obj["metadata"]["resourceVersion"] = self.next_rv()
        del self.objects[rt.skey][(ns, name)]
        self.record("DELETED", rt, obj, old)
        if rt.skey == "/namespaces":
            for t in self.all_types():
                if not t.namespaced:
                    continue
                store = self.objects.get(t.skey, {})
                for key in [k for k in store if k[0] == name]:
                    gone = store.pop(key)
                    gone["metadata"]["resourceVersion"] = self.next_rv()
                    self.record("DELETED", t, gone, gone)
        return self.view(rt, obj)

    def select(self, rt, ns, lsel, fsel):
        items = []
        for (ons, _), obj in self.objects.get(rt.skey, {}).items():
            if ns and ons != ns:
                continue
            if lsel and not label_match(lsel, obj["metadata"].get("labels")):
                continue
            if fsel and not field_match(fsel, obj):
                continue
            items.append(obj)
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""),
                                  o["metadata"]["name"]))
        return items

    # ---- auth

    def static_tokens(self):
        toks = {}
        for spec in self.args.token or []:
            tok, _, rest = spec.partition("=")
            if rest:
                user, _, groups = rest.partition("|")
                toks[tok] = (user, [g for g in groups.split(",") if g])
            else:
                toks[tok] = ("admin", [MASTERS])
        for spec in self.args.token_file or []:
            fn, _, who = spec.partition("=")
            try:
                with open(fn) as f:
                    text = f.read()
            except OSError:
                continue
            if who:   # FILE=USER: the whole file is one token, as a pod sees
                user, _, groups = who.partition("|")
                if text.strip():
                    toks[text.strip()] = (user, [g for g in groups.split(",")
                                                 if g])
                continue
            for row in csv.reader(io.StringIO(text)):
                row = [c.strip() for c in row]
                if not row or not row[0] or row[0].startswith("#"):
                    continue
                if len(row) == 1:
                    toks[row[0]] = ("admin", [MASTERS])
                else:
                    groups = [g for g in (row[3] if len(row) > 3 else ""
                                          ).split(",") if g]
                    toks[row[0]] = (row[1], groups)
        toks.update(self.dynamic_tokens)
        return toks

    @staticmethod
    def user_groups(user, groups):
        groups = list(groups)
        if user.startswith("system:serviceaccount:"):
            ns = user.split(":")[2]
            for g in ("system:serviceaccounts",
                      "system:serviceaccounts:" + ns):
                if g not in groups:
                    groups.append(g)
        if "system:authenticated" not in groups:
            groups.append("system:authenticated")
        return groups

    # ---- RBAC

    def _bound_rules(self, user, groups, ns):
        """Yield (binding, role, index, rule) for every rule granted."""
        def subject_match(s):
            k = s.get("kind")
            if k == "ServiceAccount":
                return user == "system:serviceaccount:%s:%s" % (
                    s.get("namespace") or ns, s.get("name"))
            if k == "User":
                return s.get("name") == user
            if k == "Group":
                return s.get("name") in groups
            return False

        bindings = [("ClusterRoleBinding", b) for b in self.objects.get(
            "rbac.authorization.k8s.io/clusterrolebindings", {}).values()]
        if ns:
            bindings += [("RoleBinding", b) for (bns, _), b in self.objects.get(
                "rbac.authorization.k8s.io/rolebindings", {}).items()
                if bns == ns]
        for bkind, b in bindings:
            bns = b["metadata"].get("namespace", "")
            if not any(subject_match(dict(s, namespace=s.get("namespace") or
                                          bns))
                       for s in b.get("subjects") or []):
                continue
            ref = b.get("roleRef") or {}
            if ref.get("kind") == "ClusterRole":
                role = self.objects.get(
                    "rbac.authorization.k8s.io/clusterroles", {}).get(
                    ("", ref.get("name")))
                rid = "ClusterRole/" + str(ref.get("name"))
            else:
                role = self.objects.get(
                    "rbac.authorization.k8s.io/roles", {}).get(
                    (bns, ref.get("name")))
                rid = "Role/%s/%s" % (bns, ref.get("name"))
            if role is None:
                continue
            bid = "%s/%s" % (bkind, b["metadata"]["name"]) if not bns else \
                "%s/%s/%s" % (bkind, bns, b["metadata"]["name"])
            for i, rule in enumerate(role.get("rules") or []):
                yield bid, rid, i, rule

    @staticmethod
    def rule_allows(rule, verb, group, resource, name):
        if not any(v in ("*", verb) for v in rule.get("verbs") or []):
            return False
        if not any(g in ("*", group) for g in rule.get("apiGroups") or []):
            return False
        base, _, sub = resource.partition("/")
        ok = False
        for r in rule.get("resources") or []:
            if r == "*" or r == resource:
                ok = True
            elif sub and (r == "*/" + sub or r == base + "/*"):
                ok = True
        if not ok:
            return False
        names = rule.get("resourceNames") or []
        if names and name not in names:
            return False
        return True

    def authorize(self, user, groups, verb, rt, ns, name, sub):
        resource = rt.plural + ("/" + sub if sub else "")
        entry = {"time": time.time(), "user": user, "groups": groups,
                 "verb": verb, "apiGroup": rt.group, "resource": rt.plural,
                 "subresource": sub or "", "namespace": ns or "",
                 "name": name or ""}
        if MASTERS in groups:
            entry.update(allowed=True, reason="system:masters", matched=[])
            self.rbac_log.append(entry)
            return
        matched = [{"binding": b, "role": r, "rule": i}
                   for b, r, i, rule in self._bound_rules(user, groups, ns)
                   if self.rule_allows(rule, verb, rt.group, resource, name)]
        entry["allowed"] = bool(matched)
        entry["matched"] = matched
        entry["reason"] = "RBAC: allowed by %s" % matched[0]["role"] \
            if matched else "no RBAC rule matched"
        self.rbac_log.append(entry)
        if matched:
            return
        what = '%s "%s"' % (qualified(rt), name) if name else qualified(rt)
        where = 'in the namespace "%s"' % ns if ns else "at the cluster scope"
        raise ApiError(
            403, "Forbidden",
            '%s is forbidden: User "%s" cannot %s resource "%s" in API group '
            '"%s" %s' % (what, user, verb, resource, rt.group, where),
            details(rt, name))

    def rbac_grants(self):
        """Every (subject, rule item) granted by bindings, with use counts."""
        grants = []
        subjects = set()
        for b in list(self.objects.get(
                "rbac.authorization.k8s.io/clusterrolebindings", {}).values()) + \
                list(self.objects.get(
                    "rbac.authorization.k8s.io/rolebindings", {}).values()):
            bns = b["metadata"].get("namespace", "")
            for s in b.get("subjects") or []:
                if s.get("kind") == "ServiceAccount":
                    subjects.add(("system:serviceaccount:%s:%s" % (
                        s.get("namespace") or bns, s.get("name")), ()))
                elif s.get("kind") == "User":
                    subjects.add((s.get("name"), ()))
                elif s.get("kind") == "Group":
                    subjects.add(("group:" + str(s.get("name")),
                                  (s.get("name"),)))
        seen = set()
        for user, grp in sorted(subjects):
            namespaces = [k[1] for k in self.objects.get("/namespaces", {})]
            for ns in [""] + sorted(namespaces):
                for bid, rid, i, rule in self._bound_rules(user, list(grp),
                                                           ns):
                    if bid.startswith("RoleBinding") and not ns:
                        continue
                    scope = ns if bid.startswith("RoleBinding") else "*"
                    for g in rule.get("apiGroups") or []:
                        for r in rule.get("resources") or []:
                            for v in rule.get("verbs") or []:
                                key = (user, bid, rid, i, g, r, v, scope)
                                if key in seen:
                                    continue
                                seen.add(key)
                                grants.append({
                                    "subject": user, "binding": bid,
                                    "role": rid, "rule": i, "apiGroup": g,
                                    "resource": r, "verb": v,
                                    "namespace": scope, "used": 0})
        for g in grants:
            for d in self.rbac_log:
                if not d.get("allowed") or d.get("nonResourceURL"):
                    continue
                subj_ok = d["user"] == g["subject"] or (
                    g["subject"].startswith("group:") and
                    g["subject"][6:] in d["groups"])
                if not subj_ok:
                    continue
                if not any(m["role"] == g["role"] and m["rule"] == g["rule"]
                           and m["binding"] == g["binding"]
                           for m in d.get("matched", [])):
                    continue
                res = d["resource"] + ("/" + d["subresource"]
                                       if d["subresource"] else "")
                if g["verb"] not in ("*", d["verb"]):
                    continue
                if g["apiGroup"] not in ("*", d["apiGroup"]):
                    continue
                if g["resource"] != "*" and g["resource"] != res and not (
                        d["subresource"] and g["resource"] in (
                            "*/" + d["subresource"], d["resource"] + "/*")):
                    continue
                g["used"] += 1
        return grants

    # ---- PKI

    def ensure_pki(self):
        os.makedirs(self.pki, exist_ok=True)
        ca_crt = os.path.join(self.pki, "ca.crt")
        if not os.path.exists(ca_crt):
            ca_key = os.path.join(self.pki, "ca.key")
            run_openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt",
                         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                         ca_key, "-out", ca_crt + ".tmp", "-days", "3650",
                         "-subj", "/CN=kubefake-ca", "-addext",
                         "basicConstraints=critical,CA:TRUE", "-addext",
                         "keyUsage=critical,keyCertSign,cRLSign,"
                         "digitalSignature"])
            os.replace(ca_crt + ".tmp", ca_crt)
        # The serving certificate is re-issued when --server-names changes
        # between runs on the same state dir.
        san = server_san(self.args.server_names)
        san_file = os.path.join(self.pki, "server.san")
        try:
            with open(san_file) as f:
                have = f.read()
        except OSError:
            have = None
        if have != san or \
                not os.path.exists(os.path.join(self.pki, "server.crt")):
            self.issue("server", "kubefake", [], server=True, san=san)
            with open(san_file, "w") as f:
                f.write(san)
        if not os.path.exists(os.path.join(self.pki, "admin.crt")):
            self.issue("admin", "admin", [MASTERS])

    def issue(self, stem, cn, orgs, server=False, san=None):
        """Issue a certificate signed by the CA; returns (crt, key) paths."""
        crt = os.path.join(self.pki, stem + ".crt")
        key = os.path.join(self.pki, stem + ".key")
        csr = os.path.join(self.pki, stem + ".csr")
        ext = os.path.join(self.pki, stem + ".ext")
        subj = "/CN=" + cn.replace("/", "\\/") + "".join(
            "/O=" + o.replace("/", "\\/") for o in orgs)
        run_openssl(["req", "-new", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                     "-out", csr, "-subj", subj])
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n")
            if server:
                f.write("extendedKeyUsage=serverAuth\nsubjectAltName=%s\n"
                        % (san or server_san(None)))
            else:
                f.write("extendedKeyUsage=clientAuth\n")
        run_openssl(["x509", "-req", "-in", csr, "-CA",
                     os.path.join(self.pki, "ca.crt"), "-CAkey",
                     os.path.join(self.pki, "ca.key"), "-set_serial",
                     str(random.getrandbits(62)), "-days", "3650",
                     "-extfile", ext, "-out", crt + ".tmp"])
        os.replace(crt + ".tmp", crt)
        os.unlink(csr)
        os.unlink(ext)
        os.chmod(key, 0o600)
        return crt, key


def server_san(names):
    """subjectAltName of the serving certificate: the default addresses, or
    exactly the --server-names (IPs as IP:, others as DNS:)."""
    if not names:
        return "IP:127.0.0.1,IP:::1,DNS:localhost"
    out = []
    for n in names.split(","):
        n = n.strip()
        if not n:
            continue
        try:
            ipaddress.ip_address(n)
            out.append("IP:" + n)
        except ValueError:
            out.append("DNS:" + n)
    return ",".join(out)


def run_openssl(argv):
    r = subprocess.run(["openssl"] + argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("openssl %s failed: %s" % (argv[0], r.stderr))


def b64file(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


# ------------------------------------------------------------------- HTTP ---

class DropConnection(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubefake"
    timeout = 300

    def log_message(self, fmt, *args):  # quiet; tests read /_fake/requests
        if self.server.srv.args.verbose:
            BaseHTTPRequestHandler.log_message(self, fmt, *args)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = \
        lambda self: self.dispatch()

    # ---- plumbing

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
        return self.rfile.read(n) if n else b""

    def answered(self, code):
        """Logs the request with its status before the answer goes out: a
        client that has the answer (and a test that then reads
        /_fake/requests) finds the request logged. Control requests are not
        logged."""
        self.status_sent = code
        url = getattr(self, "url", None)
        if url is not None and not url.path.startswith("/_fake/"):
            self.log_request_entry()

    def send_json(self, code, obj, headers=None):
        data = json.dumps(obj, separators=(",", ":")).encode()
        self.answered(code)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_text(self, code, text):
        data = text.encode()
        self.answered(code)
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request_entry(self):
        srv = self.server.srv
        if getattr(self, "logged", False):
            return
        self.logged = True
        body = None
        if self.body_bytes:
            try:
                body = json.loads(self.body_bytes)
            except ValueError:
                body = self.body_bytes.decode("utf-8", "replace")[:4096]
        with srv.lock:
            srv.requests.append({
                "time": time.time(), "method": self.command,
                "path": self.url.path, "query": self.url.query,
                "user": self.user, "auth": getattr(self, "auth", "none"),
                "status": getattr(self, "status_sent", 0),
                "contentType": self.headers.get("Content-Type", ""),
                "accept": self.headers.get("Accept", ""),
                "host": self.headers.get("Host", ""),
                "sni": getattr(self.connection, "sni", None), "body": body})
            if len(srv.requests) > 200000:   # bound memory in long runs
                del srv.requests[:100000]

    def dispatch(self):
        self.url = urllib.parse.urlsplit(self.path)
        self.query = dict(urllib.parse.parse_qsl(self.url.query,
                                                 keep_blank_values=True))
        self.user = None
        self.auth = "none"
        self.status_sent = 0
        self.logged = False
        self.body_bytes = b""
        try:
            self.body_bytes = self.read_body()
            if self.url.path.startswith("/_fake/"):
                return self.control()
            try:
                auth_error = None
                try:
                    self.authenticate()
                except ApiError as e:
                    auth_error = e
                self.apply_faults()
                if auth_error is not None:
                    raise auth_error
                self.route()
            except ApiError as e:
                self.send_json(e.code, e.status(), e.headers)
            except DropConnection:
                self.close_connection = True
                self.status_sent = -1
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError,
                    OSError):
                self.close_connection = True
                raise
            except Exception as e:  # bug in the fake: say so loudly
                traceback.print_exc()
                self.send_json(500, ApiError(500, "InternalError",
                                             "kubefake: %r" % e).status())
            finally:
                self.log_request_entry()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError,
                OSError):
            self.close_connection = True

    def apply_faults(self):
        srv = self.server.srv
        fault = None
        with srv.lock:
            for f in srv.faults:
                if f["count"] == 0:
                    continue
                if f.get("method") and f["method"].upper() != self.command:
                    continue
                if not re.search(f.get("path", ""), self.url.path):
                    continue
                if f.get("query") and not re.search(f["query"],
                                                    self.url.query):
                    continue
                if f["count"] > 0:
                    f["count"] -= 1
                f["hits"] = f.get("hits", 0) + 1
                fault = f
                break
        if fault is None:
            return
        if fault.get("delay"):
            time.sleep(float(fault["delay"]))
        if fault.get("action") == "drop":
            raise DropConnection()
        if fault.get("status"):
            code = int(fault["status"])
            headers = {}
            det = None
            if fault.get("retryAfter") is not None:
                headers["Retry-After"] = str(fault["retryAfter"])
                det = {"retryAfterSeconds": int(fault["retryAfter"])}
            raise ApiError(code, fault.get("reason") or {
                500: "InternalError", 503: "ServiceUnavailable",
                429: "TooManyRequests", 410: "Expired", 409: "Conflict",
                404: "NotFound", 403: "Forbidden", 401: "Unauthorized",
                504: "Timeout"}.get(code, "InternalError"),
                fault.get("message") or "injected fault", det, headers)

    def authenticate(self):
        srv = self.server.srv
        cert = None
        try:
            cert = self.connection.getpeercert()
        except (AttributeError, ValueError):
            cert = None
        if cert:
            cn, orgs = None, []
            for rdn in cert.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        cn = v
                    elif k == "organizationName":
                        orgs.append(v)
            if cn:
                self.auth = "cert"
                self.user = cn
                self.groups = srv.user_groups(cn, orgs)
                return
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            tok = auth[7:].strip()
            with srv.lock:
                found = srv.static_tokens().get(tok)
            if found:
                self.auth = "token"
                self.user = found[0]
                self.groups = srv.user_groups(found[0], found[1])
                return
            raise err_unauthorized()
        if self.url.path in ("/version", "/healthz", "/livez", "/readyz"):
            self.user = "system:anonymous"
            self.groups = ["system:unauthenticated"]
            return
        raise err_unauthorized()

    # ---- routing

    def route(self):
        srv = self.server.srv
        path = self.url.path.rstrip("/") or "/"
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")
                 if p != ""]
        is_resource = (parts[:1] == ["api"] and len(parts) > 2) or (
            parts[:1] == ["apis"] and len(parts) > 3)
        if not is_resource and srv.rbac and MASTERS not in self.groups:
            with srv.lock:   # discovery is open to every authenticated user
                srv.rbac_log.append({
                    "time": time.time(), "user": self.user,
                    "groups": self.groups, "verb": self.command.lower(),
                    "nonResourceURL": path, "apiGroup": "", "resource": "",
                    "subresource": "", "namespace": "", "name": "",
                    "allowed": True, "matched": [],
                    "reason": "non-resource URL (system:discovery)"})
        if path in ("/healthz", "/livez", "/readyz"):
            return self.send_text(200, "ok")
        if path == "/version":
            return self.send_json(200, KUBE_VERSION)
        if parts and parts[0] == "openapi":
            return self.openapi(parts[1:])
        if not parts or parts[0] not in ("api", "apis"):
            raise err_path_not_found()
        if self.command not in ("GET", "HEAD") and (
                (parts[0] == "api" and len(parts) <= 2) or
                (parts[0] == "apis" and len(parts) <= 3)):
            raise ApiError(405, "MethodNotAllowed",
                           "the server does not allow this method on the "
                           "requested resource")
        with srv.lock:
            groups = srv.groups()
        if parts[0] == "api":
            if len(parts) == 1:
                return self.send_json(200, {
                    "kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{
                        "clientCIDR": "0.0.0.0/0",
                        "serverAddress": "127.0.0.1:%d" % srv.port}]})
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) == 1:
                return self.send_json(200, {
                    "kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [self.api_group(g, vs) for g, vs in
                               sorted(groups.items()) if g]})
            group = parts[1]
            if group not in groups or not group:
                raise err_path_not_found()
            if len(parts) == 2:
                return self.send_json(200, dict(
                    self.api_group(group, groups[group]), kind="APIGroup",
                    apiVersion="v1"))
            version, rest = parts[2], parts[3:]
        if version not in groups.get(group, []):
            raise err_path_not_found()
        if not rest:
            return self.resource_list(group, version)
        ns = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and \
                rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise err_path_not_found()
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        with srv.lock:
            rt = srv.rtype(group, version, plural)
        if rt is None:
            raise err_path_not_found()
        if ns and not rt.namespaced:
            raise err_path_not_found()
        if rt.namespaced and name and not ns:
            raise err_path_not_found()
        if sub and not ((sub == "status" and rt.status) or
                        sub in [e[0] for e in rt.extra_subresources]):
            raise err_path_not_found()
        self.resource(rt, ns, name, sub)

    def api_group(self, g, versions):
        vs = [{"groupVersion": "%s/%s" % (g, v), "version": v}
              for v in versions]
        return {"name": g, "versions": vs, "preferredVersion": vs[0]}

    def resource_list(self, group, version):
        srv = self.server.srv
        res = []
        with srv.lock:
            types = [t for t in srv.all_types()
                     if t.group == group and t.version == version]
        for t in sorted(types, key=lambda t: t.plural):
            r = {"name": t.plural, "singularName": t.singular,
                 "namespaced": t.namespaced, "kind": t.kind,
                 "verbs": ALL_VERBS}
            if t.short:
                r["shortNames"] = t.short
            if t.categories:
                r["categories"] = t.categories
            res.append(r)
            if t.status:
                res.append({"name": t.plural + "/status", "singularName": "",
                            "namespaced": t.namespaced, "kind": t.kind,
                            "verbs": ["get", "patch", "update"]})
            for sub, kind, verbs in t.extra_subresources:
                r = {"name": t.plural + "/" + sub, "singularName": "",
                     "namespaced": t.namespaced, "kind": kind,
                     "verbs": verbs}
                if kind == "TokenRequest":
                    r.update(group="authentication.k8s.io", version="v1")
                res.append(r)
        gv = version if not group else "%s/%s" % (group, version)
        self.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                             "groupVersion": gv, "resources": res})

    def openapi(self, rest):
        srv = self.server.srv
        with srv.lock:
            types = srv.all_types()
        gvs = {}
        for t in types:
            gvs.setdefault((t.group, t.version), []).append(t)
        if rest == ["v3"]:
            paths = {}
            for (g, v) in sorted(gvs):
                key = "api/v1" if not g else "apis/%s/%s" % (g, v)
                h = "%016X" % (hash(tuple(sorted(t.plural for t in
                                                 gvs[(g, v)]))) & (2**63 - 1))
                paths[key] = {"serverRelativeURL": "/openapi/v3/%s?hash=%s" %
                              (key, h)}
            return self.send_json(200, {"paths": paths})
        if len(rest) >= 2 and rest[0] == "v3":
            key = "/".join(rest[1:])
            m = re.match(r"^(?:api/(v1)|apis/([^/]+)/([^/]+))$", key)
            if not m:
                raise err_path_not_found()
            g, v = ("", "v1") if m.group(1) else (m.group(2), m.group(3))
            if (g, v) not in gvs:
                raise err_path_not_found()
            paths = {}
            schemas = {}
            for t in gvs[(g, v)]:
                prefix = "/api/v1" if not g else "/apis/%s/%s" % (g, v)
                item = prefix + ("/namespaces/{namespace}" if t.namespaced
                                 else "") + "/%s/{name}" % t.plural
                gvk = {"group": g, "version": v, "kind": t.kind}
                params = [{"name": n, "in": "query",
                           "schema": {"type": "string", "uniqueItems": True}}
                          for n in ("dryRun", "fieldManager",
                                    "fieldValidation", "force")]
                ops = {}
                for m_ in ("get", "put", "patch", "delete"):
                    ops[m_] = {"x-kubernetes-group-version-kind": gvk,
                               "x-kubernetes-action": {
                                   "get": "get", "put": "put",
                                   "patch": "patch",
                                   "delete": "delete"}[m_],
                               "parameters": params if m_ != "get" else [],
                               "responses": {"200": {"description": "OK"}}}
                paths[item] = ops
                sname = "%s.%s.%s" % (g or "io.k8s.api.core", v, t.kind)
                schemas[sname] = {
                    "type": "object",
                    "x-kubernetes-group-version-kind": [gvk],
                    "x-kubernetes-preserve-unknown-fields": True}
            return self.send_json(200, {
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes (kubefake)",
                         "version": KUBE_VERSION["gitVersion"]},
                "paths": paths, "components": {"schemas": schemas}})
        raise err_path_not_found()

    # ---- resources

    def verb(self, name, sub):
        m = self.command
        if m in ("GET", "HEAD"):
            watch = self.query.get("watch") in ("1", "true", "True")
            if name and not (watch and not sub):
                return "get"
            return "watch" if watch else "list"
        if m == "POST":
            return "create"
        if m == "PUT":
            return "update"
        if m == "PATCH":
            return "patch"
        if m == "DELETE":
            return "delete" if name else "deletecollection"
        raise ApiError(405, "MethodNotAllowed",
                       "the server does not allow this method on the "
                       "requested resource")

    def decode_body(self, allow_yaml=False):
        ctype = self.headers.get("Content-Type", "application/json")
        ctype = ctype.split(";")[0].strip().lower()
        text = self.body_bytes.decode("utf-8", "replace")
        if ctype in ("application/json", "", "*/*"):
            try:
                return json.loads(text) if text else None
            except ValueError as e:
                raise err_bad_request("error decoding JSON body: %s" % e)
        if ctype == PROTOBUF:
            try:
                return pb_decode(self.body_bytes)
            except (ValueError, KeyError, IndexError) as e:
                raise ApiError(415, "UnsupportedMediaType", str(e))
        if ctype in ("application/yaml", "application/x-yaml") or (
                allow_yaml and ctype == APPLY_PATCH):
            if yaml is None:
                raise err_media(["application/json"])
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise err_bad_request("error decoding YAML body: %s" % e)
        raise err_media(["application/json", "application/yaml"])

    def resource(self, rt, ns, name, sub):
        srv = self.server.srv
        verb = self.verb(name, sub)
        if srv.rbac:
            with srv.lock:
                srv.authorize(self.user, self.groups, verb, rt, ns, name, sub)
        dry = self.query.get("dryRun") == "All"
        if verb == "watch":
            if name:   # GET …/NAME?watch=1 watches that one object
                sel = self.query.get("fieldSelector")
                self.query["fieldSelector"] = "metadata.name=" + name + (
                    "," + sel if sel else "")
            return self.watch(rt, ns)
        if verb == "list":
            return self.list(rt, ns)
        if sub == "token":
            return self.token_request(rt, ns, name)
        if verb == "get":
            with srv.lock:
                out = srv.view(rt, srv.get(rt, ns, name))
            return self.send_json(200, out)
        if verb == "create":
            if name:
                raise ApiError(405, "MethodNotAllowed",
                               "the server does not allow this method on the "
                               "requested resource")
            if rt.namespaced and not ns:
                raise err_path_not_found()
            obj = self.decode_body()
            with srv.lock:
                out = srv.do_create(rt, ns, obj, self.user, dry)
                srv.commit()
            return self.send_json(201, out)
        if verb == "update":
            obj = self.decode_body()
            with srv.lock:
                out = srv.do_update(rt, ns, name, obj, sub, self.user, dry)
                srv.commit()
            return self.send_json(200, out)
        if verb == "patch":
            return self.patch(rt, ns, name, sub, dry)
        if verb == "delete":
            opts = self.decode_body() if self.body_bytes else None
            with srv.lock:
                out = srv.do_delete(rt, ns, name, opts, dry)
                srv.commit()
            return self.send_json(200, out)
        if verb == "deletecollection":
            lsel = parse_label_selector(self.query.get("labelSelector"))
            fsel = parse_field_selector(self.query.get("fieldSelector"))
            with srv.lock:
                items = [srv.do_delete(rt, o["metadata"].get("namespace", ""),
                                       o["metadata"]["name"], None, dry)
                         for o in srv.select(rt, ns, lsel, fsel)]
                srv.commit()
                rv = str(srv.rv)
            return self.send_json(200, {
                "kind": rt.list_kind, "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": rv}, "items": items})

    def token_request(self, rt, ns, name):
        srv = self.server.srv
        req = self.decode_body() or {}
        with srv.lock:
            srv.get(rt, ns, name)
            tok = "kf-" + secrets.token_urlsafe(24)
            srv.dynamic_tokens[tok] = ("system:serviceaccount:%s:%s" %
                                       (ns, name), [])
            srv.dirty = True
            srv.commit()
        secs = ((req.get("spec") or {}).get("expirationSeconds")) or 3600
        exp = datetime.datetime.now(datetime.timezone.utc) + \
            datetime.timedelta(seconds=int(secs))
        self.send_json(201, {
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns,
                         "creationTimestamp": None},
            "spec": {"audiences": ["https://kubernetes.default.svc"],
                     "expirationSeconds": int(secs)},
            "status": {"token": tok, "expirationTimestamp":
                       exp.strftime("%Y-%m-%dT%H:%M:%SZ")}})

    def patch(self, rt, ns, name, sub, dry):
        srv = self.server.srv
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        accepted = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
        if not rt.custom:
            accepted.insert(2, STRATEGIC_PATCH)
        if ctype not in accepted:
            raise err_media(accepted)
        patch = self.decode_body(allow_yaml=True) if ctype == APPLY_PATCH \
            else self._json_body()
        if ctype != JSON_PATCH and not isinstance(patch, dict):
            raise err_bad_request("the patch must be a JSON object")
        with srv.lock:
            cur = srv.objects.get(rt.skey, {}).get((ns, name))
            if cur is None:
                if ctype != APPLY_PATCH or sub:
                    raise err_not_found(rt, name)
                # server-side apply creates what does not exist yet
                patch.setdefault("metadata", {}).setdefault("name", name)
                out = srv.do_create(rt, ns, patch, self.user, dry)
                code = 201
            else:
                base = srv.view(rt, cur)
                if ctype == MERGE_PATCH:
                    new = merge_patch(base, patch)
                elif ctype == JSON_PATCH:
                    new = json_patch(base, patch)
                elif ctype == STRATEGIC_PATCH:
                    new = strategic_patch(base, patch)
                else:   # apply, approximated as a merge of the applied config
                    new = merge_patch(base, patch)
                if not isinstance(new, dict):
                    raise err_bad_request("patch result must be an object")
                # a patch checks the resourceVersion only if it names one
                if self._patch_rv(ctype, patch) is None:
                    new.setdefault("metadata", {})["resourceVersion"] = \
                        cur["metadata"]["resourceVersion"]
                out = srv.do_update(rt, ns, name, new, sub, self.user, dry)
                code = 200
            srv.commit()
        self.send_json(code, out)

    def _json_body(self):
        try:
            return json.loads(self.body_bytes or b"null")
        except ValueError as e:
            raise err_bad_request("error decoding patch: %s" % e)

    @staticmethod
    def _patch_rv(ctype, patch):
        if ctype == JSON_PATCH:
            for op in patch if isinstance(patch, list) else []:
                if op.get("path") == "/metadata/resourceVersion":
                    return op.get("value")
            return None
        if isinstance(patch, dict):
            return (patch.get("metadata") or {}).get("resourceVersion")
        return None

    # ---- list

    def list(self, rt, ns):
        srv = self.server.srv
        q = self.query
        lsel = parse_label_selector(q.get("labelSelector"))
        fsel = parse_field_selector(q.get("fieldSelector"))
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise err_bad_request("invalid limit")
        cont = q.get("continue")
        with srv.lock:
            if cont:
                snap_rv, items = self._continue(cont, rt, ns, lsel, fsel)
            else:
                snap_rv = srv.rv
                items = srv.select(rt, ns, lsel, fsel)
                items = [srv.view(rt, o) for o in items]
            meta = {"resourceVersion": str(snap_rv)}
            if limit > 0 and len(items) > limit:
                page, rest = items[:limit], items[limit:]
                sid = secrets.token_hex(8)
                now = time.time()
                for k in [k for k, v in srv.snapshots.items()
                          if now - v[2] > max(srv.continue_ttl, 60)]:
                    del srv.snapshots[k]
                while len(srv.snapshots) >= 1000:
                    del srv.snapshots[next(iter(srv.snapshots))]
                srv.snapshots[sid] = (snap_rv, rest, now)
                last = page[-1]["metadata"]
                tok = {"v": "meta.k8s.io/v1", "rv": snap_rv,
                       "start": "%s/%s\x00" % (last.get("namespace", ""),
                                               last["name"]),
                       "ep": srv.continue_epoch, "t": time.time(),
                       "id": sid}
                meta["continue"] = base64.urlsafe_b64encode(
                    json.dumps(tok).encode()).decode()
                meta["remainingItemCount"] = len(rest)
                items = page
        self.send_json(200, {"kind": rt.list_kind,
                             "apiVersion": rt.api_version,
                             "metadata": meta, "items": items})

    def _continue(self, cont, rt, ns, lsel, fsel):
        srv = self.server.srv
        try:
            tok = json.loads(base64.urlsafe_b64decode(cont.encode()))
            rv, start = int(tok["rv"]), tok["start"]
        except (ValueError, KeyError, TypeError):
            raise err_bad_request("continue key is not valid: incorrect "
                                  "encoded start resourceVersion "
                                  "(version meta.k8s.io/v1)")
        expired = rv < srv.compacted or tok.get("ep") != srv.continue_epoch \
            or (srv.continue_ttl and time.time() - tok.get("t", 0) >
                srv.continue_ttl)
        if expired:
            srv.snapshots.pop(tok.get("id"), None)
            e = err_gone(CONTINUE_EXPIRED)
            raise e
        snap = srv.snapshots.get(tok.get("id"))
        if snap is not None:
            return snap[0], snap[1]
        # snapshot lost (restart): continue from the current state
        items = [srv.view(rt, o) for o in srv.select(rt, ns, lsel, fsel)
                 if "%s/%s\x00" % (o["metadata"].get("namespace", ""),
                                   o["metadata"]["name"]) > start]
        return rv, items

    # ---- watch

    def watch(self, rt, ns):
        srv = self.server.srv
        q = self.query
        if q.get("sendInitialEvents") not in (None, ""):
            raise ApiError(
                422, "Invalid",
                'ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: '
                'Forbidden: sendInitialEvents is forbidden for watch unless '
                'the WatchList feature gate is enabled',
                {"kind": "ListOptions", "group": "meta.k8s.io", "causes": [{
                    "reason": "FieldValueForbidden", "message":
                    "Forbidden: sendInitialEvents is forbidden for watch "
                    "unless the WatchList feature gate is enabled",
                    "field": "sendInitialEvents"}]})
        lsel = parse_label_selector(q.get("labelSelector"))
        fsel = parse_field_selector(q.get("fieldSelector"))
        bookmarks = q.get("allowWatchBookmarks") in ("1", "true", "True")
        try:
            tmo = float(q.get("timeoutSeconds") or srv.args.watch_timeout)
        except ValueError:
            raise err_bad_request("invalid timeoutSeconds")
        deadline = time.time() + tmo
        rvq = q.get("resourceVersion", "")
        gone_mode = q.get("fakeGone") or srv.gone_mode
        initial = []
        gone = None
        with srv.lock:
            if rvq in ("", "0"):
                pos = srv.rv
                initial = [{"type": "ADDED", "object": srv.view(rt, o)}
                           for o in srv.select(rt, ns, lsel, fsel)]
            else:
                try:
                    pos = int(rvq)
                except ValueError:
                    raise err_bad_request('invalid resource version "%s"' %
                                          rvq)
                if pos < srv.compacted:
                    gone = err_too_old(pos, srv.compacted + 1)
            drop_gen = srv.drop_gen
            bm_seq = srv.bookmark_seq
            err_seq = len(srv.watch_errors)
        if gone is not None and gone_mode == "http":
            raise gone
        self.answered(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

        def emit(ev):
            line = json.dumps(ev, separators=(",", ":")).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()

        def finish():
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        if gone is not None:
            emit({"type": "ERROR", "object": gone.status()})
            return finish()
        for ev in initial:
            emit(ev)
        interval = srv.bookmark_interval
        next_bm = time.time() + interval if interval > 0 else None
        while True:
            out = []
            bookmark = None
            with srv.lock:
                if srv.drop_gen != drop_gen:
                    raise DropConnection()
                injected = [st for st, rx in srv.watch_errors[err_seq:]
                            if re.search(rx, self.url.path)]
                err_seq = len(srv.watch_errors)
                if injected:
                    out.append({"type": "ERROR", "object": injected[0]})
                    stop = True
                elif pos < srv.compacted:
                    out.append({"type": "ERROR", "object": err_too_old(
                        pos, srv.compacted + 1).status()})
                    stop = True
                else:
                    stop = False
                    i = bisect_right(srv.history, pos, key=lambda e: e.rv)
                    for e in srv.history[i:]:
                        pos = e.rv
                        ev = self._filter(rt, ns, lsel, fsel, e)
                        if ev is not None:
                            out.append(ev)
                if not out and not stop:
                    now = time.time()
                    want_bm = bookmarks and (
                        srv.bookmark_seq != bm_seq or
                        (next_bm is not None and now >= next_bm))
                    if want_bm:
                        bm_seq = srv.bookmark_seq
                        if interval > 0:
                            next_bm = now + interval
                        pos = srv.rv
                        bookmark = {"type": "BOOKMARK", "object": {
                            "kind": rt.kind, "apiVersion": rt.api_version,
                            "metadata": {"resourceVersion": str(srv.rv)}}}
                    elif now >= deadline:
                        stop = True
                    else:
                        wait = deadline - now
                        if bookmarks and next_bm is not None:
                            wait = min(wait, max(next_bm - now, 0.01))
                        srv.cond.wait(min(wait, 1.0))
                        if self._client_gone():
                            raise DropConnection()
                        interval = srv.bookmark_interval
                        if interval > 0 and next_bm is None:
                            next_bm = time.time() + interval
                        continue
            for ev in out:
                emit(ev)
            if bookmark:
                emit(bookmark)
                with srv.lock:
                    srv.bookmarks_sent += 1
            if stop:
                return finish()

    def _client_gone(self):
        """A watch client sends nothing; readable means it went away."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(r)

    def _filter(self, rt, ns, lsel, fsel, e):
        srv = self.server.srv
        if e.skey != rt.skey:
            return None

        def match(o):
            if o is None:
                return False
            if ns and o["metadata"].get("namespace") != ns:
                return False
            if lsel and not label_match(lsel, o["metadata"].get("labels")):
                return False
            if fsel and not field_match(fsel, o):
                return False
            return True

        now_m = match(e.obj)
        if e.type == "ADDED":
            t = "ADDED" if now_m else None
        elif e.type == "DELETED":
            t = "DELETED" if (match(e.prev) or now_m) else None
        else:
            was = match(e.prev)
            t = {(True, True): "MODIFIED", (False, True): "ADDED",
                 (True, False): "DELETED"}.get((was, now_m))
        if t is None:
            return None
        return {"type": t, "object": srv.view(rt, e.obj)}

    # ---- control API

    def control(self):
        srv = self.server.srv
        self.user = "_fake"
        path = self.url.path
        m = self.command
        body = {}
        if self.body_bytes:
            try:
                body = json.loads(self.body_bytes)
            except ValueError:
                return self.send_json(400, {"error": "body must be JSON"})
        with srv.lock:
            if path == "/_fake/drop" and m == "POST":
                srv.drop_gen += 1
                srv.cond.notify_all()
                for c in list(srv.conns):
                    if c is self.connection:
                        continue
                    try:
                        c.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                self.close_connection = True
                return self.send_json(200, {"dropped": len(srv.conns) - 1})
            if path == "/_fake/compact" and m == "POST":
                upto = int(body.get("rv", srv.rv))
                srv.history = [e for e in srv.history if e.rv > upto]
                srv.compacted = max(srv.compacted, upto)
                srv.snapshots.clear()
                srv.cond.notify_all()
                srv.save()
                return self.send_json(200, {"compacted": srv.compacted,
                                            "rv": srv.rv})
            if path == "/_fake/faults":
                if m == "POST":
                    f = dict(body)
                    f.setdefault("count", 1)
                    f.setdefault("path", "")
                    re.compile(f["path"])
                    srv.faults.append(f)
                    return self.send_json(200, f)
                if m == "DELETE":
                    srv.faults = []
                    return self.send_json(200, {})
                return self.send_json(200, {"faults": srv.faults})
            if path == "/_fake/expire-continue" and m == "POST":
                srv.continue_epoch += 1
                srv.snapshots.clear()
                return self.send_json(200, {})
            if path == "/_fake/watch-error" and m == "POST":
                code = int(body.get("code", 500))
                st = ApiError(code, body.get("reason") or (
                    "Expired" if code == 410 else "InternalError"),
                    body.get("message") or (
                        "too old resource version: injected" if code == 410
                        else "injected watch error")).status()
                rx = body.get("path", "")
                re.compile(rx)
                srv.watch_errors.append((st, rx))
                srv.cond.notify_all()
                return self.send_json(200, st)
            if path == "/_fake/bookmark" and m == "POST":
                srv.bookmark_seq += 1
                srv.cond.notify_all()
                return self.send_json(200, {"rv": str(srv.rv)})
            if path == "/_fake/requests":
                if m == "DELETE":
                    srv.requests = []
                    return self.send_json(200, {})
                return self.send_json(200, {"requests": srv.requests})
            if path == "/_fake/rbac-log":
                if m == "DELETE":
                    srv.rbac_log = []
                    return self.send_json(200, {})
                return self.send_json(200, {"decisions": srv.rbac_log,
                                            "grants": srv.rbac_grants()})
            if path == "/_fake/config":
                if m == "POST":
                    if "gone_mode" in body:
                        if body["gone_mode"] not in ("event", "http"):
                            return self.send_json(400, {
                                "error": "gone_mode is event or http"})
                        srv.gone_mode = body["gone_mode"]
                    if "bookmark_interval" in body:
                        srv.bookmark_interval = float(
                            body["bookmark_interval"])
                    if "continue_ttl" in body:
                        srv.continue_ttl = float(body["continue_ttl"])
                    if "watch_history" in body:
                        srv.history_max = int(body["watch_history"])
                    if "rbac" in body:
                        srv.rbac = bool(body["rbac"])
                    srv.cond.notify_all()
                return self.send_json(200, {
                    "gone_mode": srv.gone_mode,
                    "bookmark_interval": srv.bookmark_interval,
                    "continue_ttl": srv.continue_ttl,
                    "watch_history": srv.history_max, "rbac": srv.rbac,
                    "rv": str(srv.rv), "compacted": str(srv.compacted)})
            if path == "/_fake/tokens":
                if m == "POST":
                    tok = body.get("token") or "kf-" + secrets.token_urlsafe(
                        24)
                    srv.dynamic_tokens[tok] = (body.get("user", "admin"),
                                               body.get("groups", []))
                    srv.save()
                    return self.send_json(200, {"token": tok})
                if m == "DELETE":
                    srv.dynamic_tokens.pop(body.get("token"), None)
                    srv.save()
                    return self.send_json(200, {})
            if path == "/_fake/client-cert" and m == "POST":
                user = body.get("user")
                if not user:
                    return self.send_json(400, {"error": "user is required"})
                stem = "client-" + re.sub(r"[^A-Za-z0-9_.-]", "_", user)
                crt, key = srv.issue(stem, user, body.get("groups", []))
                return self.send_json(200, {"cert": crt, "key": key})
            if path == "/_fake/reset" and m == "POST":
                srv.objects = {}
                srv.history = []
                srv.initial_state()
                if srv.args.rbac_manifests:
                    srv.load_manifests(srv.args.rbac_manifests)
                if srv.args.load:
                    srv.load_manifests(srv.args.load, only=None)
                srv.history = []
                srv.compacted = srv.rv
                srv.faults, srv.requests, srv.rbac_log = [], [], []
                srv.snapshots.clear()
                srv.dynamic_tokens.clear()
                srv.gone_mode = "event"
                srv.bookmark_interval = srv.args.bookmark_interval
                srv.continue_ttl = srv.args.continue_ttl
                srv.history_max = srv.args.watch_history
                srv.rbac = srv.args.rbac
                srv.save()
                srv.cond.notify_all()
                return self.send_json(200, {"rv": str(srv.rv)})
            if path == "/_fake/state" and m == "GET":
                return self.send_json(200, {
                    "rv": str(srv.rv), "compacted": str(srv.compacted),
                    "history": len(srv.history),
                    "bookmarks_sent": srv.bookmarks_sent})
        return self.send_json(404, {"error": "unknown control endpoint"})


class FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, srv, ctx):
        self.srv = srv
        self.ctx = ctx
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.address_family = family
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, on the connection's own thread.
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request.settimeout(30)
            tls = self.ctx.wrap_socket(request, server_side=True)
            tls.settimeout(None)
        except (ssl.SSLError, OSError):
            return
        with self.srv.lock:
            self.srv.conns.add(tls)
        try:
            Handler(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            with self.srv.lock:
                self.srv.conns.discard(tls)
            try:
                tls.close()
            except OSError:
                pass

    def shutdown_request(self, request):
        try:
            request.close()
        except OSError:
            pass


def write_kubeconfig(path, srv, host):
    pki = srv.pki
    hostport = "[%s]:%d" % (host, srv.port) if ":" in host else \
        "%s:%d" % (host, srv.port)
    cluster = {"server": "https://" + hostport,
               "certificate-authority-data": b64file(os.path.join(pki,
                                                                  "ca.crt"))}
    users = [{"name": "admin", "user": {
        "client-certificate-data": b64file(os.path.join(pki, "admin.crt")),
        "client-key-data": b64file(os.path.join(pki, "admin.key"))}}]
    contexts = [{"name": "kubefake", "context": {
        "cluster": "kubefake", "user": "admin", "namespace": "default"}}]
    toks = srv.args.token or []
    if toks:
        users.append({"name": "token", "user": {
            "token": toks[0].partition("=")[0]}})
        contexts.append({"name": "kubefake-token", "context": {
            "cluster": "kubefake", "user": "token", "namespace": "default"}})
    cfg = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "kubefake", "cluster": cluster}],
           "users": users, "contexts": contexts,
           "current-context": "kubefake", "preferences": {}}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cfg, f, indent=1)   # JSON is valid YAML
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="fake Kubernetes API server")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--state-dir")
    ap.add_argument("--token", action="append",
                    help="TOKEN (admin) or TOKEN=USER[|GROUP,GROUP]")
    ap.add_argument("--token-file", action="append",
                    help="FILE re-read on every request: one token per line, "
                    "or CSV token,user,uid,\"group1,group2\"; or "
                    "FILE=USER[|GROUPS]: the file is one token for USER")
    ap.add_argument("--rbac", action="store_true")
    ap.add_argument("--rbac-manifests", action="append", default=[])
    ap.add_argument("--load", action="append", default=[],
                    help="YAML/JSON files or directories of objects to "
                    "create at start (fixtures)")
    ap.add_argument("--watch-history", type=int, default=10000)
    ap.add_argument("--continue-ttl", type=float, default=300)
    ap.add_argument("--bookmark-interval", type=float, default=1.0)
    ap.add_argument("--watch-timeout", type=float, default=1800)
    ap.add_argument("--kubeconfig-out")
    ap.add_argument("--istio-versions", default=",".join(ISTIO_VERSIONS))
    ap.add_argument("--no-istio-crds", action="store_true")
    ap.add_argument("--server-names",
                    help="comma-separated names (or IPs) that are the only "
                    "subjectAltNames of the serving certificate")
    ap.add_argument("--no-endpointslices", action="store_true",
                    help="do not serve discovery.k8s.io/v1 (as a cluster "
                    "without EndpointSlices)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if not args.state_dir:
        args.state_dir = tempfile.mkdtemp(prefix="kubefake-")
    args.state_dir = os.path.abspath(args.state_dir)
    os.makedirs(args.state_dir, exist_ok=True)
    srv = Server(args)
    srv.ensure_pki()
    with srv.lock:
        if not srv.load():
            srv.initial_state()
        if args.rbac_manifests:
            srv.load_manifests(args.rbac_manifests)
        if args.load:
            srv.load_manifests(args.load, only=None)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(srv.pki, "server.crt"),
                        os.path.join(srv.pki, "server.key"))
    ctx.load_verify_locations(os.path.join(srv.pki, "ca.crt"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])

    def remember_sni(sock, name, _ctx):
        sock.sni = name   # the TLS server name the client sent, or None

    ctx.sni_callback = remember_sni
    httpd = None
    if args.port == 0 and srv.port:      # restart: keep the old port if free
        try:
            httpd = FakeHTTPServer((args.host, srv.port), srv, ctx)
        except OSError:
            httpd = None
    if httpd is None:
        httpd = FakeHTTPServer((args.host, args.port), srv, ctx)
    srv.port = httpd.server_address[1]
    with srv.lock:
        srv.save()
    kubeconfig = os.path.abspath(args.kubeconfig_out) if args.kubeconfig_out \
        else os.path.join(args.state_dir,
                                                     "kubeconfig")
    write_kubeconfig(kubeconfig, srv, args.host)
    info = {"port": srv.port, "host": args.host,
            "ca": os.path.join(srv.pki, "ca.crt"),
            "client_cert": os.path.join(srv.pki, "admin.crt"),
            "client_key": os.path.join(srv.pki, "admin.key"),
            "kubeconfig": kubeconfig, "state_dir": args.state_dir,
            "pid": os.getpid()}
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, args.port_file)

    def stop(*_):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log("serving on https://%s:%d (state %s)" % (args.host, srv.port,
                                                  args.state_dir))
    httpd.serve_forever(poll_interval=0.2)
    with srv.lock:
        srv.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
