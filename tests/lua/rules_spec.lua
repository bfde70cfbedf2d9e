-- rules_spec.lua - the rule modules one by one, with the pure-Lua host.
local h = require("helpers")
local rt_mod = require("rt")

local import = h.load_rules("rules")

local function ctx_for(objects, gw)
  local avi = import("lib/avi")
  local rt = rt_mod.new(h.host(objects, { cluster = "t" }))
  gw = gw or { kind = "Gateway", metadata = { namespace = "gwns", name = "gw" },
               spec = {} }
  return avi.context(gw, rt, rt.output()), rt
end

describe("rules/gateway.lua", function()
  it("is an api_version 1 entry rule for Gateway", function()
    local g = import("gateway")
    assert.equal(1, g.api_version)
    assert.equal("Gateway", g.kind)
    assert.is_function(g.translate)
  end)
  it("does not mutate its input", function()
    local objs = h.load_yaml("tests/golden/cases/https-sni/input.yaml")
    local before = h.deepcopy(objs)
    h.translate(objs)
    assert.same(before, objs)
  end)
end)

describe("rules/service.lua", function()
  local service = import("service")
  local svc = { kind = "Service", metadata = { namespace = "ns", name = "s" },
    spec = { selector = { app = "s" }, ports = {
      { name = "http", port = 80, targetPort = "web" },
      { name = "admin", port = 81, targetPort = 9001 } } } }
  it("picks the port by number, or the only one", function()
    assert.equal(81, service.port(svc, 81).port)
    local p, why = service.port(svc, nil)
    assert.is_nil(p)
    assert.matches("has 2 ports", why)
    assert.is_nil(service.port(svc, 82))
  end)
  it("uses EndpointSlice ports by name and skips unready endpoints", function()
    local rt = h.rt({ { kind = "EndpointSlice",
      metadata = { namespace = "ns", name = "s-1",
                   labels = { ["kubernetes.io/service-name"] = "s" } },
      addressType = "IPv4",
      ports = { { name = "http", port = 8080 }, { name = "admin", port = 9001 } },
      endpoints = {
        { addresses = { "10.0.0.2" } }, -- ready unset = ready
        { addresses = { "10.0.0.10" }, conditions = { ready = true } },
        { addresses = { "10.0.0.3" }, conditions = { ready = false } } } } })
    local servers = service.servers(rt, svc, svc.spec.ports[1], nil)
    assert.same({ { ip = { addr = "10.0.0.2", type = "V4" }, port = 8080 },
                  { ip = { addr = "10.0.0.10", type = "V4" }, port = 8080 } },
      servers)
  end)
  it("sorts servers by numeric IPv4, then port, IPv6 as text", function()
    local function slice(name, port, addrs)
      local eps = {}
      for i, a in ipairs(addrs) do
        eps[i] = { addresses = { a } }
      end
      return { kind = "EndpointSlice",
        metadata = { namespace = "ns", name = name,
                     labels = { ["kubernetes.io/service-name"] = "s" } },
        addressType = "IPv4", ports = { { name = "http", port = port } },
        endpoints = eps }
    end
    local function order(objs)
      local out = {}
      for i, s in ipairs(service.servers(h.rt(objs), svc, svc.spec.ports[1])) do
        out[i] = s.ip.addr .. "|" .. s.port
      end
      return out
    end
    -- integer keys: octets and ports compared as numbers
    assert.same({ "9.0.0.1|80", "9.0.0.1|8080", "10.0.0.2|80", "10.0.0.10|80",
                  "10.0.2.1|80", "255.0.0.0|80" },
      order({ slice("a", 8080, { "9.0.0.1" }),
              slice("b", 80, { "255.0.0.0", "10.0.0.10", "10.0.2.1",
                               "10.0.0.2", "9.0.0.1" }) }))
    -- an IPv6 address (text key) among IPv4 ones: digit runs padded
    assert.same({ "10.0.0.2|80", "10.0.0.10|80", "fd00::1|80" },
      order({ slice("a", 80, { "fd00::1", "10.0.0.10", "10.0.0.2" }) }))
    -- the same address spelled twice (leading zero): both kept, after
    -- the smaller addresses (their relative order is the sort's)
    local odd = order({ slice("a", 80, { "10.0.0.9", "10.0.0.010",
                                         "10.0.0.10", "10.0.0.8" }) })
    assert.same({ "10.0.0.8|80", "10.0.0.9|80" }, { odd[1], odd[2] })
    table.sort(odd, function(a, b) return a < b end)
    assert.same({ "10.0.0.010|80", "10.0.0.10|80", "10.0.0.8|80",
                  "10.0.0.9|80" }, odd)
  end)
  it("falls back to Pods and named container ports", function()
    local pod = { kind = "Pod", metadata = { namespace = "ns", name = "p",
      labels = { app = "s", v = "1" } },
      spec = { containers = { { ports = { { name = "web",
        containerPort = 7000 } } } } },
      status = { podIP = "10.0.0.5",
                 conditions = { { type = "Ready", status = "True" } } } }
    local rt = h.rt({ pod })
    assert.same({ { ip = { addr = "10.0.0.5", type = "V4" }, port = 7000 } },
      service.servers(rt, svc, svc.spec.ports[1], { v = "1" }))
    assert.same({}, service.servers(rt, svc, svc.spec.ports[1],
      { v = "1", w = "2" }))
  end)
end)

describe("rules/lib/avi.lua", function()
  local avi = import("lib/avi")
  it("builds diagnostic paths from strings or, lazily, lazy_paths", function()
    assert.equal("spec.http[0].host", avi.at("spec.http[0]", "host"))
    assert.equal("spec.http[0]", avi.at("spec.http[0]"))
    local lazy = avi.lazy_path("spec.tcp[%d].route[%d]", 1, 0)
    assert.equal("spec.tcp[1].route[0].port", avi.at(lazy, "port"))
    assert.equal("spec.tcp[1].route[0]", avi.at(lazy))
  end)
  it("names scoped objects with the scope parts first", function()
    local ctx = ctx_for({})
    assert.equal("amc--t--gwns--gw--a--b", ctx.scoped_name({}, "a", "b"))
    assert.equal("amc--t--gwns--gw--h.example--a",
      ctx.scoped_name({ "h.example" }, "a"))
    assert.equal("amc--t--gwns--gw--x--y--a--b",
      ctx.scoped_name({ "x", "y" }, "a", "b"))
  end)
end)

describe("rules/destinationrule.lua", function()
  local dr_mod = import("destinationrule")
  local function dr(ns, name, host, extra)
    local o = { kind = "DestinationRule",
      metadata = { namespace = ns, name = name }, spec = { host = host } }
    for k, v in pairs(extra or {}) do
      o.spec[k] = v
    end
    return o
  end
  local fqdn = "svc.app.svc.cluster.local"
  local function pick(objs, host, svc_ns)
    local ctx = ctx_for(objs)
    local found = dr_mod.find(ctx, host or fqdn, svc_ns or "app")
    return found and found.metadata.namespace .. "/" .. found.metadata.name
  end
  it("prefers exact hosts, then longer wildcards, then namespaces", function()
    local wild = dr("app", "wild", "*.cluster.local")
    local longer = dr("app", "longer", "*.app.svc.cluster.local")
    assert.equal("app/longer", pick({ wild, longer }))
    assert.equal("other/exact", pick({ wild, longer,
      dr("other", "exact", "svc.app.svc.cluster.local") }))
    -- short hosts resolve in the rule's namespace
    assert.equal("app/short", pick({ wild, dr("app", "short", "svc") }))
    assert.is_nil(pick({ dr("other", "short", "svc") }))
    -- same host: the gateway's namespace, then the service's, then order
    assert.equal("gwns/b",
      pick({ dr("app", "a", fqdn), dr("gwns", "b", fqdn) }))
    assert.equal("app/c", pick({ dr("x", "a", fqdn), dr("app", "c", fqdn) }))
    assert.equal("x/a", pick({ dr("x", "a", fqdn), dr("y", "b", fqdn) }))
    -- not exported to the gateway's namespace, other workloads: ignored
    assert.equal("app/wild", pick({ wild,
      dr("app", "hidden", fqdn, { exportTo = { "." } }),
      dr("gwns", "egress", fqdn,
        { workloadSelector = { matchLabels = { istio = "egress" } } }) }))
    -- a wildcard ServiceEntry host is matched exactly first
    assert.equal("se/exact", pick({ dr("se", "wider", "*.example.com"),
      dr("se", "exact", "*.a.example.com") }, "*.a.example.com", nil))
  end)
end)

describe("rules/secret.lua", function()
  local secret = import("secret")
  it("reports a Secret without keys, never its content", function()
    local bad = { kind = "Secret", metadata = { namespace = "gwns", name = "c" },
      data = { ["tls.crt"] = "bm90IGEgY2VydA==", ["tls.key"] = "c2VjcmV0" } }
    local ctx = ctx_for({ bad })
    assert.is_nil(secret.certificate(ctx, "c", "spec.servers[0].tls"))
    local r = ctx.out:result()
    assert.equal(1, #r.diagnostics)
    assert.matches("not base64%-encoded PEM", r.diagnostics[1].message)
    assert.is_nil(r.diagnostics[1].message:find("secret", 1, true))
  end)
end)

describe("rules/serviceentry.lua", function()
  local se_mod = import("serviceentry")
  it("refuses resolution NONE", function()
    local se = { metadata = { namespace = "n", name = "e" },
                 spec = { hosts = { "x.example" }, ports = { { number = 80 } } } }
    local s, why = se_mod.servers(h.rt({}), se, "x.example", se.spec.ports[1])
    assert.is_nil(s)
    assert.matches("resolution NONE", why)
  end)
end)

describe("rules/destinationrule.lua", function()
  local drm = import("destinationrule")
  it("prefers exact hosts and the gateway namespace", function()
    local function dr(ns, name, host)
      return { kind = "DestinationRule", metadata = { namespace = ns,
        name = name }, spec = { host = host } }
    end
    local ctx = ctx_for({ dr("app", "wild", "*.app.svc.cluster.local"),
      dr("app", "exact", "svc"), dr("gwns", "gw-exact",
        "svc.app.svc.cluster.local") })
    local found = drm.find(ctx, "svc.app.svc.cluster.local", "app")
    assert.equal("gw-exact", found.metadata.name)
  end)
  it("merges subset and port-level policies", function()
    local dr = { metadata = { namespace = "n", name = "d" }, spec = {
      trafficPolicy = { loadBalancer = { simple = "ROUND_ROBIN" },
        portLevelSettings = { { port = { number = 80 },
          loadBalancer = { simple = "RANDOM" } } } },
      subsets = { { name = "a", labels = { v = "a" },
        trafficPolicy = { tls = { mode = "SIMPLE" } } } } } }
    local p, paths, labels = drm.policy(dr, "a", 80)
    assert.equal("RANDOM", p.loadBalancer.simple)
    assert.equal("SIMPLE", p.tls.mode)
    assert.same({ v = "a" }, labels)
    assert.equal("spec.trafficPolicy.portLevelSettings[0].loadBalancer",
      paths.loadBalancer)
    assert.is_nil(drm.policy(dr, "b", 80))
  end)
end)
