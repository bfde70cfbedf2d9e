-- rt_spec.lua - the runtime library handed to rules (runtime/lua/rt.lua).
local h = require("helpers")
local rt_mod = require("rt")

describe("rt", function()
  local rt
  before_each(function()
    rt = h.rt({}, { cluster = "c1" })
  end)

  describe("hash", function()
    it("is FNV-1a 64 as 16 lowercase hex digits (C vectors)", function()
      assert.equal("cbf29ce484222325", rt.hash(""))
      assert.equal("af63dc4c8601ec8c", rt.hash("a"))
      assert.equal("85944171f73967e8", rt.hash("foobar"))
    end)
  end)

  describe("settings", function()
    it("fills defaults", function()
      assert.equal("c1", rt.settings.cluster)
      assert.equal("admin", rt.settings.tenant)
      assert.equal("Default-Cloud", rt.settings.cloud)
      assert.equal("global", rt.settings.vrf)
      assert.equal("Default-Group", rt.settings.se_group)
      assert.equal("cluster.local", rt.settings.domain)
      assert.same({ istio = "ingressgateway" }, rt.settings.ingress_selector)
    end)
  end)

  describe("name", function()
    it("joins parts under amc--<cluster>", function()
      assert.equal("amc--c1--ns--gw", rt.name("ns", "gw"))
      assert.equal("amc--c1--ns--gw--a.example.com--80",
        rt.name("ns", "gw", "a.example.com", 80))
    end)
    it("sanitizes and disambiguates altered parts with a hash", function()
      local n = rt.name("ns", "*.example.com")
      assert.equal("amc--c1--ns--_.example.com--h" ..
        rt.hash("ns\0*.example.com"):sub(1, 8), n)
      assert.are_not.equal(n, rt.name("ns", "_.example.com"))
      assert.are_not.equal(rt.name("a--b", "c"), rt.name("a", "b--c"))
    end)
    it("shortens long names with a stable hash", function()
      local long = string.rep("x", 300)
      local n = rt.name("ns", long)
      assert.equal(rt_mod.NAME_MAX, #n)
      assert.equal(n, rt.name("ns", long))
      local full = "amc--c1--ns--" .. long
      assert.equal(full:sub(1, 182) .. "--" .. rt.hash(full), n)
      assert.are_not.equal(n, rt.name("ns", long .. "y"))
    end)
    it("only uses AVI-safe characters", function()
      assert.truthy(rt.name("ns", "a b/c?d"):match("^[A-Za-z0-9._-]+$"))
    end)
    it("hashes empty parts and parts with the separator; numbers as text",
      function()
      assert.equal("amc--c1--ns----h" .. rt.hash("ns\0"):sub(1, 8),
        rt.name("ns", ""))
      assert.equal("amc--c1--a--b--h" .. rt.hash("a--b"):sub(1, 8),
        rt.name("a--b"))
      assert.equal("amc--c1--x--8080--nil", rt.name("x", 8080, nil))
      assert.equal("amc--c1--", rt.name())
    end)
    it("joins plain string parts directly (plain_name, the usual case)",
      function()
      assert.equal("p--a--b.c", rt_mod.plain_name("p--", "a", "b.c"))
      assert.equal("p--", rt_mod.plain_name("p--"))
      assert.equal("p--a----b", rt_mod.plain_name("p--", "a-", "-b"))
      assert.equal("p--a--80--0---1", rt_mod.plain_name("p--", "a", 80, 0, -1))
      assert.is_nil(rt_mod.plain_name("p--", "a", 80.5))
      assert.is_nil(rt_mod.plain_name("p--", "a", 80.0))
      assert.is_nil(rt_mod.plain_name("p--", "a", nil, "b"))
      assert.is_nil(rt_mod.plain_name("p--", ""))
      assert.is_nil(rt_mod.plain_name("p--", "a--b"))
      assert.is_nil(rt_mod.plain_name("p--", "a b"))
      -- the host's copy, when given, decides the usual case
      local r = rt_mod.new({ settings = { cluster = "c1" }, hash = h.fnv1a64,
        plain_name = function(prefix, ...)
          return prefix .. "host"
        end })
      assert.equal("amc--c1--host", r.name("ns", "gw"))
    end)
  end)

  describe("list", function()
    local objs = {
      { kind = "VirtualService", metadata = { namespace = "b", name = "v1",
          labels = { team = "x" } },
        spec = { gateways = h.array({ "gw", "istio-system/gw" }) } },
      { kind = "VirtualService", metadata = { namespace = "a", name = "v2" },
        spec = { gateways = h.array({ "istio-system/gw" }) } },
      { kind = "VirtualService", metadata = { namespace = "a", name = "v3" },
        spec = { gateways = "gw" } },
      { kind = "VirtualService", metadata = { namespace = "a", name = "v4" },
        spec = { gateways = h.array({ 1 }) } },
    }
    local function names(list)
      local out = {}
      for i, o in ipairs(list) do
        out[i] = o.metadata.namespace .. "/" .. o.metadata.name
      end
      return table.concat(out, " ")
    end
    it("filters by field (a string or an array element), labels, namespace",
      function()
      local r = h.rt(objs)
      assert.equal("a/v2 b/v1", names(r.list("VirtualService", nil,
        { field = "spec.gateways", value = "istio-system/gw" })))
      assert.equal("a/v3 b/v1", names(r.list("VirtualService", nil,
        { field = "spec.gateways", value = "gw" })))
      assert.equal("a/v3", names(r.list("VirtualService", "a",
        { field = "spec.gateways", value = "gw" })))
      assert.equal("", names(r.list("VirtualService", nil,
        { field = "spec.gateways.x", value = "gw" })))
      assert.equal("b/v1", names(r.list("VirtualService", nil,
        { labels = { team = "x" }, field = "spec.gateways", value = "gw" })))
      assert.equal("a/v2 a/v3 a/v4 b/v1", names(r.list("VirtualService", nil)))
    end)
    it("passes the filter to the host", function()
      local got
      local r = rt_mod.new({ list = function(...)
        got = table.pack(...)
        return {}
      end })
      r.list("EndpointSlice", "ns", { labels = { app = "a" } })
      assert.same({ n = 5, "EndpointSlice", "ns", { app = "a" } }, got)
      r.list("VirtualService", nil, { field = "spec.hosts", value = "h" })
      assert.same({ n = 5, "VirtualService", nil, nil, "spec.hosts", "h" },
        got)
      r.list("Pod", "ns")
      assert.same({ n = 2, "Pod", "ns" }, got)
      assert.has_error(function()
        r.list("Pod", "ns", { field = "spec.x" })
      end, "rt.list: filter.field needs a string filter.value")
      assert.has_error(function()
        r.list("Pod", "ns", "app=a")
      end, "rt.list: filter must be a table")
    end)
  end)

  describe("ref and owner", function()
    it("builds by-name refs, URL-escaped", function()
      assert.equal("/api/pool?name=amc--c1--x", rt.ref("pool", "amc--c1--x"))
      assert.equal("/api/tenant?name=a%20b%26c", rt.ref("tenant", "a b&c"))
      -- names from rt.name (sanitized, or hashed) need no escaping
      local n = rt.name("ns", "a b&c")
      assert.equal("/api/pool?name=" .. n, rt.ref("pool", n))
      assert.is_nil(n:find("[^A-Za-z0-9._-]"))
    end)
    it("owner is amc-<cluster>", function()
      assert.equal("amc-c1", rt.owner)
    end)
    it("markers name the cluster and the gateway", function()
      local m = rt.markers({ metadata = { namespace = "ns", name = "gw" } })
      assert.same({ { key = "clustername", values = { "c1" } },
                    { key = "gateway", values = { "ns/gw" } } }, m)
      assert.equal(h.array_mt, getmetatable(m))
    end)
  end)

  describe("sorted iteration", function()
    it("sorts keys, numbers before strings", function()
      assert.same({ 1, 2, "a", "b" }, rt.sorted_keys({ b = 1, a = 1, [2] = 1,
        [1] = 1 }))
      local seen = {}
      for k, v in rt.sorted_pairs({ z = 1, y = 2 }) do
        seen[#seen + 1] = k .. v
      end
      assert.same({ "y2", "z1" }, seen)
      for _ in rt.sorted_pairs(nil) do
        error("no pairs in nil")
      end
      for _ in rt.sorted_pairs({}) do
        error("no pairs in {}")
      end
    end)
    it("sort_by sorts by computed keys, shared keys by comparison", function()
      local calls = 0
      local function len(x)
        calls = calls + 1
        return #x
      end
      assert.same({ "a", "bb", "ccc" }, rt.sort_by({ "ccc", "a", "bb" }, len))
      assert.equal(3, calls) -- one key per item
      local list = { "xx", "a", "yy", "b", "zzz" }
      local expected = { "xx", "a", "yy", "b", "zzz" }
      table.sort(expected, function(p, q) return #p < #q end)
      assert.same(expected, rt.sort_by(list, function(x) return #x end))
      assert.same({}, rt.sort_by({}, len))
      local keys = rt.sorted_keys({ b = 1, a = 2, c = 3 })
      assert.same({ "a", "b", "c" }, keys)
    end)
    it("array marks empty tables as arrays", function()
      assert.equal(h.array_mt, getmetatable(rt.array()))
      assert.is_true(rt.is_array(rt.array({})))
    end)
  end)

  describe("label selectors", function()
    it("ANDs all labels; empty selects all", function()
      assert.is_true(rt.labels_match({ a = "1", b = "2" }, { a = "1", b = "2",
        c = "3" }))
      assert.is_false(rt.labels_match({ a = "1", b = "2" }, { a = "1" }))
      assert.is_false(rt.labels_match({ a = "1" }, { a = "2" }))
      assert.is_true(rt.labels_match({}, { a = "1" }))
      assert.is_true(rt.labels_match(nil, nil))
    end)
    it("supports matchExpressions", function()
      local sel = { matchLabels = { app = "x" }, matchExpressions = {
        { key = "tier", operator = "In", values = { "web", "api" } },
        { key = "canary", operator = "DoesNotExist" } } }
      assert.is_true(rt.selector_match(sel, { app = "x", tier = "api" }))
      assert.is_false(rt.selector_match(sel, { app = "x", tier = "db" }))
      assert.is_false(rt.selector_match(sel, { app = "x", tier = "web",
        canary = "1" }))
    end)
  end)

  describe("host matching", function()
    it("matches exact, wildcard suffix and *", function()
      assert.is_true(rt.host_matches("*", "a.b"))
      assert.is_true(rt.host_matches("*.example.com", "a.example.com"))
      assert.is_true(rt.host_matches("*.example.com", "a.b.example.com"))
      assert.is_false(rt.host_matches("*.example.com", "example.com"))
      assert.is_true(rt.host_matches("A.example.com", "a.EXAMPLE.com"))
      assert.is_false(rt.host_matches("a.example.com", "*.example.com"))
      assert.is_true(rt.host_matches("*.com", "*.example.com"))
    end)
    it("intersects to the more specific host", function()
      assert.equal("a.example.com",
        rt.host_intersection("*.example.com", "a.example.com"))
      assert.equal("a.example.com",
        rt.host_intersection("a.example.com", "*"))
      assert.equal("*.a.example.com",
        rt.host_intersection("*.example.com", "*.a.example.com"))
      assert.is_nil(rt.host_intersection("a.example.com", "b.example.com"))
    end)
    it("orders hosts as Envoy picks virtual hosts", function()
      local hosts = { "*", "*.example.com", "a.example.com",
                      "*.a.example.com", "b.example.com" }
      table.sort(hosts, rt.host_specificity_less)
      assert.same({ "a.example.com", "b.example.com", "*.a.example.com",
                    "*.example.com", "*" }, hosts)
      local by_key = { "*", "*.b.com", "*.example.com", "z.com",
                       "*.a.example.com", "a.example.com", "*.a.com" }
      rt.sort_by(by_key, rt.host_specificity_key)
      assert.same({ "a.example.com", "z.com", "*.a.example.com",
                    "*.example.com", "*.a.com", "*.b.com", "*" }, by_key)
    end)
  end)

  describe("resolve_host", function()
    local objs = {
      { kind = "Service", metadata = { namespace = "ns", name = "svc" } },
      { kind = "ServiceEntry", metadata = { namespace = "other", name = "se" },
        spec = { hosts = { "api.example.org" } } },
      { kind = "ServiceEntry", metadata = { namespace = "other", name = "hidden" },
        spec = { hosts = { "hidden.example.org" }, exportTo = { "." } } },
    }
    it("resolves short, name.ns, name.ns.svc and FQDN Service hosts", function()
      local r = h.rt(objs)
      for _, spelling in ipairs({ "svc", "svc.ns", "svc.ns.svc",
                                  "svc.ns.svc.cluster.local" }) do
        local t = r.resolve_host(spelling, "ns")
        assert.equal("Service", t.kind, spelling)
        assert.equal("svc.ns.svc.cluster.local", t.fqdn)
      end
      assert.is_nil(r.resolve_host("svc", "elsewhere"))
    end)
    it("resolves ServiceEntry hosts, honouring exportTo", function()
      local r = h.rt(objs)
      local t = r.resolve_host("api.example.org", "ns")
      assert.equal("ServiceEntry", t.kind)
      assert.equal("se", t.entry.metadata.name)
      assert.is_nil(r.resolve_host("hidden.example.org", "ns"))
      assert.equal("ServiceEntry",
        r.resolve_host("hidden.example.org", "other").kind)
    end)
  end)

  describe("output", function()
    it("sorts objects, refuses duplicate names, dedupes diagnostics", function()
      local out = rt.output()
      out:add("pool", { name = "b" })
      out:add("pool", { name = "a" })
      out:add("httppolicyset", { name = "z" })
      assert.has_error(function() out:add("pool", { name = "a" }) end)
      -- a type that is not a string, an object without a string name
      assert.has_error(function() out:add(7, { name = "c" }) end,
        "out:add: type must be a string")
      for _, bad in ipairs({ "x", {}, { name = 3 } }) do
        local ok, err = pcall(out.add, out, "pool", bad)
        assert.is_false(ok)
        assert.truthy(err:find("out:add: object must be a table with a " ..
          "string name", 1, true))
      end
      local vs = { kind = "VirtualService",
                   metadata = { namespace = "n", name = "v" } }
      out:warn(vs, "spec.http[0].fault", "no fault injection")
      out:warn(vs, "spec.http[0].fault", "no fault injection")
      out:error(vs, "spec.hosts", "bad")
      out:add("poolgroup", { name = "a" })
      out:add("pool", { name = "a-" })
      local r = out:result()
      assert.same({ "httppolicyset", "pool", "pool", "pool", "poolgroup" },
        { r.objects[1].type, r.objects[2].type, r.objects[3].type,
          r.objects[4].type, r.objects[5].type })
      assert.same({ "a", "a-", "b" }, { r.objects[2].object.name,
        r.objects[3].object.name, r.objects[4].object.name })
      assert.equal(2, #r.diagnostics)
      assert.same({ severity = "warning", field = "spec.http[0].fault",
        message = "no fault injection",
        object = { kind = "VirtualService", namespace = "n", name = "v" } },
        r.diagnostics[1])
      assert.equal("error", r.diagnostics[2].severity)
    end)

    it("leaves the order to a host that sorts the objects itself", function()
      local host = h.host({}, { cluster = "c1" })
      host.sorts_objects = true
      local out = rt_mod.new(host).output()
      out:add("pool", { name = "b" })
      out:add("pool", { name = "a" })
      out:add("httppolicyset", { name = "z" })
      local r = out:result()
      assert.same({ "b", "a", "z" }, { r.objects[1].object.name,
        r.objects[2].object.name, r.objects[3].object.name })
      assert.equal("pool", r.objects[1].type)
    end)
  end)

  it("decodes base64", function()
    assert.equal("hello world", rt.base64_decode("aGVsbG8gd29ybGQ="))
    assert.equal("hi", rt.base64_decode("aGk="))
    assert.equal("a", rt.base64_decode("YQ=="))
    assert.equal("abc\255\239", rt.base64_decode("YWJj/+8="))
    assert.equal("abcabc", rt.base64_decode("YWJj\nYWJj\n"))
    assert.is_nil(rt.base64_decode("***"))
  end)

  it("numbers dotted-quad IPv4 addresses", function()
    assert.equal(0x0a000001, rt.ipv4("10.0.0.1"))
    assert.equal(0xffffffff, rt.ipv4("255.255.255.255"))
    assert.equal(0x01020304, rt.ipv4("001.02.3.4"))
    assert.is_nil(rt.ipv4("256.0.0.1"))
    assert.is_nil(rt.ipv4("1.2.3"))
    assert.is_nil(rt.ipv4("1.2.3.4 "))
    assert.is_nil(rt.ipv4("::1"))
    assert.is_nil(rt.ipv4(7))
  end)
end)
