-- destination.lua - an Istio route destination -> an AVI Pool.
--
-- destination.host is resolved in the VirtualService's namespace (short
-- name, name.ns, name.ns.svc, the full Service FQDN, or a ServiceEntry
-- host: see rt.resolve_host); destination.port.number selects the Service
-- (or ServiceEntry) port, optional when there is only one; subset selects a
-- DestinationRule subset. The Pool gets the ready endpoints with their
-- *target* ports (service.lua / serviceentry.lua) and the DestinationRule
-- policy (destinationrule.lua).
--
-- Pool names: amc--<cluster>--<gwns>--<gw>[--<sni host>]--<svcns>--<svc>--
-- <port>[--<subset>] for Services, ...--<host>--<port>[--<subset>] for
-- ServiceEntry hosts. A pool belongs to one AVI virtual service (the parent
-- or one SNI child), so each child has its own pools.

local avi = import("lib/avi")
local service = import("service")
local serviceentry = import("serviceentry")
local destinationrule = import("destinationrule")

-- (globals as locals: a global lookup goes through the sandbox's proxies)
local type, tostring = type, tostring

local M = {}

-- The pool's name: the consuming virtual service's `scope`, the backend's
-- parts, then the subset (if any).
local function pool_name(ctx, scope, subset, ...)
  if subset == nil then
    return ctx.scoped_name(scope, ...)
  end
  local parts = { ... }
  parts[#parts + 1] = subset
  return ctx.scoped_name(scope, table.unpack(parts))
end

-- The servers of Service port `sport` narrowed to subset `labels`,
-- computed once per translation: the parent VS and each SNI child have
-- their own pools for the same backends, and several routes may name the
-- same one. (Pools share the list; outputs are not modified once emitted.)
local NO_LABELS = {}

local function service_servers(ctx, svc, sport, labels)
  -- ctx.cache.servers_memo[labels][sport] -> servers
  local memo = ctx.cache.servers_memo
  if not memo then
    memo = {}
    ctx.cache.servers_memo = memo
  end
  local by_port = memo[labels or NO_LABELS]
  if not by_port then
    by_port = {}
    memo[labels or NO_LABELS] = by_port
  end
  local servers = by_port[sport]
  if not servers then
    servers = service.servers(ctx.rt, svc, sport, labels)
    by_port[sport] = servers
  end
  return servers
end

-- Builds and emits the pool `name`: port `sport` of `target` (see
-- M.pool) narrowed to `subset` of the DestinationRule `dr` (nil: none),
-- whose `policy`, `paths` and `labels` destinationrule.policy gave: the
-- ready endpoints with their target ports as servers, then the policy.
-- `who` (the VirtualService, by name) and `path` (a string) are the
-- destination's, for the warning when no endpoint is ready. Returns true,
-- or false after a diagnostic.
local function build_pool(ctx, who, path, target, sport, subset, dr, policy,
                          paths, labels, name)
  local rt, out = ctx.rt, ctx.out
  local servers, why
  if target.kind == "Service" then
    -- (already a JSON array: service.lua makes it with rt.new_array)
    servers = service_servers(ctx, target.service, sport, labels)
  else
    servers, why = serviceentry.servers(rt, target.entry, target.fqdn, sport,
      labels)
    if not servers then
      out:error(target.entry, "spec.resolution", why)
      return false
    end
    servers = rt.array(servers)
  end
  if #servers == 0 then
    out:warn(who, path, string.format(
      "%s port %d%s has no ready endpoints", target.fqdn,
      sport.port or sport.number, subset and (" subset " .. subset) or ""))
  end

  local pool = {
    name = name,
    servers = servers,
    cloud_ref = ctx.cloud_ref,
    vrf_ref = ctx.vrf_ref,
    -- the default (destinationrule.apply sets it anyway); here, the table
    -- gets room for avi.emit's fields at once
    lb_algorithm = "LB_ALGORITHM_LEAST_CONNECTIONS",
  }
  destinationrule.apply(ctx, dr, policy, paths, pool)
  avi.emit(ctx, "pool", pool)
  return true
end

-- Returns the name of the pool for destination `dest` of VirtualService
-- `vs` (emitting it once), or nil after a diagnostic. `path` is the
-- diagnostic path of the destination (a string or an avi.lazy_path);
-- `scope` the name parts of the
-- consuming virtual service ({} for the parent, {host} for a child).
--
-- Building the pool is memoized (rt.memo, inside the VirtualService's
-- memoized rules) on the Service or ServiceEntry and the DestinationRule:
-- when a route changes but not its backends (a weight), the pool is
-- replayed, not built, encoded and checked again. The key names every
-- other argument: the pool (its name tells the scope, host, port and
-- subset; rt.name makes distinct parts distinct names) and the
-- destination (VirtualService and path, for the diagnostic).
function M.pool(ctx, vs, dest, path, scope)
  local rt, out = ctx.rt, ctx.out
  local vs_ns = vs.metadata.namespace
  if type(dest) ~= "table" or type(dest.host) ~= "string" then
    out:error(vs, avi.at(path, "host"), "destination host missing")
    return nil
  end
  local number = dest.port and dest.port.number
  local target = rt.resolve_host(dest.host, vs_ns)
  if not target then
    out:error(vs, avi.at(path, "host"), string.format(
      "host %s resolves to no Service or ServiceEntry (from namespace %s)",
      dest.host, vs_ns))
    return nil
  end

  local sport, why, svc_ns, name, backend
  if target.kind == "Service" then
    backend = target.service
    svc_ns = backend.metadata.namespace
    sport, why = service.port(backend, number)
    if sport then
      name = pool_name(ctx, scope, dest.subset, svc_ns, backend.metadata.name,
        sport.port)
    end
  else
    backend = target.entry
    sport, why = serviceentry.port(backend, number)
    if sport then
      name = pool_name(ctx, scope, dest.subset, target.fqdn, sport.number)
    end
  end
  if not sport then
    out:error(vs, avi.at(path, "port"), why)
    return nil
  end
  if avi.emitted(ctx, "pool", name) then
    return name
  end

  local port_number = sport.port or sport.number
  local dr = destinationrule.find(ctx, target.fqdn, svc_ns)
  local policy, paths, labels, err =
    destinationrule.policy(dr, dest.subset, port_number)
  if not policy then
    out:error(vs, avi.at(path, "subset"), err)
    return nil
  end

  -- "pool <pool name> <vs ns>/<vs name> <path>"
  local at = avi.at(path)
  local key = "pool " .. name .. " " .. vs_ns .. "/" .. vs.metadata.name ..
    " " .. at
  local who = { kind = vs.kind, metadata = { namespace = vs_ns,
                                             name = vs.metadata.name } }
  if rt.memo(ctx, { backend, dr }, key, build_pool, ctx, who, at, target,
             sport, dest.subset, dr, policy, paths, labels, name) then
    return name
  end
  return nil
end

return M
