#!/usr/bin/python3
"""Generate runtime/lua/avi_schema.lua from AVI's Swagger 2.0 files.

Usage: scripts/gen-avi-schema.py SWAGGER_DIR [OUT]

SWAGGER_DIR holds the per-object swagger files of vmware/alb-sdk (branch
22.1.x: VirtualService.json, VsVip.json, Pool.json, ...). OUT defaults to
stdout. The project commits the generated file; the build never needs the
swagger files.

The output is a compact Lua table with, for each AVI type reachable from the
object types amc emits, only what validate.lua and the sync layer need:

  types[<TypeName>] = {
    required = { "field", ... },            -- only when non-empty
    fields = {
      <field> = { t = "string"|"integer"|"number"|"boolean"|"object"|"array",
                  ref = "<TypeName>",       -- object, or array of objects
                  items = "<scalar type>",  -- array of scalars
                  enum = { "A", "B", ... }, -- from "Enum options - A, B."
                  min = N, max = N,         -- from "Allowed values are N-M."
                  special = { N, ... },     -- "Special values are N - ..."
                  max_items = N,            -- "Maximum of N items allowed."
                  default = <value>,        -- swagger `default`
                  ro = true },              -- swagger `readOnly`
    },
  }
  objects[<rest type>] = "<TypeName>"       -- e.g. pool = "Pool"
  created_by[<rest type>] = true            -- the type has `created_by`
"""
import json
import os
import re
import sys

# REST type (as in /api/<type>) -> (swagger file, root definition).
OBJECTS = {
    "virtualservice": ("VirtualService.json", "VirtualService"),
    "vsvip": ("VsVip.json", "VsVip"),
    "pool": ("Pool.json", "Pool"),
    "poolgroup": ("PoolGroup.json", "PoolGroup"),
    "httppolicyset": ("HTTPPolicySet.json", "HTTPPolicySet"),
    "sslkeyandcertificate": ("SSLKeyAndCertificate.json",
                             "SSLKeyAndCertificate"),
    "healthmonitor": ("HealthMonitor.json", "HealthMonitor"),
}

ENUM_RE = re.compile(r"Enum options - (.*?)\.(?:\s|$)")
RANGE_RE = re.compile(r"Allowed values are (-?\d+)-(-?\d+)\.")
SPECIAL_RE = re.compile(r"Special values are (.*?)\.(?:\s|$)")
SPECIAL_NUM_RE = re.compile(r"(?:^|,\s*)(-?\d+)\s*-")
MAX_ITEMS_RE = re.compile(r"Maximum of (\d+) items allowed\.")
SCALARS = ("string", "integer", "number", "boolean")


def ref_name(ref):
    return ref.rsplit("/", 1)[-1]


def field_facts(prop):
    desc = prop.get("description", "")
    facts = {}
    if "$ref" in prop:
        facts["t"] = "object"
        facts["ref"] = ref_name(prop["$ref"])
    else:
        t = prop.get("type", "object")
        facts["t"] = t
        if t == "array":
            items = prop.get("items", {})
            if "$ref" in items:
                facts["ref"] = ref_name(items["$ref"])
            else:
                facts["items"] = items.get("type", "string")
                # enums on arrays of strings apply to the items
    m = ENUM_RE.search(desc)
    if m and (facts["t"] == "string" or facts.get("items") == "string"):
        facts["enum"] = [v.strip() for v in m.group(1).split(",") if v.strip()]
    m = RANGE_RE.search(desc)
    if m and (facts["t"] in ("integer", "number")
              or facts.get("items") in ("integer", "number")):
        facts["min"] = int(m.group(1))
        facts["max"] = int(m.group(2))
        s = SPECIAL_RE.search(desc)
        if s:
            special = [int(v) for v in SPECIAL_NUM_RE.findall(s.group(1))]
            special = [v for v in special
                       if v < facts["min"] or v > facts["max"]]
            if special:
                facts["special"] = special
    m = MAX_ITEMS_RE.search(desc)
    if m and facts["t"] == "array":
        facts["max_items"] = int(m.group(1))
    if "default" in prop:
        facts["default"] = prop["default"]
    if prop.get("readOnly"):
        facts["ro"] = True
    return facts


def collect(swagger_dir):
    types = {}
    objects = {}
    created_by = {}
    for rest, (fname, root) in sorted(OBJECTS.items()):
        with open(os.path.join(swagger_dir, fname)) as f:
            defs = json.load(f)["definitions"]
        objects[rest] = root
        if "created_by" in defs[root].get("properties", {}):
            created_by[rest] = True
        todo = [root]
        while todo:
            name = todo.pop()
            if name in types:
                continue
            d = defs[name]
            fields = {}
            for pname, prop in d.get("properties", {}).items():
                facts = field_facts(prop)
                fields[pname] = facts
                if "ref" in facts:
                    todo.append(facts["ref"])
            types[name] = {"required": d.get("required", []),
                           "fields": fields}
    return types, objects, created_by


def lua_str(s):
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 32:
            out.append("\\%03d" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def lua_val(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return lua_str(v)
    if isinstance(v, list):
        return "{" + ", ".join(lua_val(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join("[%s] = %s" % (lua_str(k), lua_val(v[k]))
                               for k in sorted(v)) + "}"
    raise ValueError("cannot encode %r" % (v,))


FACT_ORDER = ("t", "ref", "items", "enum", "min", "max", "special",
              "max_items", "default", "ro")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LUA_KEYWORDS = {"and", "break", "do", "else", "elseif", "end", "false",
                "for", "function", "goto", "if", "in", "local", "nil",
                "not", "or", "repeat", "return", "then", "true", "until",
                "while"}


def lua_key(k):
    if IDENT_RE.match(k) and k not in LUA_KEYWORDS:
        return k
    return "[" + lua_str(k) + "]"


def render(types, objects, created_by, version):
    out = []
    out.append("-- avi_schema.lua - GENERATED by scripts/gen-avi-schema.py "
               "from AVI swagger %s." % version)
    out.append("-- Do not edit. Compact facts per type; see the script for "
               "the format.")
    out.append("return {")
    out.append("  version = %s," % lua_str(version))
    out.append("  objects = {")
    for k in sorted(objects):
        out.append("    %s = %s," % (lua_key(k), lua_str(objects[k])))
    out.append("  },")
    out.append("  created_by = {")
    for k in sorted(created_by):
        out.append("    %s = true," % lua_key(k))
    out.append("  },")
    out.append("  types = {")
    for tname in sorted(types):
        t = types[tname]
        out.append("    %s = {" % lua_key(tname))
        if t["required"]:
            out.append("      required = %s," % lua_val(sorted(t["required"])))
        out.append("      fields = {")
        for fname in sorted(t["fields"]):
            facts = t["fields"][fname]
            parts = ["%s = %s" % (k, lua_val(facts[k]))
                     for k in FACT_ORDER if k in facts]
            out.append("        %s = {%s}," % (lua_key(fname),
                                               ", ".join(parts)))
        out.append("      },")
        out.append("    },")
    out.append("  },")
    out.append("}")
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    swagger_dir = argv[1]
    with open(os.path.join(swagger_dir, "VirtualService.json")) as f:
        version = json.load(f).get("info", {}).get("version", "unknown")
    types, objects, created_by = collect(swagger_dir)
    text = render(types, objects, created_by, version)
    if len(argv) == 3:
        with open(argv[2], "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
