#!/usr/bin/python3
"""Generate avi_schema.json (the simulator's schema data) from AVI swagger.

Usage: /usr/bin/python3 gen_schema.py SWAGGER_DIR [OUT_FILE]

SWAGGER_DIR holds the vmware/alb-sdk swagger files (<Object>.json). The
simulator never reads swagger at run time; it reads the compact data written
here (default OUT_FILE: avi_schema.json next to this script). Output is
deterministic (sorted keys) so regenerating is a reviewable diff.

What is extracted per field of every definition reachable from an object:
  type       string | integer | number | boolean | object | array
  def        nested definition name (for "$ref" fields, or array items)
  default    the swagger "default"
  readonly   true for "readOnly" fields
  enum       from "Enum options - A, B, C."
  introduced from "Field introduced in X[, Y]." (list of versions)
  ref        api type of the referenced object ("It is a reference to an
             object of type Pool." -> "pool")
  min/max    from "Allowed values are A-B."
  special    numbers from "Special values are 0 - x, -1 - y."
  max_items / min_items from "Maximum/Minimum of N items"
For arrays, enum/ref/min/max/special apply to the items and are stored in
"items".
"""
import glob
import json
import os
import re
import sys

ENUM_RE = re.compile(r"Enum options - ([^.]*)\.")
INTRO_RE = re.compile(r"Field introduced in ((?:\d+\.\d+\.\d+\s*,?\s*)+)")
REF_RE = re.compile(r"reference to an object of type (\w+)")
RANGE_RE = re.compile(r"Allowed values are (-?\d+)-(-?\d+)")
SPECIAL_RE = re.compile(r"Special values are ([^.]*)\.")
MAXI_RE = re.compile(r"Maximum of (\d+) items")
MINI_RE = re.compile(r"Minimum of (\d+) items")


def api_type(model):
    return model.lower()


def parse_prop(prop, models):
    desc = prop.get("description", "")
    out = {}
    value_side = {}  # what applies to scalar values (items for arrays)
    if "$ref" in prop:
        out["type"] = "object"
        out["def"] = prop["$ref"].split("/")[-1]
    else:
        out["type"] = prop.get("type", "object")
    if "default" in prop:
        out["default"] = prop["default"]
    if prop.get("readOnly"):
        out["readonly"] = True
    m = INTRO_RE.search(desc)
    if m:
        out["introduced"] = [v.strip() for v in m.group(1).split(",")
                             if v.strip()]
    m = ENUM_RE.search(desc)
    if m:
        value_side["enum"] = [v.strip() for v in m.group(1).split(",")
                              if v.strip()]
    m = REF_RE.search(desc)
    if m:
        value_side["ref"] = api_type(m.group(1))
        models[api_type(m.group(1))] = m.group(1)
    m = RANGE_RE.search(desc)
    if m:
        value_side["min"] = int(m.group(1))
        value_side["max"] = int(m.group(2))
    m = SPECIAL_RE.search(desc)
    if m:
        nums = re.findall(r"(?:^|,)\s*(-?\d+)\s*-", m.group(1))
        if nums:
            value_side["special"] = [int(n) for n in nums]
    m = MAXI_RE.search(desc)
    if m:
        out["max_items"] = int(m.group(1))
    m = MINI_RE.search(desc)
    if m:
        out["min_items"] = int(m.group(1))
    if out["type"] == "array":
        items = prop.get("items", {})
        it = {}
        if "$ref" in items:
            it["type"] = "object"
            it["def"] = items["$ref"].split("/")[-1]
        else:
            it["type"] = items.get("type", "string")
        it.update(value_side)
        out["items"] = it
    else:
        out.update(value_side)
    return out


def main():
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    src = sys.argv[1]
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "avi_schema.json")
    files = sorted(glob.glob(os.path.join(src, "*.json")))
    if not files:
        sys.stderr.write("gen_schema: no *.json in %s\n" % src)
        return 1
    raw = {}
    objects = {}
    models = {}
    version = None
    for f in files:
        with open(f, encoding="utf-8") as fh:
            doc = json.load(fh)
        if not isinstance(doc, dict) or "swagger" not in doc or \
                "definitions" not in doc:
            continue
        version = version or doc.get("info", {}).get("version")
        obj = os.path.splitext(os.path.basename(f))[0]
        objects[api_type(obj)] = obj
        models[api_type(obj)] = obj
        for name, d in doc["definitions"].items():
            raw.setdefault(name, d)
    defs = {}
    todo = list(objects.values())
    while todo:
        name = todo.pop()
        if name in defs or name not in raw:
            continue
        d = raw[name]
        fields = {}
        for pname, prop in d.get("properties", {}).items():
            f = parse_prop(prop, models)
            fields[pname] = f
            for sub in (f.get("def"), f.get("items", {}).get("def")):
                if sub and sub not in defs:
                    todo.append(sub)
        defs[name] = {"required": sorted(d.get("required", [])),
                      "fields": fields}
    out = {
        "generated_by": "tests/fakes/avi/gen_schema.py",
        "source": "vmware/alb-sdk swagger",
        "swagger_version": version,
        "objects": objects,
        "models": models,
        "definitions": defs,
    }
    tmp = dst + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, dst)
    print("gen_schema: %d objects, %d definitions -> %s"
          % (len(objects), len(defs), dst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
