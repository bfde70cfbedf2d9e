-- validate.lua - checks an AVI object emitted by the rules against AVI's
-- schema (runtime/lua/avi_schema.lua, generated from the swagger files).
--
--   validate.object(avi_type, obj) -> true | nil, "field.path: problem"
--
-- Checked: the type is one amc emits; no unknown or read-only fields;
-- each value has the schema's type (string, integer, number, boolean,
-- object, array of ...); enums; numeric ranges (plus special values);
-- array sizes; required fields present. Paths name array elements 0-based:
-- "services[1].port: 70000 is out of range 0-65535".
--
-- The schema is `require("avi_schema")` unless set with
-- validate.use(schema) (the engine may do either).

local M = {}

local schema

function M.use(s)
  schema = s
end

local function get_schema()
  if not schema then
    schema = require("avi_schema")
  end
  return schema
end

function M.schema()
  return get_schema()
end

-- Sets of enum values, built on first use.
local enum_sets = setmetatable({}, { __mode = "k" })

local function enum_has(enum, v)
  local set = enum_sets[enum]
  if not set then
    set = {}
    for _, e in ipairs(enum) do
      set[e] = true
    end
    enum_sets[enum] = set
  end
  return set[v] == true
end

local function is_array(v)
  if type(v) ~= "table" then
    return false
  end
  local n = 0
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 then
      return false
    end
    n = n + 1
  end
  for i = 1, n do
    if v[i] == nil then
      return false
    end
  end
  return true
end

local function describe(v)
  if type(v) == "number" then
    return math.type(v) == "integer" and "integer" or "number"
  elseif type(v) == "table" then
    return is_array(v) and next(v) ~= nil and "array" or "object"
  end
  return type(v)
end

local function join(path, field)
  if path == "" then
    return field
  end
  return path .. "." .. field
end

local check_object

-- Checks a scalar against type name `t` and the field facts `f`.
local function check_scalar(t, f, v, path)
  if t == "string" then
    if type(v) ~= "string" then
      return nil, path .. ": expected string, got " .. describe(v)
    end
    if f.enum and not enum_has(f.enum, v) then
      return nil, string.format("%s: %q is not one of the allowed values",
        path, v)
    end
  elseif t == "integer" or t == "number" then
    if type(v) ~= "number" then
      return nil, path .. ": expected " .. t .. ", got " .. describe(v)
    end
    if t == "integer" and math.type(v) ~= "integer" then
      if v ~= math.floor(v) then
        return nil, path .. ": expected integer, got " .. tostring(v)
      end
    end
    if f.min and (v < f.min or v > f.max) then
      local special = false
      for _, s in ipairs(f.special or {}) do
        if s == v then
          special = true
        end
      end
      if not special then
        return nil, string.format("%s: %s is out of range %d-%d", path,
          tostring(v), f.min, f.max)
      end
    end
  elseif t == "boolean" then
    if type(v) ~= "boolean" then
      return nil, path .. ": expected boolean, got " .. describe(v)
    end
  else
    return nil, path .. ": unsupported schema type " .. tostring(t)
  end
  return true
end

local function check_field(f, v, path)
  local t = f.t
  if t == "object" then
    if type(v) ~= "table" or (next(v) ~= nil and is_array(v)) then
      return nil, path .. ": expected object, got " .. describe(v)
    end
    if f.ref then
      return check_object(f.ref, v, path)
    end
    return true
  elseif t == "array" then
    if type(v) ~= "table" or not is_array(v) then
      return nil, path .. ": expected array, got " .. describe(v)
    end
    if f.max_items and #v > f.max_items then
      return nil, string.format("%s: %d items, at most %d allowed", path, #v,
        f.max_items)
    end
    for i, item in ipairs(v) do
      local ipath = string.format("%s[%d]", path, i - 1)
      local ok, err
      if f.ref then
        if type(item) ~= "table" or (next(item) ~= nil and is_array(item)) then
          return nil, ipath .. ": expected object, got " .. describe(item)
        end
        ok, err = check_object(f.ref, item, ipath)
      else
        ok, err = check_scalar(f.items or "string", f, item, ipath)
      end
      if not ok then
        return nil, err
      end
    end
    return true
  end
  return check_scalar(t, f, v, path)
end

check_object = function(type_name, obj, path)
  local def = get_schema().types[type_name]
  if not def then
    return nil, (path == "" and "" or path .. ": ") ..
      "unknown schema type " .. type_name
  end
  local keys = {}
  for k in pairs(obj) do
    if type(k) ~= "string" then
      return nil, join(path, tostring(k)) .. ": field names must be strings"
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local f = def.fields[k]
    local fpath = join(path, k)
    if not f then
      return nil, fpath .. ": unknown field of " .. type_name
    end
    if f.ro then
      return nil, fpath .. ": read-only field of " .. type_name
    end
    local ok, err = check_field(f, obj[k], fpath)
    if not ok then
      return nil, err
    end
  end
  for _, r in ipairs(def.required or {}) do
    if obj[r] == nil then
      return nil, join(path, r) .. ": required field missing"
    end
  end
  return true
end

-- Validates one emitted object of REST type `avi_type`.
function M.object(avi_type, obj)
  local s = get_schema()
  local root = s.objects[avi_type]
  if not root then
    return nil, string.format("%s: not an AVI type amc emits",
      tostring(avi_type))
  end
  if type(obj) ~= "table" or (next(obj) ~= nil and is_array(obj)) then
    return nil, ": expected object, got " .. describe(obj)
  end
  return check_object(root, obj, "")
end

-- Does `avi_type` have a created_by field?
function M.has_created_by(avi_type)
  return get_schema().created_by[avi_type] == true
end

return M
