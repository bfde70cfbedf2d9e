-- validate_spec.lua - runtime/lua/validate.lua against the AVI schema.
local validate = require("validate")

describe("validate.object", function()
  local function pool()
    return {
      name = "p", lb_algorithm = "LB_ALGORITHM_ROUND_ROBIN",
      servers = { { ip = { addr = "10.0.0.1", type = "V4" }, port = 8080 } },
      markers = { { key = "clustername", values = { "c" } } },
      created_by = "amc-c",
    }
  end

  it("accepts a good object", function()
    assert.is_true(validate.object("pool", pool()))
    assert.is_true(validate.object("virtualservice", {
      name = "vs", services = { { port = 80 }, { port = 443, enable_ssl = true } },
      http_policies = { { index = 11, http_policy_set_ref = "/api/x?name=y" } },
      type = "VS_TYPE_VH_PARENT" }))
    assert.is_true(validate.object("httppolicyset", { name = "ps",
      http_request_policy = { rules = { { name = "r", index = 1, enable = true,
        match = { path = { match_criteria = "BEGINS_WITH",
          match_str = { "/a" } } },
        redirect_action = { protocol = "HTTPS", port = 443,
          status_code = "HTTP_REDIRECT_STATUS_CODE_301" } } } } }))
  end)

  it("rejects unknown types", function()
    local ok, err = validate.object("ingress", { name = "x" })
    assert.is_nil(ok)
    assert.matches("not an AVI type amc emits", err)
  end)

  local cases = {
    { "wrong scalar type", function(p) p.servers[1].port = "80" end,
      "servers[0].port: expected integer, got string" },
    { "bad enum", function(p) p.lb_algorithm = "LB_FASTEST" end,
      'lb_algorithm: "LB_FASTEST" is not one of the allowed values' },
    { "out of range", function(p) p.servers[1].port = 70000 end,
      "servers[0].port: 70000 is out of range 1-65535" },
    { "missing required", function(p) p.servers[1].ip = nil end,
      "servers[0].ip: required field missing" },
    { "nested required", function(p) p.servers[1].ip.type = nil end,
      "servers[0].ip.type: required field missing" },
    { "unknown field", function(p) p.colour = "red" end,
      "colour: unknown field of Pool" },
    { "nested unknown field", function(p) p.markers[1].vals = {} end,
      "markers[0].vals: unknown field of RoleFilterMatchLabel" },
    { "object instead of array", function(p) p.servers = { a = 1 } end,
      "servers: expected array, got object" },
    { "array item type", function(p) p.markers[1].values = { 1 } end,
      "markers[0].values[0]: expected string, got integer" },
    { "missing name", function(p) p.name = nil end,
      "name: required field missing" },
    { "read-only field", function(p) p.url = "https://x/api/pool/pool-1" end,
      "url: read-only field of Pool" },
    { "float for integer", function(p) p.servers[1].port = 80.5 end,
      "servers[0].port: expected integer, got 80.5" },
  }
  for _, c in ipairs(cases) do
    it("rejects " .. c[1] .. " with the field path", function()
      local p = pool()
      c[2](p)
      local ok, err = validate.object("pool", p)
      assert.is_nil(ok)
      assert.equal(c[3], err)
    end)
  end

  it("accepts special values outside the range", function()
    assert.is_true(validate.object("poolgroup", { name = "pg",
      members = { { pool_ref = "/api/pool?name=p", ratio = 0 } } }))
    local ok, err = validate.object("poolgroup", { name = "pg",
      members = { { pool_ref = "/api/pool?name=p", ratio = 1001 } } })
    assert.is_nil(ok)
    assert.equal("members[0].ratio: 1001 is out of range 1-1000", err)
  end)

  it("knows which types carry created_by", function()
    for _, t in ipairs({ "virtualservice", "pool", "poolgroup",
                         "httppolicyset", "sslkeyandcertificate" }) do
      assert.is_true(validate.has_created_by(t), t)
    end
    assert.is_false(validate.has_created_by("vsvip"))
    assert.is_false(validate.has_created_by("healthmonitor"))
  end)

  it("schema carries defaults for canonical comparison", function()
    local s = validate.schema()
    assert.equal(80, s.types.Pool.fields.default_server_port.default)
    assert.equal("LB_ALGORITHM_LEAST_CONNECTIONS",
      s.types.Pool.fields.lb_algorithm.default)
    assert.equal(true, s.types.VirtualService.fields.enabled.default)
  end)
end)
