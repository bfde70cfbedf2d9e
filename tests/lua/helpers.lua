-- helpers.lua - a pure-Lua stand-in for amc's C host, for busted specs.
--
--   local h = require("helpers")
--   local host = h.host(objects, settings)     -- host table for rt.new
--   local objs = h.load_yaml("examples/bookinfo") -- file or directory
--   local res  = h.translate(objs, settings)   -- all Gateways, like
--                                              -- `amc translate`
--
-- The host mirrors the engine: get/list return fresh copies, list sorts by
-- namespace then name, hash is FNV-1a 64 printed as 16 lowercase hex
-- digits, JSON arrays carry `h.array_mt`, JSON null is `h.null`.

local rt_mod = require("rt")
local validate = require("validate")

local M = {}

M.null = setmetatable({}, { __name = "json.null",
  __tostring = function() return "null" end })
M.array_mt = { __name = "json.array" }

function M.array(t)
  return setmetatable(t or {}, M.array_mt)
end

-- FNV-1a 64 over the bytes of `s` (Lua integers wrap modulo 2^64).
function M.fnv1a64(s)
  local h = 0xcbf29ce484222325
  for i = 1, #s do
    h = h ~ s:byte(i)
    h = h * 0x100000001b3
  end
  return string.format("%016x", h)
end

local function deepcopy(v)
  if type(v) ~= "table" or v == M.null then
    return v
  end
  local c = {}
  for k, x in pairs(v) do
    c[k] = deepcopy(x)
  end
  return setmetatable(c, getmetatable(v))
end
M.deepcopy = deepcopy

function M.host(objects, settings)
  local by_kind = {}
  for _, o in ipairs(objects or {}) do
    local kind = o.kind
    by_kind[kind] = by_kind[kind] or {}
    table.insert(by_kind[kind], o)
  end
  for _, list in pairs(by_kind) do
    table.sort(list, function(a, b)
      local na, nb = a.metadata.namespace or "", b.metadata.namespace or ""
      if na ~= nb then
        return na < nb
      end
      return a.metadata.name < b.metadata.name
    end)
  end
  local host = { settings = settings or { cluster = "golden" },
                 null = M.null, array_mt = M.array_mt, hash = M.fnv1a64,
                 reads = {} }
  function host.get(kind, ns, name)
    table.insert(host.reads, kind .. "/" .. tostring(ns) .. "/" .. name)
    for _, o in ipairs(by_kind[kind] or {}) do
      if o.metadata.name == name and o.metadata.namespace == ns then
        return deepcopy(o)
      end
    end
    return nil
  end
  -- The string(s) at a dotted path: a string, or an array's strings.
  local function has_value(o, field, value)
    local v = o
    for key in field:gmatch("[^.]+") do
      if type(v) ~= "table" or getmetatable(v) == M.array_mt then
        return false
      end
      v = v[key]
    end
    if type(v) == "string" then
      return v == value
    end
    if type(v) == "table" and getmetatable(v) == M.array_mt then
      for _, x in ipairs(v) do
        if x == value then
          return true
        end
      end
    end
    return false
  end
  function host.list(kind, ns, labels, field, value)
    table.insert(host.reads, kind .. "/" .. tostring(ns))
    local out = M.array()
    for _, o in ipairs(by_kind[kind] or {}) do
      if (ns == nil or o.metadata.namespace == ns) and
         (labels == nil or rt_mod.labels_match(labels, o.metadata.labels)) and
         (field == nil or has_value(o, field, value)) then
        out[#out + 1] = deepcopy(o)
      end
    end
    return out
  end
  return host
end

function M.rt(objects, settings)
  return rt_mod.new(M.host(objects, settings))
end

---------------------------------------------------------------------------
-- Loading fixtures: YAML/JSON through Debian's python3-yaml, which prints
-- the documents as a Lua literal (so [] stays an array, null stays null and
-- integers stay integers).
---------------------------------------------------------------------------

local PY = [[
import sys, os, yaml
def lua(v):
    if v is None: return "NULL"
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, int): return str(v)
    if isinstance(v, float): return repr(v)
    if isinstance(v, str):
        return '"' + "".join(chr(b) if b < 128 and (chr(b).isalnum() or chr(b) in " ._-/:*=") else "\\%03d" % b for b in v.encode()) + '"'
    if isinstance(v, list): return "A{" + ",".join(lua(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ",".join("[%s]=%s" % (lua(str(k)), lua(x)) for k, x in v.items()) + "}"
    raise SystemExit("cannot convert %r" % (v,))
def files(p):
    if os.path.isdir(p):
        for root, dirs, fs in os.walk(p):
            dirs.sort()
            for f in sorted(fs):
                if f.endswith((".yaml", ".yml", ".json")) and f not in ("expected.json", "settings.json"):
                    yield os.path.join(root, f)
    else:
        yield p
docs = []
for p in sys.argv[1:]:
    for f in files(p):
        with open(f) as fh:
            for d in yaml.safe_load_all(fh):
                if d is None: continue
                if d.get("kind") == "List": docs.extend(d.get("items") or [])
                else: docs.append(d)
print("return A{" + ",".join(lua(d) for d in docs) + "}")
]]

local function python()
  local p = os.getenv("AMC_PYTHON")
  if p == nil or p == "" then
    p = "/usr/bin/python3"
  end
  return p
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Loads every object from YAML/JSON files (a file or a directory).
function M.load_yaml(...)
  local args = {}
  for _, p in ipairs({ ... }) do
    args[#args + 1] = shell_quote(p)
  end
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w"))
  f:write(PY)
  f:close()
  local cmd = python() .. " " .. tmp .. " " .. table.concat(args, " ")
  local pipe = assert(io.popen(cmd, "r"))
  local src = pipe:read("a")
  local ok = pipe:close()
  os.remove(tmp)
  assert(ok, "loading " .. table.concat(args, " ") .. " failed")
  local chunk = assert(load(src, "=fixtures", "t",
    { A = M.array, NULL = M.null }))
  return chunk()
end

function M.read_file(path)
  local f = io.open(path, "r")
  if not f then
    return nil
  end
  local s = f:read("a")
  f:close()
  return s
end

---------------------------------------------------------------------------
-- Rules, loaded like the engine does: each rules/<name>.lua runs in its own
-- sandbox environment where import("<name>") returns another module.
---------------------------------------------------------------------------

local SAFE = { "assert", "error", "ipairs", "next", "pairs", "pcall",
  "select", "tonumber", "tostring", "type", "xpcall", "setmetatable",
  "getmetatable", "rawequal", "rawget", "rawlen", "rawset" }
local SAFE_LIBS = { "string", "table", "math", "utf8" }

function M.load_rules(dir)
  dir = dir or "rules"
  local modules, loading = {}, {}
  local function import(name)
    if modules[name] then
      return modules[name]
    end
    assert(not loading[name], "import cycle at " .. name)
    loading[name] = true
    local env = { import = import }
    for _, k in ipairs(SAFE) do
      env[k] = _G[k]
    end
    for _, k in ipairs(SAFE_LIBS) do
      env[k] = _G[k]
    end
    local path = dir .. "/" .. name .. ".lua"
    local chunk = assert(loadfile(path, "t", env))
    modules[name] = chunk()
    loading[name] = nil
    return modules[name]
  end
  return import
end

-- Runs the Gateway rule over every Gateway in `objects` and returns
--   { by_type = { pool = {...}, ... }, diagnostics = {...},
--     invalid = { "pool amc--...: path: problem", ... } }
-- Objects of different gateways are merged (like `amc translate`).
function M.translate(objects, settings)
  local import = M.load_rules("rules")
  local gateway_rule = import("gateway")
  local res = { by_type = {}, diagnostics = {}, invalid = {}, objects = {} }
  local host = M.host(objects, settings or { cluster = "golden" })
  for _, gw in ipairs(host.list("Gateway", nil)) do
    local rt = rt_mod.new(host)
    local out = gateway_rule.translate(gw, rt)
    for _, o in ipairs(out.objects) do
      local ok, err = validate.object(o.type, o.object)
      if not ok then
        table.insert(res.invalid, o.type .. " " .. o.object.name .. ": " ..
          err)
      end
      res.by_type[o.type] = res.by_type[o.type] or {}
      table.insert(res.by_type[o.type], o.object)
      table.insert(res.objects, o)
    end
    for _, d in ipairs(out.diagnostics) do
      table.insert(res.diagnostics, d)
    end
  end
  for _, list in pairs(res.by_type) do
    table.sort(list, function(a, b) return a.name < b.name end)
  end
  return res
end

-- Finds the object of `avi_type` whose name ends with `suffix`.
function M.find(res, avi_type, suffix)
  for _, o in ipairs(res.by_type[avi_type] or {}) do
    if o.name:sub(-#suffix) == suffix then
      return o
    end
  end
  return nil
end

-- Diagnostics whose message or field contains `text`.
function M.diags(res, text)
  local out = {}
  for _, d in ipairs(res.diagnostics) do
    if d.message:find(text, 1, true) or d.field:find(text, 1, true) then
      out[#out + 1] = d
    end
  end
  return out
end

return M
