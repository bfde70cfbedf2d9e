-- rt.lua - the runtime library handed to rules as `rt`.
--
-- The C engine (and tests/lua/helpers.lua under busted) calls
-- `rt.new(host)` once per translation and passes the result to the entry
-- rule. `host` provides what only the runtime can do:
--
--   host.get(kind, ns, name) -> object | nil   (recorded read)
--   host.list(kind, ns, labels, field, value)
--                            -> array sorted by namespace, name (recorded);
--                               labels (a selector) and field/value
--                               (a dotted path whose string, or array
--                               element, equals value) optional
--   host.hash(str)           -> 16 lowercase hex digits (FNV-1a 64)
--   host.settings            -> table (missing keys take the defaults below)
--   host.null                -> the JSON null sentinel
--   host.array_mt            -> metatable marking a table as a JSON array
--   host.base64_decode(s)    -> bytes | nil (optional; C copy of base64_decode)
--   host.ipv4(s)             -> integer | nil (optional; C copy of ipv4)
--   host.plain_name(prefix, ...) -> string | nil (optional; C copy of
--                               plain_name)
--   host.new_array(n)        -> an empty JSON array with room for n
--                               elements (optional; else rt.array({}))
--   host.sorts_objects       -> true when the host orders result().objects
--                               by type then name itself (optional; then
--                               result() leaves them in the order added)
--
-- Everything here is deterministic and pure apart from the host calls.
-- See docs/rules-contract.md (the contract) and docs/rules.md (reference).

-- (globals as locals: a global lookup goes through the sandbox's proxies,
-- and so does a string method call such as s:sub(): the string metatable
-- is the rules' read-only proxy)
local assert, ipairs, pairs, select, type = assert, ipairs, pairs, select, type
local tonumber, tostring = tonumber, tostring
local find, lower, sub = string.find, string.lower, string.sub
local math_type = math.type

local M = {}

local NAME_MAX = 200
M.NAME_MAX = NAME_MAX

M.DEFAULT_SETTINGS = {
  cluster = "cluster",
  tenant = "admin",
  cloud = "Default-Cloud",
  vrf = "global",
  se_group = "Default-Group",
  ingress_selector = { istio = "ingressgateway" },
  domain = "cluster.local",
  -- Optional: AVI network (name) and subnet ("10.0.0.0/24") the VIP is
  -- allocated from. Without them the cloud's IPAM decides.
  vip_network = nil,
  vip_subnet = nil,
}

---------------------------------------------------------------------------
-- Pure helpers (no host needed); also exported on every rt table.
---------------------------------------------------------------------------

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return ta < tb -- "number" < "string"
  end
  return a < b
end

local function sorted_keys(t)
  local keys, all_strings = {}, true
  for k in pairs(t or {}) do
    keys[#keys + 1] = k
    all_strings = all_strings and type(k) == "string"
  end
  if all_strings then
    table.sort(keys) -- the usual case, without a Lua comparison per step
  else
    table.sort(keys, key_less)
  end
  return keys
end

local function no_more()
  return nil
end

local function sorted_pairs(t)
  if t == nil then
    return no_more -- an absent optional map (the usual case)
  end
  local keys = sorted_keys(t)
  local i = 0
  return function()
    i = i + 1
    local k = keys[i]
    if k ~= nil then
      return k, t[k]
    end
  end
end

-- Sorts `list` in place by key_of(item) (all strings or all numbers),
-- computing each key once. Distinct keys are sorted by themselves, without
-- a Lua comparison per step; items that share a key are ordered as
-- table.sort with the comparison key_of(a) < key_of(b) orders them.
local function sort_by(list, key_of)
  local n = #list
  local keys = {}
  -- Lists often come in order already (a store listing, hosts taken in
  -- that order): strictly ascending keys are distinct and in place, and
  -- need no table from key to item.
  local ascending = true
  for i = 1, n do
    local k = key_of(list[i])
    if ascending and i > 1 and not (keys[i - 1] < k) then
      ascending = false
    end
    keys[i] = k
  end
  if ascending then
    return list
  end
  local by_key = {}
  for i = 1, n do
    local k = keys[i]
    if by_key[k] ~= nil then
      local key = {}
      for j = 1, n do
        key[list[j]] = keys[j]
      end
      table.sort(list, function(a, b) return key[a] < key[b] end)
      return list
    end
    by_key[k] = list[i]
  end
  table.sort(keys)
  for i = 1, n do
    list[i] = by_key[keys[i]]
  end
  return list
end

-- Characters AVI names (and by-name refs) may carry unchanged.
local SAFE_NAME_CHARS = "[^A-Za-z0-9._-]"

local function sanitize(part)
  part = tostring(part)
  local clean = part:gsub(SAFE_NAME_CHARS, "_")
  return clean
end

-- Can `part` (a string) go into a name unchanged? Not empty, only
-- AVI-safe characters, and no "--" (the separator).
local function is_plain(part)
  return part ~= "" and not find(part, SAFE_NAME_CHARS) and
    not find(part, "--", 1, true)
end

-- prefix .. the parts joined by "--" when every part is an integer or a
-- plain string, else nil. (rt.name's usual case; the engine offers a C
-- copy.)
local function plain_name(prefix, ...)
  local parts = { ... }
  for i = 1, select("#", ...) do
    local p = parts[i]
    if math_type(p) == "integer" then
      parts[i] = tostring(p)
    elseif type(p) ~= "string" or not is_plain(p) then
      return nil
    end
  end
  return prefix .. table.concat(parts, "--")
end

-- Characters a URL query value may carry unescaped.
local UNSAFE_URL_CHARS = "[^A-Za-z0-9._~-]"

local function percent_escape(c)
  return string.format("%%%02X", c:byte())
end

local function url_escape(s)
  s = tostring(s)
  if not s:find(UNSAFE_URL_CHARS) then
    return s -- names usually need no escaping
  end
  return (s:gsub(UNSAFE_URL_CHARS, percent_escape))
end

-- Kubernetes equality-based label selector: every key/value of `selector`
-- is in `labels` (AND). An empty or absent selector matches everything.
local function labels_match(selector, labels)
  labels = labels or {}
  for k, v in pairs(selector or {}) do
    if labels[k] ~= v then
      return false
    end
  end
  return true
end

-- A full label selector ({matchLabels, matchExpressions}).
local function selector_match(sel, labels)
  if sel == nil then
    return true
  end
  labels = labels or {}
  if not labels_match(sel.matchLabels, labels) then
    return false
  end
  for _, e in ipairs(sel.matchExpressions or {}) do
    local v = labels[e.key]
    local inset = false
    for _, x in ipairs(e.values or {}) do
      if x == v then
        inset = true
      end
    end
    if e.operator == "In" and not inset then
      return false
    elseif e.operator == "NotIn" and inset then
      return false
    elseif e.operator == "Exists" and v == nil then
      return false
    elseif e.operator == "DoesNotExist" and v ~= nil then
      return false
    end
  end
  return true
end

-- Is host pattern `h` a wildcard suffix ("*.example.com")?
local function is_wildcard(h)
  return find(h, "*.", 1, true) == 1
end

-- host_matches for lowercase arguments. (is_wildcard written out: this
-- runs for every VirtualService host against every server host.)
local function lower_host_matches(pattern, host)
  if pattern == "*" or pattern == host then
    return true
  end
  if find(pattern, "*.", 1, true) == 1 then -- is_wildcard(pattern)
    if host == "*" then
      return false
    end
    local suffix = sub(pattern, 2) -- ".example.com"
    local min = #suffix -- host is longer than suffix and ends with it
    if find(host, "*.", 1, true) == 1 then -- is_wildcard(host)
      -- a wildcard is covered only by a shorter (or equal) wildcard
      min = min + 1
    end
    return #host > min and find(host, suffix, -#suffix, true) ~= nil
  end
  return false
end

-- Istio host matching: `pattern` ("*", "*.example.com" or an exact host)
-- covers `host` (which may itself be a wildcard). Case-insensitive.
local function host_matches(pattern, host)
  return lower_host_matches(lower(pattern), lower(host))
end

-- Answers of the pure host functions below, kept across translations
-- (this module lives as long as the rules' generation): every translation
-- of a Gateway asks them again for each VirtualService host, and a table
-- look-up is much cheaper than lowering, finding and cutting strings.
-- Only string arguments are kept (no number can then find an answer). A
-- table is emptied when it reaches CACHE_MAX answers, so that the hosts of
-- objects long deleted do not pile up.
local CACHE_MAX = 16384

-- The hosts two host patterns have in common: the more specific one, or
-- nil when they are disjoint.
local function compute_intersection(a, b)
  a, b = lower(a), lower(b)
  if lower_host_matches(a, b) then
    return b
  elseif lower_host_matches(b, a) then
    return a
  end
  return false
end

local intersections, n_intersections = {}, 0 -- [a][b] -> host | false

local function host_intersection(a, b)
  local of_a = intersections[a]
  local h = of_a and of_a[b]
  if h == nil then
    h = compute_intersection(a, b)
    if type(a) == "string" and type(b) == "string" then
      if n_intersections >= CACHE_MAX then
        intersections, n_intersections, of_a = {}, 0, nil
      end
      if of_a == nil then
        of_a = {}
        intersections[a] = of_a
      end
      of_a[b] = h
      n_intersections = n_intersections + 1
    end
  end
  return h or nil
end

-- Sort key for host specificity, as Envoy picks virtual hosts: exact hosts
-- first, then wildcards by decreasing suffix length, then "*".
local function host_rank(h)
  if h == "*" then
    return 2
  elseif is_wildcard(h) then
    return 1
  end
  return 0
end

-- A string key that sorts (distinct) hosts as host_specificity_less.
local RANK_DIGIT = { [0] = "0", [2] = "2" }

local function compute_specificity_key(h)
  local rank = host_rank(h)
  if rank == 1 then -- longer suffixes first
    return string.format("1%08d", 99999999 - #h) .. h
  end
  return RANK_DIGIT[rank] .. h
end

local specificity_keys, n_specificity_keys = {}, 0 -- (see CACHE_MAX)

local function host_specificity_key(h)
  local k = specificity_keys[h]
  if k == nil then
    k = compute_specificity_key(h)
    if type(h) == "string" then
      if n_specificity_keys >= CACHE_MAX then
        specificity_keys, n_specificity_keys = {}, 0
      end
      specificity_keys[h] = k
      n_specificity_keys = n_specificity_keys + 1
    end
  end
  return k
end

local function host_specificity_less(a, b)
  local ra, rb = host_rank(a), host_rank(b)
  if ra ~= rb then
    return ra < rb
  end
  if ra == 1 and #a ~= #b then
    return #a > #b
  end
  return a < b
end

-- base64 alphabet byte -> 6-bit value
local BASE64 = {}
do
  local alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  for i = 1, #alphabet do
    BASE64[alphabet:byte(i)] = i - 1
  end
end

local function base64_decode(s)
  local rev, char = BASE64, string.char
  s = s:gsub("%s", "")
  if #s % 4 ~= 0 or s:find("[^%w+/=]") then
    return nil
  end
  local out = {}
  for i = 1, #s, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    local va, vb = rev[a], rev[b]
    local vc = c ~= 61 and rev[c] or 0 -- 61 is "="
    local vd = d ~= 61 and rev[d] or 0
    if va == nil or vb == nil or vc == nil or vd == nil then
      return nil
    end
    local n = (va << 18) | (vb << 12) | (vc << 6) | vd
    if c ~= 61 and d ~= 61 then -- no padding: three bytes at once
      out[#out + 1] = char(n >> 16, (n >> 8) & 0xff, n & 0xff)
    else
      out[#out + 1] = char((n >> 16) & 0xff)
      if c ~= 61 then
        out[#out + 1] = char((n >> 8) & 0xff)
      end
      if d ~= 61 then
        out[#out + 1] = char(n & 0xff)
      end
    end
  end
  return table.concat(out)
end

M.sorted_keys = sorted_keys
M.sorted_pairs = sorted_pairs
M.url_escape = url_escape
M.labels_match = labels_match
M.selector_match = selector_match
M.host_matches = host_matches
M.host_intersection = host_intersection
M.host_specificity_less = host_specificity_less
M.host_specificity_key = host_specificity_key
M.sort_by = sort_by
M.base64_decode = base64_decode
M.plain_name = plain_name

-- The 32-bit number of a dotted-quad IPv4 address ("10.0.0.1": four runs
-- of ASCII digits, each at most 255, leading zeros allowed), else nil.
local IPV4 = "^(%d+)%.(%d+)%.(%d+)%.(%d+)$"
local function ipv4(s)
  if type(s) ~= "string" then
    return nil
  end
  local o1, o2, o3, o4 = s:match(IPV4)
  if not o1 then
    return nil
  end
  o1, o2, o3, o4 = tonumber(o1), tonumber(o2), tonumber(o3), tonumber(o4)
  if o1 > 255 or o2 > 255 or o3 > 255 or o4 > 255 then
    return nil
  end
  return (o1 << 24) | (o2 << 16) | (o3 << 8) | o4
end
M.ipv4 = ipv4

---------------------------------------------------------------------------
-- Output accumulator
---------------------------------------------------------------------------

local Output = {}
Output.__index = Output

local function object_id(obj)
  local md = (type(obj) == "table" and obj.metadata) or {}
  return {
    kind = (type(obj) == "table" and obj.kind) or "Unknown",
    namespace = md.namespace,
    name = md.name or "",
  }
end

-- Adds one AVI object. Names are unique per type: adding a second object
-- with the same type and name is a rule error.
function Output:add(avi_type, object)
  local name = type(object) == "table" and object.name
  if type(name) ~= "string" then
    error("out:add: object must be a table with a string name", 2)
  end
  local bytype = self._by_name[avi_type]
  if not bytype then -- (the type is checked once, with its first object)
    if type(avi_type) ~= "string" then
      error("out:add: type must be a string", 2)
    end
    bytype = {}
    self._by_name[avi_type] = bytype
  end
  if bytype[name] then
    error(string.format("out:add: duplicate %s named %q", avi_type, name), 2)
  end
  bytype[name] = object
  local objects = self._objects
  objects[#objects + 1] = { type = avi_type, object = object }
  return object
end

-- The object of `avi_type` named `name` added so far, or nil.
function Output:get(avi_type, name)
  local bytype = self._by_name[avi_type]
  return bytype and bytype[name]
end

function Output:_diag(severity, obj, field, message)
  local id = object_id(obj)
  local key = table.concat({ severity, id.kind, id.namespace or "", id.name,
    field or "", message }, "\0")
  if self._seen[key] then
    return
  end
  self._seen[key] = true
  self._diags[#self._diags + 1] = {
    severity = severity,
    object = id,
    field = field or "",
    message = message,
  }
end

-- A warning: something the input expresses that the output cannot (or a
-- reference that does not resolve); the rest of the output stands.
function Output:warn(obj, field, message)
  self:_diag("warning", obj, field, message)
end

-- An error: the input is wrong or unusable; the affected part is left out.
function Output:error(obj, field, message)
  self:_diag("error", obj, field, message)
end

-- An object a memo replay adds (rt.memo): only its name, with the
-- checksum of the body the call produced when it ran; the host hands it to
-- the sink as an unchanged object (runtime/translation.h).
function Output:_add_unchanged(avi_type, name, cksum, tenant_ref)
  local bytype = self._by_name[avi_type]
  if not bytype then
    bytype = {}
    self._by_name[avi_type] = bytype
  end
  local object = { name = name }
  bytype[name] = object
  self._objects[#self._objects + 1] = { type = avi_type, object = object,
    unchanged = cksum, tenant_ref = tenant_ref }
end

function Output:result()
  if self._host_sorts then -- (the engine sorts them in C anyway)
    return {
      objects = self._array(self._objects),
      diagnostics = self._array(self._diags),
    }
  end
  -- by type, then name: "type\0name" compares the same way (Lua compares
  -- strings piecewise across "\0"), and sorting the (unique) keys needs no
  -- Lua comparison function
  local keys, by_key = {}, {}
  for i, o in ipairs(self._objects) do
    local k = o.type .. "\0" .. o.object.name
    keys[i] = k
    by_key[k] = o
  end
  table.sort(keys)
  local objs = {}
  for i, k in ipairs(keys) do
    objs[i] = by_key[k]
  end
  return {
    objects = self._array(objs),
    diagnostics = self._array(self._diags),
  }
end

-- The functions top-level memoized calls ran, by number, for patches (a
-- patch names fn by its number). Weak both ways: a function the rules no
-- longer hold goes, and a patch that needs it declines.
local patch_fn_ids = setmetatable({}, { __mode = "k" })
local patch_fns = setmetatable({}, { __mode = "v" })
local patch_fn_last = 0
local function patch_fn_id(fn)
  local id = patch_fn_ids[fn]
  if not id then
    patch_fn_last = patch_fn_last + 1
    id = patch_fn_last
    patch_fn_ids[fn] = id
    patch_fns[id] = fn
  end
  return id
end

---------------------------------------------------------------------------
-- rt.new
---------------------------------------------------------------------------

function M.new(host)
  assert(type(host) == "table", "rt.new: host table required")
  local rt = {}
  for k, v in pairs(M) do
    if k ~= "new" then
      rt[k] = v
    end
  end

  local settings = {}
  for k, v in pairs(M.DEFAULT_SETTINGS) do
    settings[k] = v
  end
  for k, v in pairs(host.settings or {}) do
    settings[k] = v
  end
  rt.settings = settings
  -- TLS Secrets are decoded on every translation that serves HTTPS: the
  -- engine's C copy of base64_decode (same results) when it offers one.
  rt.base64_decode = host.base64_decode or base64_decode
  -- once per pool server: the engine's C copy when it offers one
  rt.ipv4 = host.ipv4 or ipv4

  rt.null = host.null
  local array_mt = host.array_mt or {}
  local function array(t)
    return setmetatable(t or {}, array_mt)
  end
  rt.array = array
  -- an empty array to be filled with about n elements (sized once)
  rt.new_array = host.new_array or function(n)
    return array({})
  end
  rt.is_array = function(t)
    return type(t) == "table" and getmetatable(t) == array_mt
  end

  rt.get = host.get -- (called once per Service a route names)
  -- rt.list(kind, ns[, filter]): filter = { labels = {k = v, ...} } and/or
  -- { field = "spec.gateways", value = "ns/gw" } (the objects whose string
  -- at that path, or one of whose array elements, equals value). The host
  -- answers filtered lists from indexes, far cheaper than a Lua loop over
  -- the whole kind.
  --
  -- filter.fields = { "spec.hosts", ... } lists the objects projected:
  -- each holds only those fields (and kind, apiVersion, metadata.name,
  -- metadata.namespace and the filter's field or metadata.labels). A rule
  -- that reads few fields of many objects decodes less, and an edit to a
  -- field it did not list is no change to the list (docs/rules-
  -- contract.md, "Projected lists").
  local WEAK_KEYS = { __mode = "k" }
  local projected = setmetatable({}, WEAK_KEYS) -- item -> {fields, filter}
  local proj_descs = setmetatable({}, { __mode = "k" }) -- fields -> filter -> desc
  rt.list = function(kind, ns, filter)
    if filter == nil then
      return host.list(kind, ns) or {}
    end
    if type(filter) ~= "table" then
      error("rt.list: filter must be a table", 2)
    end
    local field, value = filter.field, filter.value
    if field ~= nil and type(value) ~= "string" then
      error("rt.list: filter.field needs a string filter.value", 2)
    end
    local fields = filter.fields
    if fields == nil then
      return host.list(kind, ns, filter.labels, field, value) or {}
    end
    if type(fields) ~= "table" then
      error("rt.list: filter.fields must be an array of field paths", 2)
    end
    local list = host.list(kind, ns, filter.labels, field, value, fields) or {}
    -- what a patch needs to read an item again the same way
    local fpath = field or (filter.labels and next(filter.labels) and
      "metadata.labels") or ""
    local by_filter = proj_descs[fields]
    if not by_filter then
      by_filter = {}
      proj_descs[fields] = by_filter
    end
    local desc = by_filter[fpath]
    if not desc then
      desc = { fields, fpath ~= "" and fpath or nil }
      by_filter[fpath] = desc
    end
    for i = 1, #list do
      projected[list[i]] = desc
    end
    return list
  end
  -- (a local: rt.name uses it, and the rules' contexts keep rt.name
  -- between translations for patches; a closure over `rt` would keep the
  -- whole rt)
  local host_hash = host.hash
  local function hash(s)
    return host_hash(tostring(s))
  end
  rt.hash = hash

  local cluster = sanitize(settings.cluster)
  rt.owner = "amc-" .. cluster

  -- amc--<cluster>--<part>--<part>...; parts sanitized to AVI-safe
  -- characters. A part that had to be changed (or that contains the "--"
  -- separator) makes the name ambiguous, so such names get "--h" plus 8 hex
  -- digits of the hash of the raw parts. Names longer than NAME_MAX keep
  -- their head and end in "--" plus the 16-digit hash of the full name.
  local prefix = "amc--" .. cluster .. "--"
  -- the usual case (every part a plain string): the engine's C copy of
  -- plain_name when it offers one
  local join_plain = host.plain_name or plain_name
  local function altered_name(...)
    local raw = { ... }
    local n = select("#", ...)
    local altered = false
    for i = 1, n do
      local p = raw[i]
      if type(p) ~= "string" then
        p = tostring(p)
        raw[i] = p
      end
      if not is_plain(p) then
        altered = true
      end
    end
    if not altered then -- plain after tostring (numbers, nil)
      return prefix .. table.concat(raw, "--", 1, n)
    end
    local clean = {}
    for i = 1, n do
      clean[i] = sanitize(raw[i])
    end
    return prefix .. table.concat(clean, "--") .. "--h" ..
      hash(table.concat(raw, "\0", 1, n)):sub(1, 8)
  end
  -- names built below: their characters need no URL escaping in refs
  local made = {}
  rt.name = function(...)
    local name = join_plain(prefix, ...) or altered_name(...)
    if #name > NAME_MAX then
      local h = hash(name)
      name = name:sub(1, NAME_MAX - 18) .. "--" .. h
    end
    made[name] = true
    return name
  end

  rt.ref = function(avi_type, name)
    if made[name] then -- only URL-safe characters
      return "/api/" .. avi_type .. "?name=" .. name
    end
    return "/api/" .. avi_type .. "?name=" .. url_escape(name)
  end

  -- markers: which cluster and which Gateway (the translation key) an
  -- object belongs to.
  rt.markers = function(gateway)
    local md = gateway.metadata or {}
    return array({
      { key = "clustername", values = array({ settings.cluster }) },
      { key = "gateway",
        values = array({ (md.namespace or "") .. "/" .. (md.name or "") }) },
    })
  end

  -- rt.memo(ctx, inputs, key, fn, ...): fn(...) once, replayed while valid
  -- (docs/rules-contract.md "Memoized calls"). Without the host's memo
  -- (`amc translate`, tests) it is just fn(...).
  local memo_get = host.memo_get
  local memo_begin, memo_end = host.memo_begin, host.memo_end
  local inputs_begin, inputs_end = host.inputs_begin, host.inputs_end

  -- The diagnostics of a replayed entry, as the call reported them.
  local function replay_diags(out, diags)
    for _, d in ipairs(diags) do
      out:_diag(d[1], { kind = d[2], metadata = {
        namespace = d[3] ~= "" and d[3] or nil, name = d[4] } }, d[5], d[6])
    end
  end

  -- A recorder's own state, under a key only this file has: { base = the
  -- plain Output at the bottom of the chain (nil if a foreign wrapper is
  -- in it), up = the Output it forwards to, ev, objs }.
  local REC = {}

  -- An Output that forwards to `out` and records the events. Inside a
  -- memoized call that is itself inside one (nesting), `out` is the outer
  -- call's recorder: what the inner call does is recorded by both.
  local function recorder(out, ev, objs)
    local rec = setmetatable({}, { __index = out })
    local up = rawget(out, REC)
    rec[REC] = { ev = ev, objs = objs, up = out,
                 base = getmetatable(out) == Output and out or
                   (up and up.base) }
    function rec.get(_, avi_type, name)
      local v = out:get(avi_type, name)
      ev[#ev + 1] = { "g", avi_type, name, v ~= nil }
      return v
    end
    function rec.add(_, avi_type, object)
      local r = out:add(avi_type, object)
      -- "absent, then added" is what the add's own replay check tests:
      -- the get need not be kept
      local last = ev[#ev]
      if last and last[1] == "g" and not last[4] and last[2] == avi_type and
         last[3] == object.name then
        ev[#ev] = nil
      end
      ev[#ev + 1] = { "a" }
      objs[#objs + 1] = { avi_type, object.name, object.tenant_ref }
      return r
    end
    function rec._diag(_, severity, obj, field, message)
      local id = object_id(obj)
      ev[#ev + 1] = { "d", severity, id.kind, id.namespace or "", id.name,
                      field or "", message }
      out:_diag(severity, obj, field, message)
    end
    function rec.warn(self, obj, field, message)
      self:_diag("warning", obj, field, message)
    end
    function rec.error(self, obj, field, message)
      self:_diag("error", obj, field, message)
    end
    return rec
  end

  -- The input objects' (kind, namespace, name) for memo_begin.
  local function input_ids(inputs)
    local ids = {}
    for _, o in ipairs(inputs) do
      local md = o.metadata or {}
      ids[#ids + 1] = o.kind
      ids[#ids + 1] = md.namespace or false
      ids[#ids + 1] = md.name
    end
    local n = #ids
    for i = 2, n, 3 do
      if ids[i] == false then
        ids[i] = nil
      end
    end
    return ids, n
  end

  -- "kind/ns/name" of an input object, checked.
  local function input_part(o)
    local md = o.metadata or {}
    local kind, ns, name = o.kind, md.namespace, md.name
    assert(type(kind) == "string" and type(name) == "string",
      "rt.memo: inputs must be objects read from the store")
    return kind .. "/" .. (ns or "") .. "/" .. name
  end

  -- An inner call's replay (the entry's events and objects, from the
  -- host) as every recorder of the running calls sees it: as if fn had
  -- run and done the same.
  local function note_replay(r, ev, objs)
    while r do
      local rev, robjs = r.ev, r.objs
      local k = 0
      for i = 1, #ev do
        local e = ev[i]
        if e[1] == "a" then
          -- as rec.add does: "absent, then added" needs no get (so that an
          -- entry's events do not depend on whether its inner calls ran or
          -- replayed; a patch compares them)
          k = k + 1
          local o, last = objs[k], rev[#rev]
          if last and last[1] == "g" and not last[4] and o and
             last[2] == o[1] and last[3] == o[2] then
            rev[#rev] = nil
          end
        end
        rev[#rev + 1] = e
      end
      for i = 1, #objs do
        robjs[#robjs + 1] = objs[i]
      end
      r = rawget(r.up, REC)
    end
  end

  -- The Outputs rt.output made (rt.memo asks per call whether ctx.out is
  -- one: a look-up here is cheaper than getmetatable)
  local outputs = {}

  -- Patches (rules_engine.h "Patches"): the host notes each top-level
  -- call (its subkey, and codes saying how to make its arguments again:
  -- -1 the context, -1-k input k, 0 nil, v > 0 the kept value vals[v],
  -- <= -KEY_PART a string found in the key, at a place and length the
  -- code holds), so that it can later run a stale one again alone
  -- (rt._patch). The codes also name fn (patch_fn_id) and each input's
  -- projection (list items rt.list gave projected: `projected`); the key
  -- is the subkey's head. The kept values must be plain data (the host
  -- keeps them as JSON, not in Lua); strings found in the key (a host, a
  -- port) are not kept at all.
  local memo_root, memo_input = host.memo_root, host.memo_input
  local memo_present, memo_patch_at = host.memo_present, host.memo_patch_at
  local root = nil -- { ctx, vals, index, bad } of the translation

  local function root_value(v)
    local i = root.index[v]
    if not i then
      i = #root.vals + 1
      root.vals[i] = v
      root.index[v] = i
    end
    return i
  end

  local KEY_PART, KEY_LEN = 1048576, 4096

  local function note_root(ctx, inputs, key, fn, sub, ...)
    if root == nil then
      root = { ctx = ctx, vals = array({}), index = {} }
    elseif root.ctx ~= ctx then
      root.bad = true
    end
    if root.bad or type(fn) ~= "function" then
      root.bad = true
      return
    end
    local ni, n = #inputs, select("#", ...)
    local codes = { patch_fn_id(fn), ni }
    for k = 1, ni do
      local f = projected[inputs[k]]
      codes[2 + k] = f and root_value(f) or 0
    end
    local at = 3 + ni
    codes[at] = n
    for i = 1, n do
      local a = select(i, ...)
      local c
      if a == nil then
        c = 0
      elseif rawequal(a, ctx) then
        c = -1
      else
        for k = 1, ni do
          if rawequal(a, inputs[k]) then
            c = -1 - k
            break
          end
        end
        if not c and type(a) == "string" and #a < KEY_LEN then
          local p = find(key, a, 1, true)
          if p then
            c = -(KEY_PART + (p - 1) * KEY_LEN + #a)
          end
        end
        if not c then
          if a ~= a or type(a) == "function" then -- (no JSON)
            root.bad = true
            return
          end
          c = root_value(a)
        end
      end
      codes[at + i] = c
    end
    memo_root(sub, codes, #ctx.out._objects)
  end

  rt.memo = function(ctx, inputs, key, fn, ...)
    if not memo_get then
      if not inputs_begin then
        return fn(...)
      end
      -- (no memo: still, an rt.get of one of the call's inputs is no new
      -- read, as with the memo; the host keeps the inputs while fn runs)
      local ids, n = input_ids(inputs)
      local depth = inputs_begin(table.unpack(ids, 1, n))
      local r = fn(...)
      inputs_end(depth)
      return r
    end
    local sub
    if #inputs == 1 then -- (the usual case: one string built)
      local o = inputs[1]
      local md = o.metadata or {}
      local kind, ns, name = o.kind, md.namespace, md.name
      assert(type(kind) == "string" and type(name) == "string",
        "rt.memo: inputs must be objects read from the store")
      sub = key .. "\31" .. kind .. "/" .. (ns or "") .. "/" .. name
    else
      local parts = { key }
      for i, o in ipairs(inputs) do
        parts[i + 1] = input_part(o)
      end
      sub = table.concat(parts, "\31")
    end
    local out = ctx.out
    -- The host checks the entry's events against the Output and replays
    -- them (Output:get and Output:_add_unchanged in C: a plain Output
    -- only, or one of our recorders over one: a call inside a running
    -- call, whose recorders then note what the replay did).
    local base, running
    if outputs[out] then
      base = out
    else
      running = rawget(out, REC)
      base = running and running.base
    end
    if memo_root and base == out then
      note_root(ctx, inputs, key, fn, sub, ...)
    end
    if base then
      local hit, r, diags, ev, objs = memo_get(sub, base._by_name,
        base._objects, running ~= nil)
      if hit then
        if diags then
          replay_diags(base, diags)
        end
        if running then
          note_replay(running, ev, objs)
        end
        return r
      end
    end
    local ids, n = input_ids(inputs)
    local depth = memo_begin(sub, table.unpack(ids, 1, n))
    local ev, objs = {}, {}
    local cache = ctx.cache
    ctx.out, ctx.cache = recorder(out, ev, objs), {}
    local r = fn(...)
    ctx.out, ctx.cache = out, cache
    memo_end(sub, { r = r }, ev, objs, depth)
    return r
  end

  -- The end of a translation (the host, when it can be patched later):
  -- the kept values of its top-level calls' arguments, or nil when it
  -- cannot be patched; what only the translation needed is let go.
  rt._root = function()
    local r = root
    root, outputs, made = nil, {}, {}
    projected = setmetatable({}, WEAK_KEYS) -- (its table would stay sized)
    if r == nil or r.bad then
      return nil
    end
    return r.vals
  end

  -- A patch (the host): runs the stale calls again, each {codes, ids,
  -- pos, key} (ids: every input's kind, namespace or false, name; pos:
  -- the objects added before the call), with the context the entry
  -- rule's patch_context makes for the Gateway and the kept values, into
  -- a fresh Output; returns its result, or nil when it cannot (an input
  -- or a function gone, no context).
  rt._patch = function(patch_context, gateway, vals, calls)
    local ctx = patch_context(gateway, rt)
    if type(ctx) ~= "table" then
      return nil
    end
    local out = rt.output()
    -- out:get answers as at the call in the last translation: the objects
    -- added before it there are present (a stand-in: memoized calls only
    -- test presence)
    function out.get(self, avi_type, name)
      local v = Output.get(self, avi_type, name)
      if v == nil and memo_present(avi_type, name) then
        return { name = name }
      end
      return v
    end
    ctx.out, ctx.cache = out, {}
    for i = 1, #calls do
      local codes, ids, key = calls[i][1], calls[i][2], calls[i][4]
      memo_patch_at(calls[i][3])
      local ni = codes[2]
      local inputs = {}
      for k = 1, ni do
        local desc = codes[2 + k] > 0 and vals[codes[2 + k]] or nil
        local o = memo_input(ids[3 * k - 2], ids[3 * k - 1] or nil,
          ids[3 * k], desc and desc[1], desc and desc[2])
        if o == nil then
          return nil
        end
        inputs[k] = o
      end
      local at = 3 + ni
      local n = codes[at]
      local args = {}
      for j = 1, n do
        local c = codes[at + j]
        if c == -1 then
          args[j] = ctx
        elseif c <= -KEY_PART then
          local v = -c - KEY_PART
          local p = v // KEY_LEN + 1
          args[j] = sub(key, p, p + v % KEY_LEN - 1)
        elseif c < -1 then
          args[j] = inputs[-1 - c]
        elseif c > 0 then
          args[j] = vals[c]
        end
      end
      local fn = patch_fns[codes[1]]
      if fn == nil then
        return nil
      end
      rt.memo(ctx, inputs, key, fn, table.unpack(args, 1, n))
    end
    root, outputs, made = nil, {}, {}
    projected = setmetatable({}, WEAK_KEYS)
    return out:result()
  end

  rt.output = function()
    local out = setmetatable({
      _objects = {},
      _by_name = {},
      _diags = {},
      _seen = {},
      _array = array,
      _host_sorts = host.sorts_objects == true,
    }, Output)
    outputs[out] = true
    return out
  end

  -- Host resolution -------------------------------------------------------

  local domain = settings.domain

  -- Is `obj` (VirtualService, DestinationRule, ServiceEntry) visible from
  -- namespace `ns` according to its exportTo?
  rt.exported_to = function(obj, ns)
    local export = obj.spec and obj.spec.exportTo
    if export == nil or #export == 0 then
      return true
    end
    for _, e in ipairs(export) do
      if e == "*" or e == ns or (e == "." and obj.metadata.namespace == ns) then
        return true
      end
    end
    return false
  end

  -- The FQDN Istio gives `host` written in namespace `ns`: a short name
  -- (no dot) is a Service in `ns`.
  rt.fqdn = function(host, ns)
    host = lower(host)
    if host ~= "*" and not find(host, ".", 1, true) then
      return host .. "." .. ns .. ".svc." .. domain
    end
    return host
  end

  -- Resolves a destination host written in namespace `ns` to what serves
  -- it:
  --   { kind = "Service", service = obj, fqdn = "name.ns.svc.<domain>" }
  --   { kind = "ServiceEntry", entry = obj, fqdn = host }
  -- or nil. Accepted spellings: `name` (in `ns`), `name.ns`, `name.ns.svc`,
  -- `name.ns.svc.<domain>`, and any host of a ServiceEntry visible from
  -- `ns` (exact). An exact ServiceEntry host wins over the `name.ns`
  -- shorthands, never over the full Service FQDN.
  local svc_suffix = ".svc." .. domain
  local function service(name, sns)
    local svc = rt.get("Service", sns, name)
    if svc then
      return { kind = "Service", service = svc,
               fqdn = name .. "." .. sns .. svc_suffix }
    end
  end
  rt.resolve_host = function(host, ns)
    host = lower(host)
    if not find(host, ".", 1, true) then
      return service(host, ns)
    end
    local suffix = svc_suffix
    if host:sub(-#suffix) == suffix then
      local name, sns = host:sub(1, -#suffix - 1):match("^([^.]+)%.([^.]+)$")
      if name then
        return service(name, sns)
      end
    end
    for _, se in ipairs(rt.list("ServiceEntry", nil)) do
      if rt.exported_to(se, ns) then
        for _, h in ipairs((se.spec or {}).hosts or {}) do
          if h:lower() == host then
            return { kind = "ServiceEntry", entry = se, fqdn = host }
          end
        end
      end
    end
    local name, sns = host:match("^([^.]+)%.([^.]+)$")
    if not name then
      name, sns = host:match("^([^.]+)%.([^.]+)%.svc$")
    end
    if name then
      return service(name, sns)
    end
    return nil
  end

  return rt
end

return M
