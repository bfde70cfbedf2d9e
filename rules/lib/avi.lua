-- lib/avi.lua - what every AVI object amc emits has in common.
--
-- A context `ctx` is created once per Gateway translation and passed to
-- every module: it carries the gateway, `rt`, the output accumulator and
-- the refs built from settings, so no module rebuilds them.

-- (globals as locals: a global lookup goes through the sandbox's proxies)
local select, setmetatable, tostring, type = select, setmetatable, tostring, type

local M = {}

-- AVI types that have a `created_by` field (VsVip and HealthMonitor don't).
local HAS_CREATED_BY = {
  virtualservice = true,
  pool = true,
  poolgroup = true,
  httppolicyset = true,
  sslkeyandcertificate = true,
}

-- The decimal string of an integer (a port, a 0-based index), as `..`
-- writes it: names and paths are built per route and destination, and a
-- table lookup is much cheaper than converting the number each time.
-- (Object numbers are integers when integral, so a float key, which Lua
-- would fold into the integer one, never comes here.)
M.int_str = setmetatable({}, { __index = function(t, n)
  local s = tostring(n)
  t[n] = s
  return s
end })

-- AVI system objects amc refers to by name.
M.APP_PROFILE_HTTP = "System-HTTP"
M.APP_PROFILE_L4 = "System-L4-Application"
M.NET_PROFILE_TCP = "System-TCP-Proxy"
M.SSL_PROFILE = "System-Standard"

function M.context(gateway, rt, out)
  local s = rt.settings
  local ctx = {
    gateway = gateway,
    gw_ns = gateway.metadata.namespace,
    gw_name = gateway.metadata.name,
    -- "<ns>/<name>", as VirtualServices' spec.gateways names it
    gw_id = gateway.metadata.namespace .. "/" .. gateway.metadata.name,
    rt = rt,
    out = out,
    settings = s,
    tenant_ref = rt.ref("tenant", s.tenant),
    cloud_ref = rt.ref("cloud", s.cloud),
    vrf_ref = rt.ref("vrfcontext", s.vrf),
    se_group_ref = rt.ref("serviceenginegroup", s.se_group),
    -- the same for every object of the tree (shared: outputs are not
    -- modified once emitted)
    markers = rt.markers(gateway),
    -- per-translation caches of what rules read (rt.memo gives a memoized
    -- call an empty one, so that its reads are its own)
    cache = {},
  }
  -- Names of this gateway's objects: amc--<cluster>--<gwns>--<gw>--...
  local gw_ns, gw_name, name = ctx.gw_ns, ctx.gw_name, rt.name
  function ctx.name(...)
    return name(gw_ns, gw_name, ...)
  end
  -- Names of objects that belong to one AVI virtual service of the
  -- gateway: `scope` holds its parts ({} for the parent VS, {host} for an
  -- SNI child, {"tcp<port>"} for a TCP listener), then come `...`.
  function ctx.scoped_name(scope, ...)
    if #scope == 0 then
      return name(gw_ns, gw_name, ...)
    elseif #scope == 1 then
      return name(gw_ns, gw_name, scope[1], ...)
    end
    local parts = table.move(scope, 1, #scope, 1, {})
    table.move({ ... }, 1, select("#", ...), #scope + 1, parts)
    return ctx.name(table.unpack(parts, 1, #scope + select("#", ...)))
  end
  ctx.ref = rt.ref
  return ctx
end

-- Adds `obj` of `avi_type` to the output with the ownership fields every
-- amc object carries: tenant_ref, markers, created_by (where the type has
-- it). Returns the object.
function M.emit(ctx, avi_type, obj)
  obj.tenant_ref = ctx.tenant_ref
  obj.markers = ctx.markers
  if HAS_CREATED_BY[avi_type] then
    obj.created_by = ctx.rt.owner
  end
  return ctx.out:add(avi_type, obj)
end

-- The object already emitted under that type and name, if any.
function M.emitted(ctx, avi_type, name)
  return ctx.out:get(avi_type, name)
end

-- A diagnostic path built only when a diagnostic is reported (hot loops
-- pass these instead of formatting a path per item): the arguments of
-- string.format (a format and at most two values; fixed, so that the
-- table is built without a vararg list).
function M.lazy_path(format, a, b)
  return { format, a, b }
end

-- The diagnostic path `path` (a string or a lazy_path), with ".<field>"
-- appended when `field` is given.
function M.at(path, field)
  if type(path) == "table" then
    path = string.format(table.unpack(path))
  end
  if field then
    return path .. "." .. field
  end
  return path
end

-- "spec.http[0].match[1]" style paths (0-based, like the diagnostics).
function M.path(base, field, index)
  local p = base
  if field then
    p = (p ~= "" and (p .. ".") or "") .. field
  end
  if index then
    p = p .. "[" .. (index - 1) .. "]"
  end
  return p
end

return M
