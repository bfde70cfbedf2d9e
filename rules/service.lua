-- service.lua - Kubernetes Service port -> the pool servers behind it.
--
-- A destination names a Service *port*; AVI needs the endpoints' *target*
-- ports (the seed compared the service port with endpoint ports and broke
-- whenever they differed). Resolution, in order of preference:
--
--   1. EndpointSlices labelled kubernetes.io/service-name=<svc>: the slice
--      port whose name equals the Service port's name carries the resolved
--      target port (named targetPorts included); only endpoints whose
--      conditions.ready is not false.
--   2. The Endpoints object: subsets[].addresses (notReadyAddresses are
--      left out), port matched by name.
--   3. No endpoint objects at all: the Pods selected by spec.selector that
--      are Ready and have a podIP; targetPort is a number, a container port
--      name (looked up in the Pod's containers), or the Service port.
--
-- Subsets (DestinationRule) narrow the endpoints to Pods carrying *all* the
-- subset labels (AND; the seed OR-ed them), found via each endpoint's
-- targetRef.

-- (globals as locals: a global lookup goes through the sandbox's proxies)
local ipairs, next, tonumber = ipairs, next, tonumber
local find = string.find

local M = {}

local NONE = {} -- (an absent list)

-- The Service port for `number`, or the only port when `number` is nil.
-- Returns port or nil, reason.
function M.port(svc, number)
  local ports = (svc.spec or {}).ports or {}
  if number == nil then
    if #ports == 1 then
      return ports[1]
    end
    return nil, string.format("Service %s/%s has %d ports; the " ..
      "destination must name one (destination.port.number)",
      svc.metadata.namespace, svc.metadata.name, #ports)
  end
  for i = 1, #ports do
    if ports[i].port == number then
      return ports[i]
    end
  end
  return nil, string.format("Service %s/%s has no port %d",
    svc.metadata.namespace, svc.metadata.name, number)
end

-- Servers sort by address, IPv4 numbers compared as numbers (each run of
-- digits zero-padded to 3), then port.
local function pad3(d)
  return string.format("%03d", tonumber(d))
end

local function sort_key(s)
  local a = s.ip.addr
  if s.ip.type == "V4" then
    local o1, o2, o3, o4 = a:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if o1 then -- the usual case, without a closure per digit run
      return string.format("%03d.%03d.%03d.%03d|%05d", tonumber(o1),
        tonumber(o2), tonumber(o3), tonumber(o4), s.port)
    end
    a = a:gsub("(%d+)", pad3)
  end
  return string.format("%s|%05d", a, s.port)
end

-- The same order as sort_key as one integer, for the usual server (a
-- dotted-quad IPv4 address, an integer port 0-65535): the address's 32
-- bits (rt.ipv4), then the port's 16. nil for anything else.
-- (locals: called once per server, and a global or string-method lookup
-- goes through the sandbox's proxies)
local math_type = math.type

local function port_key(a, port)
  if math_type(port) ~= "integer" or port < 0 or port > 65535 then
    return nil
  end
  return (a << 16) | port
end

local function ipv4_key(ipv4, s)
  local a = ipv4(s.ip.addr)
  return a and port_key(a, s.port)
end

-- Sorts the usual servers by their ipv4_key: nothing to do when they come
-- in (strictly) ascending order; else the keys, each carrying its server's
-- index in its low bits (48 + 15 bits), sorted as plain integers. Returns
-- false, leaving `servers` alone, when a server has no such key or two
-- share one.
local INDEX_BITS = 15

local function sort_by_ipv4_key(ipv4, servers)
  local n = #servers
  if n >= 1 << INDEX_BITS then
    return false
  end
  local prev = -1
  for i = 1, n do
    local k = ipv4_key(ipv4, servers[i])
    if k == nil then
      return false
    end
    if k <= prev then
      prev = nil
      break
    end
    prev = k
  end
  if prev then
    return true -- ascending: in order, and no two share a key
  end
  local keys = {}
  for i = 1, n do
    local k = ipv4_key(ipv4, servers[i])
    if k == nil then
      return false
    end
    keys[i] = (k << INDEX_BITS) | i
  end
  table.sort(keys)
  for i = 2, n do
    if keys[i] >> INDEX_BITS == keys[i - 1] >> INDEX_BITS then
      return false
    end
  end
  local by_index = table.move(servers, 1, n, 1, {})
  local mask = (1 << INDEX_BITS) - 1
  for i = 1, n do
    servers[i] = by_index[keys[i] & mask]
  end
  return true
end

-- Sorts `servers` by distinct precomputed string keys (without a Lua
-- comparison per step). Returns false, leaving `servers` alone, when two
-- servers share a key.
local function sort_by_distinct_keys(servers, key_of)
  local keys, by_key = {}, {}
  for i, s in ipairs(servers) do
    local k = key_of(s)
    if by_key[k] ~= nil then
      return false
    end
    keys[i] = k
    by_key[k] = s
  end
  table.sort(keys)
  for i, k in ipairs(keys) do
    servers[i] = by_key[k]
  end
  return true
end

-- Drops the servers that repeat an earlier one's (address, port).
local function dedupe(servers)
  local seen, n = {}, 0 -- seen: port -> address -> true
  for i = 1, #servers do
    local s = servers[i]
    local addrs = seen[s.port]
    if not addrs then
      addrs = {}
      seen[s.port] = addrs
    end
    if not addrs[s.ip.addr] then
      addrs[s.ip.addr] = true
      n = n + 1
      servers[n] = s
    end
  end
  for i = #servers, n + 1, -1 do
    servers[i] = nil
  end
end

-- Sorts a server list's servers by sort_key, each (address, port) once:
-- nothing to do when they came in order (add_server), else by integer keys
-- in the usual case (all distinct: nothing to drop), else by the key
-- strings, else (keys that collide, from odd spellings such as leading
-- zeros) with a comparison function.
local function sort_servers(list)
  local servers, ipv4 = list.servers, list.ipv4
  if list.in_order or #servers < 2 or sort_by_ipv4_key(ipv4, servers) then
    return
  end
  dedupe(servers)
  if sort_by_ipv4_key(ipv4, servers) or
     sort_by_distinct_keys(servers, sort_key) then
    return
  end
  local key = {}
  for _, s in ipairs(servers) do
    key[s] = sort_key(s)
  end
  table.sort(servers, function(a, b) return key[a] < key[b] end)
end

-- The servers of one pool as they are collected: `servers`, an array with
-- room for about `size` of them, and whether they came in strictly
-- ascending ipv4_key order so far (the usual case: endpoints listed by
-- address; sort_servers then has nothing to do).
local function new_server_list(rt, size)
  return { servers = rt.new_array(size), n = 0, ipv4 = rt.ipv4,
           in_order = true, last_key = -1 }
end

-- Does the Pod behind `target_ref` carry all `labels` (nil: no subset
-- labels, any endpoint)?
local function pod_has(rt, ns, target_ref, labels)
  if labels == nil then
    return true
  end
  if not target_ref or target_ref.kind ~= "Pod" then
    return false
  end
  local pod = rt.get("Pod", target_ref.namespace or ns, target_ref.name)
  return pod ~= nil and rt.labels_match(labels, pod.metadata.labels)
end

-- Adds a server (sort_servers drops repeats). A dotted quad is V4, other
-- addresses with a ":" V6.
local function add_server(list, addr, port)
  local a = list.ipv4(addr)
  local ip_type = "V4"
  if a == nil and find(addr, ":", 1, true) then
    ip_type = "V6"
  end
  local n = list.n + 1
  list.n = n
  list.servers[n] = { ip = { addr = addr, type = ip_type }, port = port }
  if list.in_order then
    local k = a and port_key(a, port)
    if k and k > list.last_key then
      list.last_key = k
    else
      list.in_order = false
    end
  end
end

-- add_server for every address of `endpoints` (an EndpointSlice's) with
-- `port`, each endpoint that is ready and (with subset `labels`) whose Pod
-- carries them. The same as add_server per address, written out: this
-- runs once per endpoint of the mesh, so the list's state stays in locals
-- and the port is checked once.
local function add_slice_servers(rt, ns, list, endpoints, port, labels)
  local ipv4, servers = list.ipv4, list.servers
  local n, in_order, last_key = list.n, list.in_order, list.last_key
  local port_ok = port_key(0, port) ~= nil
  for j = 1, #endpoints do
    local ep = endpoints[j]
    local cond = ep.conditions
    if (cond == nil or cond.ready ~= false) and
       (labels == nil or pod_has(rt, ns, ep.targetRef, labels)) then
      local addresses = ep.addresses or NONE
      for k = 1, #addresses do
        local addr = addresses[k]
        local a = ipv4(addr)
        local ip_type = "V4"
        if a == nil and find(addr, ":", 1, true) then
          ip_type = "V6"
        end
        n = n + 1
        servers[n] = { ip = { addr = addr, type = ip_type }, port = port }
        if in_order then
          local key = a and port_ok and (a << 16) | port
          if key and key > last_key then
            last_key = key
          else
            in_order = false
          end
        end
      end
    end
  end
  list.n, list.in_order, list.last_key = n, in_order, last_key
end

-- The port of endpoint ports `ports` (an EndpointSlice's, an Endpoints
-- subset's) that carries Service port `sport`: the one with its name (the
-- last such), or nil.
local function target_port(ports, sport)
  local name, target = sport.name or "", nil
  for i = 1, #(ports or NONE) do
    if (ports[i].name or "") == name then
      target = ports[i].port
    end
  end
  return target
end

-- Each from_* returns the server list from its source, or nil when the
-- source does not exist (no EndpointSlice, no Endpoints object).

-- from_slices' filter, one table for every Service (rt.list reads it
-- during the call and keeps nothing): two tables fewer per pool.
local SLICE_LABELS = {}
local SLICE_FILTER = { labels = SLICE_LABELS }

local function from_slices(rt, svc, sport, labels)
  local ns, name = svc.metadata.namespace, svc.metadata.name
  SLICE_LABELS["kubernetes.io/service-name"] = name
  local slices = rt.list("EndpointSlice", ns, SLICE_FILTER)
  if #slices == 0 then
    return nil
  end
  local size = 0 -- (an endpoint usually has one address)
  for i = 1, #slices do
    size = size + #(slices[i].endpoints or NONE)
  end
  local list = new_server_list(rt, size)
  for i = 1, #slices do
    local slice = slices[i]
    local target = target_port(slice.ports, sport)
    if target and slice.addressType ~= "FQDN" then
      add_slice_servers(rt, ns, list, slice.endpoints or NONE, target, labels)
    end
  end
  return list
end

local function from_endpoints(rt, svc, sport, labels)
  local ns = svc.metadata.namespace
  local eps = rt.get("Endpoints", ns, svc.metadata.name)
  if not eps then
    return nil
  end
  local list = new_server_list(rt, 0)
  for _, subset in ipairs(eps.subsets or {}) do
    local target = target_port(subset.ports, sport)
    if target then
      for _, a in ipairs(subset.addresses or {}) do
        if pod_has(rt, ns, a.targetRef, labels) then
          add_server(list, a.ip, target)
        end
      end
    end
  end
  return list
end

local function pod_ready(pod)
  for _, c in ipairs((pod.status or {}).conditions or {}) do
    if c.type == "Ready" then
      return c.status == "True"
    end
  end
  return false
end

local function container_port(pod, port_name)
  for _, c in ipairs((pod.spec or {}).containers or {}) do
    for _, p in ipairs(c.ports or {}) do
      if p.name == port_name then
        return p.containerPort
      end
    end
  end
  return nil
end

local function from_pods(rt, svc, sport, labels)
  local list = new_server_list(rt, 0)
  local selector = (svc.spec or {}).selector
  if selector == nil or next(selector) == nil then
    return list
  end
  for _, pod in ipairs(rt.list("Pod", svc.metadata.namespace)) do
    local pl = pod.metadata.labels
    local ip = (pod.status or {}).podIP
    if rt.labels_match(selector, pl) and rt.labels_match(labels, pl) and
       pod_ready(pod) and ip then
      local tp = sport.targetPort
      local port
      if tp == nil then
        port = sport.port
      elseif math.type(tp) == "integer" then
        port = tp
      else
        port = container_port(pod, tp)
      end
      if port then
        add_server(list, ip, port)
      end
    end
  end
  return list
end

-- The ready endpoints of Service port `sport`, narrowed to Pods with all
-- `labels`: an array of { ip = {addr, type}, port }, sorted.
function M.servers(rt, svc, sport, labels)
  if labels ~= nil and next(labels) == nil then
    labels = nil
  end
  local list = from_slices(rt, svc, sport, labels) or
    from_endpoints(rt, svc, sport, labels) or
    from_pods(rt, svc, sport, labels)
  sort_servers(list)
  return list.servers
end

return M
