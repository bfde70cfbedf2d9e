-- destinationrule.lua - Istio DestinationRule -> Pool settings.
--
-- Which rule applies to a destination (as Istio picks for a gateway):
-- rules whose host (a short host is resolved in the rule's namespace)
-- equals the destination FQDN, else the longest wildcard host covering it;
-- only rules exported to the gateway's namespace and whose
-- workloadSelector (if any) matches the ingress labels; ties go to the
-- gateway's namespace, then the service's namespace, then namespace/name.
--
-- The effective policy for (subset, port) merges, later winning per field:
-- trafficPolicy, its portLevelSettings for the port, the subset's
-- trafficPolicy, its portLevelSettings for the port.
--
--   loadBalancer.simple ROUND_ROBIN          lb_algorithm ROUND_ROBIN
--   LEAST_CONN / LEAST_REQUEST / unset       LEAST_CONNECTIONS
--   RANDOM                                   RANDOM
--   PASSTHROUGH                              diagnostic (AVI must balance)
--   consistentHash.httpHeaderName            CONSISTENT_HASH + CUSTOM_HEADER
--   consistentHash.useSourceIp               CONSISTENT_HASH + SOURCE_IP
--   consistentHash httpCookie / query param  diagnostic
--   tls.mode SIMPLE                          ssl_profile_ref System-Standard,
--                                            sni_enabled, server_name (sni)
--   tls.mode DISABLE                         nothing
--   tls MUTUAL / ISTIO_MUTUAL                diagnostic (plain pool)
--   connectionPool, outlierDetection,        diagnostic: AVI pools have no
--   localityLbSetting, warmup, tunnel ...    passive equivalent
--
-- amc adds no health monitor: Kubernetes readiness already decides which
-- endpoints become servers.

local avi = import("lib/avi")

-- (globals as locals: a global lookup goes through the sandbox's proxies)
local ipairs, type = ipairs, type

local M = {}

local function rank_ns(ns, gw_ns, svc_ns)
  if ns == gw_ns then
    return 0
  elseif ns == svc_ns then
    return 1
  end
  return 2
end

-- The DestinationRules that can apply to this gateway's destinations, read
-- once per translation (every pool asks): exported to the gateway's
-- namespace, workloadSelector (if any) matching the ingress labels. Each as
-- { dr, host (FQDN) }, grouped by host (a destination may itself be a
-- wildcard ServiceEntry host) and the wildcard ones also in one list; all
-- in list order.
local function candidates(ctx)
  local c = ctx.cache.destination_rules
  if c then
    return c
  end
  local rt = ctx.rt
  c = { exact = {}, wildcard = {} }
  for _, dr in ipairs(rt.list("DestinationRule", nil)) do
    local spec = dr.spec or {}
    local ws = spec.workloadSelector
    if type(spec.host) == "string" and rt.exported_to(dr, ctx.gw_ns) and
       (ws == nil or rt.labels_match(ws.matchLabels,
                                     ctx.settings.ingress_selector)) then
      local host = rt.fqdn(spec.host, dr.metadata.namespace)
      local e = { dr = dr, host = host }
      c.exact[host] = c.exact[host] or {}
      table.insert(c.exact[host], e)
      if host:sub(1, 1) == "*" then
        c.wildcard[#c.wildcard + 1] = e
      end
    end
  end
  ctx.cache.destination_rules = c
  return c
end

-- The best of candidate `entries` (those covering `fqdn` when it is
-- given) for a destination of namespace `svc_ns`: the lowest key wins,
-- exact host first, then longer wildcard, then namespace rank.
local function best_of(ctx, entries, exact, svc_ns, fqdn)
  local best, best_key
  for i = 1, #entries do
    local e = entries[i]
    if fqdn == nil or ctx.rt.host_matches(e.host, fqdn) then
      -- (exact, longer host first, namespace rank) as one number
      local key = (exact and 0 or 1) * 1000000 + (99999 - #e.host) * 10 +
        rank_ns(e.dr.metadata.namespace, ctx.gw_ns, svc_ns)
      if best_key == nil or key < best_key then
        best, best_key = e.dr, key
      end
    end
  end
  return best
end

-- The DestinationRule for destination `fqdn` (service namespace `svc_ns`,
-- nil for ServiceEntry hosts), or nil.
function M.find(ctx, fqdn, svc_ns)
  local c = candidates(ctx)
  local exact = c.exact[fqdn]
  if exact then
    return best_of(ctx, exact, true, svc_ns)
  elseif #c.wildcard == 0 then
    return nil
  end
  return best_of(ctx, c.wildcard, false, svc_ns, fqdn)
end

local POLICY_FIELDS = { "loadBalancer", "connectionPool", "outlierDetection",
  "tls", "tunnel", "proxyProtocol", "retryBudget" }

local function merge(policy, paths, tp, base, port)
  if type(tp) ~= "table" then
    return
  end
  for _, f in ipairs(POLICY_FIELDS) do
    if tp[f] ~= nil then
      policy[f] = tp[f]
      paths[f] = base .. "." .. f
    end
  end
  for i, pls in ipairs(tp.portLevelSettings or {}) do
    if port ~= nil and pls.port and pls.port.number == port then
      for _, f in ipairs(POLICY_FIELDS) do
        if pls[f] ~= nil then
          policy[f] = pls[f]
          paths[f] = string.format("%s.portLevelSettings[%d].%s", base,
            i - 1, f)
        end
      end
    end
  end
end

local NO_POLICY = {} -- (without a DestinationRule; never modified)

-- The effective traffic policy of `dr` for `subset` (name or nil) and
-- destination `port`. Returns policy, paths (field -> diagnostic path),
-- subset labels; or nil, nil, nil, reason when the subset is unknown.
function M.policy(dr, subset, port)
  if dr == nil then
    if subset then
      return nil, nil, nil, "subset " .. subset ..
        " is used but no DestinationRule defines it"
    end
    return NO_POLICY, NO_POLICY, nil
  end
  local policy, paths, labels = {}, {}, nil
  local spec = dr.spec or {}
  merge(policy, paths, spec.trafficPolicy, "spec.trafficPolicy", port)
  if subset then
    local found
    for i, s in ipairs(spec.subsets or {}) do
      if s.name == subset then
        found = true
        labels = s.labels or {}
        merge(policy, paths, s.trafficPolicy,
          string.format("spec.subsets[%d].trafficPolicy", i - 1), port)
      end
    end
    if not found then
      return nil, nil, nil, string.format(
        "subset %s is not defined in DestinationRule %s/%s", subset,
        dr.metadata.namespace, dr.metadata.name)
    end
  end
  return policy, paths, labels
end

local SIMPLE_LB = {
  ROUND_ROBIN = "LB_ALGORITHM_ROUND_ROBIN",
  LEAST_CONN = "LB_ALGORITHM_LEAST_CONNECTIONS",
  LEAST_REQUEST = "LB_ALGORITHM_LEAST_CONNECTIONS",
  UNSPECIFIED = "LB_ALGORITHM_LEAST_CONNECTIONS",
  RANDOM = "LB_ALGORITHM_RANDOM",
}

local function load_balancer(ctx, dr, lb, path, pool)
  local out = ctx.out
  if lb.simple ~= nil then
    local alg = SIMPLE_LB[lb.simple]
    if alg then
      pool.lb_algorithm = alg
    else
      out:warn(dr, path .. ".simple", string.format(
        "load balancer %s has no AVI equivalent; using least connections",
        tostring(lb.simple)))
    end
  elseif lb.consistentHash ~= nil then
    local ch = lb.consistentHash
    if ch.httpHeaderName then
      pool.lb_algorithm = "LB_ALGORITHM_CONSISTENT_HASH"
      pool.lb_algorithm_hash = "LB_ALGORITHM_CONSISTENT_HASH_CUSTOM_HEADER"
      pool.lb_algorithm_consistent_hash_hdr = ch.httpHeaderName
    elseif ch.useSourceIp then
      pool.lb_algorithm = "LB_ALGORITHM_CONSISTENT_HASH"
      pool.lb_algorithm_hash = "LB_ALGORITHM_CONSISTENT_HASH_SOURCE_IP_ADDRESS"
    else
      local what = ch.httpCookie and "httpCookie" or
        (ch.httpQueryParameterName and "httpQueryParameterName" or "hash key")
      out:warn(dr, path .. ".consistentHash", string.format(
        "consistent hashing on %s has no AVI pool equivalent; using " ..
        "least connections", what))
    end
    for _, f in ipairs({ "ringHash", "maglev", "minimumRingSize" }) do
      if ch[f] ~= nil then
        out:warn(dr, path .. ".consistentHash." .. f,
          "hash ring tuning is not translated (AVI sizes its own ring)")
      end
    end
  end
  for _, f in ipairs({ "localityLbSetting", "warmupDurationSecs", "warmup",
                       "zoneAwareLbSetting" }) do
    if lb[f] ~= nil then
      out:warn(dr, path .. "." .. f, f .. " is not translated: AVI pools " ..
        "have no equivalent")
    end
  end
end

local function tls(ctx, dr, t, path, pool)
  local mode = t.mode or "DISABLE"
  if mode == "DISABLE" then
    return
  end
  if mode ~= "SIMPLE" then
    ctx.out:warn(dr, path .. ".mode", string.format(
      "TLS mode %s to the backends is not translated; the pool connects " ..
      "without TLS", mode))
    return
  end
  pool.ssl_profile_ref = ctx.ref("sslprofile", avi.SSL_PROFILE)
  pool.sni_enabled = true
  if t.sni then
    pool.server_name = t.sni
  end
  for _, f in ipairs({ "caCertificates", "credentialName", "subjectAltNames",
                       "caCrl" }) do
    if t[f] ~= nil then
      ctx.out:warn(dr, path .. "." .. f, f .. " is not translated: the " ..
        "backend certificate is not verified (needs an AVI PKI profile)")
    end
  end
end

-- Applies the effective policy to `pool`, reporting what AVI cannot do.
function M.apply(ctx, dr, policy, paths, pool)
  pool.lb_algorithm = "LB_ALGORITHM_LEAST_CONNECTIONS"
  if dr == nil then
    return
  end
  if policy.loadBalancer then
    load_balancer(ctx, dr, policy.loadBalancer, paths.loadBalancer, pool)
  end
  if policy.tls then
    tls(ctx, dr, policy.tls, paths.tls, pool)
  end
  if policy.connectionPool then
    ctx.out:warn(dr, paths.connectionPool, "connectionPool is not " ..
      "translated: AVI pool limits are per server, not per destination")
  end
  if policy.outlierDetection then
    ctx.out:warn(dr, paths.outlierDetection, "outlierDetection is not " ..
      "translated: AVI has no passive ejection; servers follow Kubernetes " ..
      "readiness")
  end
  for _, f in ipairs({ "tunnel", "proxyProtocol", "retryBudget" }) do
    if policy[f] then
      ctx.out:warn(dr, paths[f], f .. " is not translated")
    end
  end
end

return M
