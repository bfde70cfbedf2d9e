-- golden_spec.lua - runs every golden case (tests/golden/cases/<case>/
-- input.yaml) through the rules with the pure-Lua host, checks that every
-- emitted object validates, compares with expected.json, and asserts the
-- Istio semantics each case exists for.
--
-- AMC_GOLDEN_UPDATE=1 rewrites expected.json (review every diff by eye:
-- an expected file is a claim). The C `amc rules test` reads the same
-- files.
local h = require("helpers")
local validate = require("validate")
local cjson = require("cjson")

local CASES = "tests/golden/cases"

-- Pretty JSON: keys sorted, two-space indent, like json.h's pretty form.
local function encode(v, indent)
  indent = indent or ""
  local t = type(v)
  if v == h.null then
    return "null"
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      local map = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n",
        ["\r"] = "\\r", ["\t"] = "\\t", ["\b"] = "\\b", ["\f"] = "\\f" }
      return map[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "number" then
    if math.type(v) == "integer" then
      return tostring(v)
    end
    return string.format("%.17g", v)
  elseif t == "boolean" then
    return tostring(v)
  end
  local inner = indent .. "  "
  local is_arr = getmetatable(v) == h.array_mt or (#v > 0 and next(v, #v) == nil)
  if is_arr then
    if #v == 0 then
      return "[]"
    end
    local parts = {}
    for i, x in ipairs(v) do
      parts[i] = inner .. encode(x, inner)
    end
    return "[\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "]"
  end
  local keys = {}
  for k in pairs(v) do
    keys[#keys + 1] = k
  end
  if #keys == 0 then
    return "{}"
  end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    parts[i] = inner .. encode(k) .. ": " .. encode(v[k], inner)
  end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end

local function document(res)
  local doc = { diagnostics = h.array(res.diagnostics) }
  for t, list in pairs(res.by_type) do
    doc[t] = h.array(list)
  end
  return encode(doc) .. "\n"
end

local function case_dirs()
  local p = io.popen("ls " .. CASES)
  local out = {}
  for line in p:lines() do
    out[#out + 1] = line
  end
  p:close()
  return out
end

local results = {}
local function run(case)
  if not results[case] then
    local dir = CASES .. "/" .. case
    local objs = h.load_yaml(dir .. "/input.yaml")
    local settings = { cluster = "golden" }
    results[case] = h.translate(objs, settings)
  end
  return results[case]
end

local function rules_of(res, ps_suffix)
  local ps = h.find(res, "httppolicyset", ps_suffix)
  assert.is_not_nil(ps, "policy set " .. ps_suffix)
  return ps.http_request_policy.rules
end

local function pool_of(res, suffix)
  local p = h.find(res, "pool", suffix)
  assert.is_not_nil(p, "pool " .. suffix)
  local s = {}
  for _, x in ipairs(p.servers) do
    s[#s + 1] = x.ip.addr .. ":" .. x.port
  end
  return p, s
end

local function pg_ratios(res, suffix)
  local pg = h.find(res, "poolgroup", suffix)
  assert.is_not_nil(pg, "poolgroup " .. suffix)
  local r = {}
  for _, m in ipairs(pg.members) do
    r[m.pool_ref:match("name=amc%-%-golden%-%-istio%-system%-%-gw%-%-(.*)$")] =
      m.ratio
  end
  return r
end

describe("golden cases", function()
  for _, case in ipairs(case_dirs()) do
    it(case .. ": objects validate, owned, match expected.json", function()
      local res = run(case)
      assert.same({}, res.invalid)
      for _, o in ipairs(res.objects) do
        assert.is_table(o.object.markers, o.object.name)
        assert.equal("/api/tenant?name=admin", o.object.tenant_ref)
        if validate.has_created_by(o.type) then
          assert.equal("amc-golden", o.object.created_by, o.object.name)
        else
          assert.is_nil(o.object.created_by)
        end
        assert.truthy(o.object.name:find("^amc%-%-golden%-%-"))
      end
      local text = document(res)
      local path = CASES .. "/" .. case .. "/expected.json"
      if os.getenv("AMC_GOLDEN_UPDATE") == "1" then
        local f = assert(io.open(path, "w"))
        f:write(text)
        f:close()
      end
      local expected = h.read_file(path)
      assert.is_not_nil(expected, path .. " missing")
      -- compared as JSON values, so the C pretty printer's layout may differ
      assert.same(cjson.decode(expected), cjson.decode(text))
    end)
  end
end)

describe("golden semantics", function()
  it("http-basic: Service port -> named targetPort, prefix route first", function()
    local res = run("http-basic")
    local _, web = pool_of(res, "--shop--web--80")
    assert.same({ "10.0.1.1:8080", "10.0.1.2:8080" }, web)
    local _, api = pool_of(res, "--shop--api--8000")
    assert.same({ "10.0.2.1:9090", "10.0.2.2:9090", "10.0.2.4:9090" }, api)
    local rules = rules_of(res, "istio-system--gw")
    assert.equal(2, #rules)
    assert.same({ match_criteria = "BEGINS_WITH", match_case = "SENSITIVE",
      match_str = { "/api/" } }, rules[1].match.path)
    assert.is_nil(rules[2].match.path)
    local vs = h.find(res, "virtualservice", "istio-system--gw")
    assert.same({ { port = 80 } }, vs.services)
    assert.equal("VS_TYPE_NORMAL", vs.type)
  end)

  it("weighted-split: ratios are the weights", function()
    local r = pg_ratios(run("weighted-split"), "shop--shop--http0")
    assert.same({ ["shop--api--8000--v1"] = 75, ["shop--api--8000--v2"] = 25 }, r)
  end)

  it("subsets-and-labels: subset labels are ANDed, unready left out", function()
    local res = run("subsets-and-labels")
    local _, canary = pool_of(res, "--api--8000--v2-canary")
    assert.same({ "10.0.2.4:9090" }, canary)
    local _, stable = pool_of(res, "--api--8000--v2-stable")
    assert.same({ "10.0.2.2:9090" }, stable)
  end)

  it("matches: blocks ORed into rules, conditions ANDed", function()
    local res = run("matches-header-method-query")
    local rules = rules_of(res, "istio-system--gw")
    -- block 0 and 1 of route 0, block 1 of route 1 (block 0 has a regex
    -- header match AVI cannot express and is left out with a warning)
    assert.equal(3, #rules)
    local m = rules[1].match
    assert.same({ "HTTP_METHOD_POST" }, m.method.methods)
    assert.same({ "^(?:/api/v[0-9]+/orders)$" }, m.path.match_str)
    assert.equal(4, #m.hdrs)
    assert.equal("HDR_BEGINS_WITH", m.hdrs[1].match_criteria)
    assert.equal("HDR_EXISTS", m.hdrs[3].match_criteria)
    assert.equal("HDR_DOES_NOT_EQUAL", m.hdrs[4].match_criteria)
    local q = rules[2].match.query
    assert.same({ "^(?=.*(?:^|&)beta=1(?:&|$))(?=.*(?:^|&)lang=(?:en|de)(?:&|$))" },
      q.match_str)
    assert.equal("INSENSITIVE", rules[2].match.path.match_case)
    assert.equal("HTTP", rules[3].match.protocol.protocols)
    assert.equal(1, #h.diags(res, "regex"))
  end)

  it("wildcard-hosts: specific host first, 404 guard, unmatched VS reported", function()
    local res = run("wildcard-hosts")
    local rules = rules_of(res, "istio-system--gw")
    assert.equal(3, #rules)
    assert.same({ "api.example.com", "api.example.com:80" },
      rules[1].match.host_hdr.value)
    assert.equal("HTTP_SWITCHING_SELECT_LOCAL", rules[2].switching_action.action)
    assert.equal("HDR_ENDS_WITH", rules[3].match.host_hdr.match_criteria)
    assert.same({ ".example.com", ".example.com:80" },
      rules[3].match.host_hdr.value)
    assert.equal(1, #h.diags(res, "no host matches"))
  end)

  it("https-sni: one child per host with its certificate", function()
    local res = run("https-sni")
    local parent = h.find(res, "virtualservice", "istio-system--gw")
    assert.equal("VS_TYPE_VH_PARENT", parent.type)
    assert.same({ { port = 80 }, { port = 443, enable_ssl = true },
                  { port = 8443, enable_ssl = true } }, parent.services)
    for _, host in ipairs({ "shop.example.com", "api.example.com" }) do
      local child = h.find(res, "virtualservice", "--" .. host)
      assert.equal("VS_TYPE_VH_CHILD", child.type)
      assert.same({ host }, child.vh_domain_name)
      assert.equal("/api/virtualservice?name=" .. parent.name,
        child.vh_parent_vs_ref)
      assert.is_nil(child.vsvip_ref)
      assert.is_nil(child.services)
    end
    assert.equal(2, #(res.by_type.sslkeyandcertificate or {}))
    for _, c in ipairs(res.by_type.sslkeyandcertificate) do
      assert.truthy(c.certificate.certificate:find("BEGIN CERTIFICATE"))
      assert.truthy(c.key:find("BEGIN PRIVATE KEY"))
    end
  end)

  it("https-redirect: 301 to HTTPS on the HTTP port", function()
    local rules = rules_of(run("https-redirect"), "istio-system--gw")
    assert.equal(1, #rules)
    assert.same({ protocol = "HTTPS", port = 443, keep_query = true,
      status_code = "HTTP_REDIRECT_STATUS_CODE_301" }, rules[1].redirect_action)
  end)

  it("rewrite: prefix, exact, authority and headers", function()
    local res = run("rewrite")
    local rules = rules_of(res, "istio-system--gw")
    assert.same({ type = "URI_PARAM_TYPE_TOKENIZED", tokens = {
      { type = "URI_TOKEN_TYPE_STRING", str_value = "v2" },
      { type = "URI_TOKEN_TYPE_PATH", start_index = 2, end_index = 65535 } } },
      rules[1].rewrite_url_action.path)
    assert.equal("api.internal",
      rules[1].rewrite_url_action.host_hdr.tokens[1].str_value)
    assert.same({ "HTTP_REPLACE_HDR", "HTTP_ADD_HDR", "HTTP_REMOVE_HDR" }, {
      rules[1].hdr_action[1].action, rules[1].hdr_action[2].action,
      rules[1].hdr_action[3].action })
    assert.equal("index.html",
      rules[2].rewrite_url_action.path.tokens[1].str_value)
    assert.equal(2, #rules) -- /img prefix without "/" can't be rewritten
    assert.equal(1, #h.diags(res, "prefixes ending in '/'"))
    local ps = h.find(res, "httppolicyset", "istio-system--gw")
    assert.equal(1, #ps.http_response_policy.rules)
  end)

  it("redirect: authority/path, scheme with nearest code, port", function()
    local res = run("redirect")
    local rules = rules_of(res, "istio-system--gw")
    local a = rules[1].redirect_action
    assert.equal("HTTP", a.protocol)
    assert.equal("new", a.path.tokens[1].str_value)
    assert.equal("www.example.com", a.host.tokens[1].str_value)
    assert.equal("HTTP_REDIRECT_STATUS_CODE_301", a.status_code)
    local b = rules[2].redirect_action
    assert.equal("HTTPS", b.protocol)
    assert.equal(443, b.port)
    assert.equal(1, #h.diags(res, "cannot redirect with 308"))
    assert.equal(8080, rules[3].redirect_action.port)
    assert.equal("HTTP_REDIRECT_STATUS_CODE_307", rules[3].redirect_action.status_code)
  end)

  it("service-target-ports: Endpoints, Pods and multi-port slices", function()
    local res = run("service-target-ports")
    assert.same({ "10.0.3.1:3000" }, select(2, pool_of(res, "--legacy--80")))
    assert.same({ "10.0.4.1:7070" }, select(2, pool_of(res, "--bare--7000")))
    assert.same({ "10.0.2.1:9100", "10.0.2.2:9100", "10.0.2.4:9100" },
      select(2, pool_of(res, "--api--9100")))
  end)

  it("hosts-short-fqdn: every spelling resolves to the same Service", function()
    local res = run("hosts-short-fqdn")
    assert.equal(1, #res.by_type.pool)
    assert.equal(1, #h.diags(res, "resolves to no Service"))
  end)

  it("serviceentry: static endpoints with port map, DNS host", function()
    local res = run("serviceentry")
    local p, s = pool_of(res, "--payments.partner.example--443")
    assert.same({ "192.0.2.10:443", "192.0.2.11:8443" }, s)
    assert.equal("/api/sslprofile?name=System-Standard", p.ssl_profile_ref)
    local d = pool_of(res, "--search.partner.example--80")
    assert.same({ ip = { addr = "search.partner.example", type = "DNS" },
      hostname = "search.partner.example", resolve_server_by_dns = true,
      port = 80 }, d.servers[1])
  end)

  it("multiple VirtualServices: oldest first, only bound ones", function()
    local rules = rules_of(run("multiple-virtualservices-order"),
      "istio-system--gw")
    assert.equal(3, #rules)
    assert.truthy(rules[1].name:find("^shop/zz%-older"))
    assert.truthy(rules[2].name:find("^ops/other%-ns"))
    assert.truthy(rules[3].name:find("^shop/aa%-newer"))
  end)

  it("unready-endpoints: not-ready endpoints are not servers", function()
    local _, s = pool_of(run("unready-endpoints"), "--api--8000")
    assert.same({ "10.0.2.1:9090", "10.0.2.2:9090", "10.0.2.4:9090" }, s)
  end)

  it("destinationrule-lb: algorithms and hashes", function()
    local res = run("destinationrule-lb")
    local function alg(sub)
      local p = pool_of(res, "--api--8000--" .. sub)
      return p.lb_algorithm, p.lb_algorithm_hash
    end
    assert.equal("LB_ALGORITHM_ROUND_ROBIN", alg("rr"))
    assert.equal("LB_ALGORITHM_LEAST_CONNECTIONS", alg("lr"))
    assert.equal("LB_ALGORITHM_RANDOM", alg("rnd"))
    assert.same({ "LB_ALGORITHM_CONSISTENT_HASH",
      "LB_ALGORITHM_CONSISTENT_HASH_CUSTOM_HEADER" }, { alg("hdr") })
    assert.same({ "LB_ALGORITHM_CONSISTENT_HASH",
      "LB_ALGORITHM_CONSISTENT_HASH_SOURCE_IP_ADDRESS" }, { alg("ip") })
    assert.equal("LB_ALGORITHM_LEAST_CONNECTIONS", alg("cookie"))
    assert.equal(1, #h.diags(res, "httpCookie"))
    assert.equal(1, #h.diags(res, "outlierDetection"))
    assert.equal(1, #h.diags(res, "connectionPool"))
  end)

  it("direct-response: local 200 with body, 410 reported", function()
    local res = run("direct-response")
    local rules = rules_of(res, "istio-system--gw")
    assert.equal(2, #rules)
    assert.same({ action = "HTTP_SWITCHING_SELECT_LOCAL",
      status_code = "HTTP_LOCAL_RESPONSE_STATUS_CODE_200",
      file = { content_type = "text/plain", file_content = "ok" } },
      rules[1].switching_action)
    assert.equal(1, #h.diags(res, "not 410"))
  end)

  it("unsupported-features: each one is a diagnostic", function()
    local res = run("unsupported-features")
    for _, f in ipairs({ "spec.http[0].timeout", "spec.http[0].retries",
      "spec.http[0].fault", "spec.http[0].mirror", "spec.http[0].corsPolicy",
      "spec.http[1].delegate", "spec.http[2].match[0].headers.x-v",
      "spec.servers[1].tls.mode", "spec.servers[2].tls.mode", "spec.tls" }) do
      local found = false
      for _, d in ipairs(res.diagnostics) do
        if d.field == f then
          found = true
        end
      end
      assert.is_true(found, f)
    end
  end)

  it("selector-not-matching: nothing at all", function()
    local res = run("selector-not-matching")
    assert.same({}, res.objects)
    assert.same({}, res.diagnostics)
  end)

  it("missing-references: errors name the object and field", function()
    local res = run("missing-references")
    local want = {
      ["spec.servers[1].tls.credentialName"] = "Gateway",
      ["spec.http[0].route[0].destination.host"] = "VirtualService",
      ["spec.http[1].route[0].destination.subset"] = "VirtualService",
      ["spec.http[2].route[0].destination.port"] = "VirtualService",
    }
    for field, kind in pairs(want) do
      local found
      for _, d in ipairs(res.diagnostics) do
        if d.field == field then
          found = d
        end
      end
      assert.is_not_nil(found, field)
      assert.equal("error", found.severity)
      assert.equal(kind, found.object.kind)
    end
    for _, d in ipairs(res.diagnostics) do
      assert.is_nil(d.message:find("PRIVATE KEY", 1, true))
    end
  end)

  it("tcp-server: L4 service with a pool group", function()
    local res = run("tcp-server")
    local vs = h.find(res, "virtualservice", "istio-system--gw")
    assert.equal("/api/applicationprofile?name=System-L4-Application",
      vs.application_profile_ref)
    assert.equal(5432, vs.service_pool_select[1].service_port)
    assert.is_nil(vs.http_policies)
  end)
end)

describe("examples", function()
  it("every object translated from examples/ validates", function()
    local objs = h.load_yaml("examples")
    local res = h.translate(objs, { cluster = "example" })
    assert.same({}, res.invalid)
    assert.is_true(#res.objects >= 10)
    for _, o in ipairs(res.objects) do
      assert.is_true(validate.object(o.type, o.object))
    end
  end)
end)
