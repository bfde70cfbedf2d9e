#!/usr/bin/python3
"""Prints a readable summary of the AVI objects amc created, per gateway:
VIP, virtual services, HTTP policies, pool groups and pools with their
servers. Reads the AVI simulator's state (GET /_sim/state).

  avi_summary.py --port-file PORTS.json      (the simulator's port file)
  avi_summary.py --state STATE.json          (a saved /_sim/state answer)
"""
import argparse
import http.client
import json
import sys


def ref_name(ref):
    """'https://host/api/pool/pool-1#name' -> 'name'."""
    if not isinstance(ref, str):
        return "?"
    return ref.split("#", 1)[1] if "#" in ref else ref.rsplit("/", 1)[-1]


def gateway_of(obj):
    for m in obj.get("markers") or []:
        if m.get("key") == "gateway" and m.get("values"):
            return m["values"][0]
    return None


def short(name, prefix):
    if prefix and name.startswith(prefix) and len(name) > len(prefix):
        return "…" + name[len(prefix):]
    return name


def describe_match(match):
    parts = []
    host = match.get("host_hdr")
    if host:
        parts.append("host " + "|".join(v for v in host.get("value", [])
                                         if ":" not in v)
                     or "host " + ",".join(host.get("value", [])))
    path = match.get("path")
    if path:
        op = {"BEGINS_WITH": "prefix", "EQUALS": "=",
              "REGEX_MATCH": "~"}.get(path.get("match_criteria"),
                                      path.get("match_criteria"))
        parts.append("path %s %s" % (op, ",".join(path.get("match_str", []))))
    method = match.get("method")
    if method:
        parts.append("method " + ",".join(m.replace("HTTP_METHOD_", "")
                                          for m in method.get("methods", [])))
    for h in match.get("hdrs") or []:
        parts.append("header %s=%s" % (h.get("hdr"),
                                       ",".join(h.get("value", []))))
    if match.get("query"):
        parts.append("query")
    return " ".join(parts) or "any"


def describe_action(rule, prefix):
    if rule.get("redirect_action"):
        a = rule["redirect_action"]
        code = a.get("status_code", "").rsplit("_", 1)[-1]
        return "redirect %s %s" % (a.get("protocol", ""), code)
    sw = rule.get("switching_action")
    if sw:
        if sw.get("pool_group_ref"):
            return "-> pool group " + short(ref_name(sw["pool_group_ref"]),
                                            prefix)
        if sw.get("pool_ref"):
            return "-> pool " + short(ref_name(sw["pool_ref"]), prefix)
        return sw.get("action", "")
    return "(no action)"


def summarize(state, out):
    objects = state.get("objects", {})
    by_gw = {}
    for t, objs in objects.items():
        for o in objs:
            gw = gateway_of(o)
            if gw:
                by_gw.setdefault(gw, {}).setdefault(t, []).append(o)
    if not by_gw:
        print("No AVI objects created by amc.", file=out)
        return 1
    for gw in sorted(by_gw):
        objs = by_gw[gw]
        ns, name = gw.split("/", 1)
        prefix = None
        for v in objs.get("vsvip", []):
            prefix = v["name"] + "--"
        total = sum(len(v) for v in objs.values())
        print("Gateway %s  (%d AVI objects)" % (gw, total), file=out)
        for v in sorted(objs.get("vsvip", []), key=lambda o: o["name"]):
            vips = []
            for vip in v.get("vip") or []:
                addr = (vip.get("ip_address") or {}).get("addr")
                vips.append(addr or ("auto-allocated" if vip.get(
                    "auto_allocate_ip") else "?"))
            fqdns = [d.get("fqdn") for d in v.get("dns_info") or []]
            print("  VIP      %s: %s%s" % (v["name"], ", ".join(vips),
                                          ("  dns " + ", ".join(fqdns))
                                          if fqdns else ""), file=out)
        print("  Virtual services", file=out)
        for v in sorted(objs.get("virtualservice", []),
                        key=lambda o: (o.get("type") != "VS_TYPE_VH_PARENT",
                                       o["name"])):
            kind = {"VS_TYPE_VH_PARENT": "parent",
                    "VS_TYPE_VH_CHILD": "SNI child"}.get(v.get("type"),
                                                         "normal")
            ports = ["%d%s" % (s["port"], "/ssl" if s.get("enable_ssl")
                               else "") for s in v.get("services") or []]
            extra = ("ports " + ", ".join(ports)) if ports else (
                "domains " + ", ".join(v.get("vh_domain_name") or []))
            print("    %-10s %s  %s" % (kind, short(v["name"], prefix),
                                       extra), file=out)
        for ps in sorted(objs.get("httppolicyset", []),
                         key=lambda o: o["name"]):
            print("  Policies %s" % short(ps["name"], prefix), file=out)
            rules = (ps.get("http_request_policy") or {}).get("rules") or []
            for r in sorted(rules, key=lambda x: x.get("index", 0)):
                print("    %2d. %s  %s" % (r.get("index", 0),
                                           describe_match(r.get("match", {})),
                                           describe_action(r, prefix)),
                      file=out)
        for pg in sorted(objs.get("poolgroup", []), key=lambda o: o["name"]):
            members = ["%s (ratio %s)" % (short(ref_name(m.get("pool_ref")),
                                                prefix), m.get("ratio", 1))
                       for m in pg.get("members") or []]
            print("  Pool group %s: %s" % (short(pg["name"], prefix),
                                          ", ".join(members)), file=out)
        print("  Pools", file=out)
        for p in sorted(objs.get("pool", []), key=lambda o: o["name"]):
            servers = ["%s:%s" % ((s.get("ip") or {}).get("addr",
                                                          s.get("hostname")),
                                  s.get("port", p.get("default_server_port",
                                                      "")))
                       for s in p.get("servers") or []]
            lb = (p.get("lb_algorithm") or "").replace("LB_ALGORITHM_", "")
            print("    %s  [%s]  %s" % (short(p["name"], prefix), lb.lower(),
                                        ", ".join(servers) or "(no servers)"),
                  file=out)
        for c in sorted(objs.get("sslkeyandcertificate", []),
                        key=lambda o: o["name"]):
            print("  Certificate %s" % short(c["name"], prefix), file=out)
        print("", file=out)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port-file")
    ap.add_argument("--state")
    a = ap.parse_args()
    if a.state:
        with open(a.state) as fh:
            state = json.load(fh)
    elif a.port_file:
        with open(a.port_file) as fh:
            port = json.load(fh)["http"]
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/_sim/state")
        state = json.loads(c.getresponse().read())
    else:
        ap.error("give --port-file or --state")
    return summarize(state, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
