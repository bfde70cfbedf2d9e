-- serviceentry.lua - Istio ServiceEntry -> the pool servers behind a host.
--
--   resolution STATIC          endpoints[].address (IPs) -> servers
--   resolution DNS,            endpoints[].address, or the requested host
--   DNS_ROUND_ROBIN            itself when there are none -> servers that
--                              AVI resolves by DNS (ip.type DNS,
--                              resolve_server_by_dns)
--   resolution NONE            no addresses to balance to: diagnostic
--
-- The server port is the endpoint's `ports[<port name>]`, else the port's
-- targetPort, else its number. Subset labels must all be on the endpoint.

local M = {}

local function ip_type(addr)
  if addr:match("^[%d.]+$") then
    return "V4"
  elseif addr:find(":", 1, true) then
    return "V6"
  end
  return "DNS"
end

-- The ServiceEntry port for `number`, or its only port when nil.
function M.port(se, number)
  local ports = (se.spec or {}).ports or {}
  if number == nil then
    if #ports == 1 then
      return ports[1]
    end
    return nil, string.format("ServiceEntry %s/%s has %d ports; the " ..
      "destination must name one", se.metadata.namespace, se.metadata.name,
      #ports)
  end
  for _, p in ipairs(ports) do
    if p.number == number then
      return p
    end
  end
  return nil, string.format("ServiceEntry %s/%s has no port %d",
    se.metadata.namespace, se.metadata.name, number)
end

-- Servers for `host` (one of the entry's hosts) on ServicePort `sport`,
-- narrowed to endpoints with all `labels`. Returns servers, or nil and the
-- reason.
function M.servers(rt, se, host, sport, labels)
  local spec = se.spec or {}
  local resolution = spec.resolution or "NONE"
  if resolution == "NONE" then
    return nil, "resolution NONE forwards to the original destination " ..
      "address, which AVI cannot do; use STATIC or DNS"
  end
  if resolution ~= "STATIC" and resolution ~= "DNS" and
     resolution ~= "DNS_ROUND_ROBIN" then
    return nil, "resolution " .. tostring(resolution) .. " is not supported"
  end
  local servers, seen = {}, {}
  local function add(addr, port)
    local key = addr .. "|" .. port
    if seen[key] then
      return
    end
    seen[key] = true
    local t = ip_type(addr)
    local s = { ip = { addr = addr, type = t }, port = port }
    if t == "DNS" then
      s.hostname = addr
      s.resolve_server_by_dns = true
    end
    servers[#servers + 1] = s
  end
  local default_port = sport.targetPort or sport.number
  local endpoints = spec.endpoints or {}
  for _, ep in ipairs(endpoints) do
    local addr = ep.address or ""
    if rt.labels_match(labels, ep.labels) and addr ~= "" and
       not addr:find("^unix://") then
      if resolution == "STATIC" and ip_type(addr) == "DNS" then
        return nil, "STATIC endpoint address " .. addr .. " is not an IP"
      end
      add(addr, (ep.ports or {})[sport.name or ""] or default_port)
    end
  end
  if #endpoints == 0 then
    if resolution == "STATIC" then
      if spec.workloadSelector then
        return nil, "workloadSelector endpoints are not supported"
      end
      return servers
    end
    if host:sub(1, 1) == "*" then
      return nil, "a wildcard host cannot be resolved by DNS"
    end
    add(host, default_port)
  end
  return servers
end

return M
