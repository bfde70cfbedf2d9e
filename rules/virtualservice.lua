-- virtualservice.lua - Istio VirtualService http[]/tcp[] -> AVI policy rules
-- and pool groups.
--
-- Binding: a VirtualService is bound to the Gateway when spec.gateways
-- names it (`<gw>` in the VirtualService's namespace, `<ns>/<gw>`), it is
-- exported to the Gateway's namespace, and its hosts intersect a server's
-- hosts (server hosts `<ns>/<host>` admit only VirtualServices of that
-- namespace; `./host` the Gateway's; `*/host` any). Several bound
-- VirtualServices are taken oldest first (metadata.creationTimestamp, as
-- Istio merges them), then by namespace/name.
--
-- One http[] route becomes one HTTPRequestRule per match block (blocks are
-- OR-ed; conditions inside a block are AND-ed in one MatchTarget):
--
--   uri exact/prefix/regex        path EQUALS / BEGINS_WITH / REGEX_MATCH
--                                 (regex anchored ^(?:re)$; ignoreUriCase
--                                 -> INSENSITIVE, else SENSITIVE)
--   method exact, regex A|B       method IS_IN HTTP_METHOD_*
--   headers exact/prefix/present  hdrs HDR_EQUALS / HDR_BEGINS_WITH /
--                                 HDR_EXISTS
--   withoutHeaders                the HDR_DOES_NOT_* negations
--   authority exact/prefix        hdrs on Host
--   queryParams exact/regex/      query REGEX_MATCH over the query string
--   present                       ((?:^|&)name=value(?:&|$), several
--                                 parameters as lookaheads)
--   scheme http/https             protocol IS_IN
--   port                          only the listener on that port
--   gateways, sourceLabels,       decide whether the block applies to this
--   sourceNamespace               gateway at all (ingress labels, gateway
--                                 namespace)
--
-- A condition AVI cannot express (header regex, method prefix, ...) drops
-- the whole block with a warning: a rule without the condition would catch
-- traffic it must not.
--
-- Actions: route -> switching_action SELECT_POOLGROUP (PoolGroup members'
-- ratio = weight); redirect -> redirect_action; directResponse ->
-- SELECT_LOCAL with status_code (200/204/403/404/429/501) and body;
-- rewrite uri/authority -> rewrite_url_action; headers.request set/add/
-- remove -> hdr_action REPLACE/ADD/REMOVE; headers.response -> a response
-- rule with the same match. timeout, retries, fault, mirror(s), corsPolicy,
-- delegate, per-destination headers: warnings (no AVI policy equivalent).

local avi = import("lib/avi")
local destination = import("destination")

-- (globals as locals: a global lookup goes through the sandbox's proxies,
-- and so does a string method call such as s:sub())
local ipairs, next, tostring = ipairs, next, tostring
local sub = string.sub
local int_str = avi.int_str

local M = {}

---------------------------------------------------------------------------
-- Binding
---------------------------------------------------------------------------

-- Does `list` (spec.gateways, or a match block's gateways) name this
-- gateway: "<gw ns>/<gw>", or "<gw>" in the VirtualService's namespace?
-- (Kubernetes names have no "/": any other entry with one names another
-- gateway, or none.)
local function names_gateway(ctx, vs, list)
  if list == nil then
    return false
  end
  local own_ns = vs.metadata.namespace == ctx.gw_ns
  for i = 1, #list do
    local g = list[i]
    if g == ctx.gw_id or (own_ns and g == ctx.gw_name) then
      return true
    end
  end
  return false
end

-- Istio's merge order: oldest first (creationTimestamp), then namespace,
-- then name. "\0" sorts before every character, so the joined key
-- compares like the three fields one after the other.
local function istio_order_key(vs)
  local md = vs.metadata
  return (md.creationTimestamp or "") .. "\0" .. md.namespace .. "\0" ..
    md.name
end

-- VirtualServices bound to this gateway, in Istio's merge order. Only
-- those whose spec.gateways has "<gw ns>/<gw>" (any namespace) or "<gw>"
-- (the gateway's namespace) can name it: the lookups fetch just those.
--
-- Projected (rt.list's `fields`): the Gateway's own code reads just these
-- fields of its VirtualServices (hosts, gateways, exportTo, merge order,
-- tls and tcp routes, done outside memoized calls); a route's rules read
-- the whole VirtualService themselves (M.full). So an edit to a route
-- (a weight, a match) is no change to this list: only that VirtualService's
-- memoized rules run again, and the Gateway is patched (docs/rules-
-- contract.md "Patches").
M.BOUND_FIELDS = { "metadata.creationTimestamp", "spec.hosts",
  "spec.gateways", "spec.exportTo", "spec.tls", "spec.tcp" }

function M.bound(ctx)
  local rt = ctx.rt
  local candidates = {
    rt.list("VirtualService", nil,
      { field = "spec.gateways", value = ctx.gw_id, fields = M.BOUND_FIELDS }),
    rt.list("VirtualService", ctx.gw_ns,
      { field = "spec.gateways", value = ctx.gw_name,
        fields = M.BOUND_FIELDS }),
  }
  -- (only a VirtualService of the gateway's namespace can be in both)
  local list, seen = {}, nil
  if #candidates[1] > 0 and #candidates[2] > 0 then
    seen = {}
  end
  for _, vss in ipairs(candidates) do
    for i = 1, #vss do
      local vs = vss[i]
      if not (seen and seen[vs]) and names_gateway(ctx, vs, vs.spec.gateways)
         and rt.exported_to(vs, ctx.gw_ns) then
        if seen then
          seen[vs] = true
        end
        list[#list + 1] = vs
      end
    end
  end
  return ctx.rt.sort_by(list, istio_order_key)
end

-- The whole VirtualService of one M.bound gives (projected): for the
-- rules of its routes, read inside the memoized call that makes them.
function M.full(ctx, vs)
  local md = vs.metadata
  return ctx.rt.get("VirtualService", md.namespace, md.name) or vs
end

-- A server host entry "ns/host" (or "host": any namespace) as the
-- namespace its VirtualServices must be in ("*": any) and the host.
local function parse_entry(ctx, entry)
  local ns, pattern = entry:match("^([^/]+)/(.+)$")
  if not ns then
    ns, pattern = "*", entry
  end
  if ns == "." then
    ns = ctx.gw_ns
  end
  return ns, pattern
end

local NO_HOSTS = {} -- (shared: callers only read the lists)

-- The hosts (intersections) a VirtualService serves on a server host entry
-- `entry` ("host" or "ns/host"). Each entry is parsed once per
-- translation; the intersections are rt's (kept across translations).
function M.hosts_on(ctx, vs, entry)
  local parsed = ctx.parsed_entries
  if not parsed then
    parsed = {}
    ctx.parsed_entries = parsed
  end
  local e = parsed[entry]
  if not e then
    local ns, pattern = parse_entry(ctx, entry)
    e = { ns = ns, pattern = pattern }
    parsed[entry] = e
  end
  local ns = e.ns
  if ns ~= "*" and ns ~= vs.metadata.namespace then
    return NO_HOSTS
  end
  local vs_hosts = (vs.spec or NO_HOSTS).hosts or NO_HOSTS
  local hosts = {}
  local pattern, intersection = e.pattern, ctx.rt.host_intersection
  for i = 1, #vs_hosts do
    local h = intersection(pattern, vs_hosts[i])
    if h then
      hosts[#hosts + 1] = h
    end
  end
  return hosts
end

---------------------------------------------------------------------------
-- Matches
---------------------------------------------------------------------------

local function regex_escape(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?%{%}|\\/]", "\\%0"))
end

local METHODS = {
  GET = true, HEAD = true, PUT = true, DELETE = true, POST = true,
  OPTIONS = true, TRACE = true, CONNECT = true, PATCH = true,
  PROPFIND = true, PROPPATCH = true, MKCOL = true, COPY = true, MOVE = true,
  LOCK = true, UNLOCK = true,
}

-- Each match builder returns the AVI value, or nil and a reason.

local function path_match(m, ignore_case)
  local case = ignore_case and "INSENSITIVE" or "SENSITIVE"
  if m.exact ~= nil then
    return { match_criteria = "EQUALS", match_case = case,
             match_str = { m.exact } }
  elseif m.prefix ~= nil then
    return { match_criteria = "BEGINS_WITH", match_case = case,
             match_str = { m.prefix } }
  elseif m.regex ~= nil then
    return { match_criteria = "REGEX_MATCH", match_case = case,
             match_str = { "^(?:" .. m.regex .. ")$" } }
  end
  return nil, "empty uri match"
end

local function method_match(m)
  local list = {}
  if m.exact ~= nil then
    list = { m.exact }
  elseif m.regex ~= nil and m.regex:match("^[A-Z|]+$") then
    for w in m.regex:gmatch("[A-Z]+") do
      list[#list + 1] = w
    end
  else
    return nil, "only exact methods (or a regex A|B of method names) " ..
      "can be matched by AVI"
  end
  local methods = {}
  for _, w in ipairs(list) do
    if not METHODS[w] then
      return nil, "AVI cannot match method " .. w
    end
    methods[#methods + 1] = "HTTP_METHOD_" .. w
  end
  return { match_criteria = "IS_IN", methods = methods }
end

-- One header condition; `negate` for withoutHeaders.
local function header_match(name, m, negate, case)
  local crit, value
  if m.exact ~= nil then
    crit, value = "HDR_EQUALS", m.exact
  elseif m.prefix ~= nil and m.prefix ~= "" then
    crit, value = "HDR_BEGINS_WITH", m.prefix
  elseif m.regex ~= nil and m.regex ~= ".*" then
    return nil, "AVI cannot match a header against a regex"
  else
    crit = "HDR_EXISTS" -- {} , prefix "" and regex ".*" all mean present
  end
  if negate then
    crit = ({ HDR_EQUALS = "HDR_DOES_NOT_EQUAL",
              HDR_BEGINS_WITH = "HDR_DOES_NOT_BEGIN_WITH",
              HDR_EXISTS = "HDR_DOES_NOT_EXIST" })[crit]
  end
  local h = { hdr = name, match_criteria = crit, match_case = case }
  if value ~= nil then
    h.value = { value }
  end
  return h
end

local function query_piece(name, m)
  local n = regex_escape(name)
  if m.exact ~= nil and m.exact ~= "" then
    return "(?:^|&)" .. n .. "=" .. regex_escape(m.exact) .. "(?:&|$)"
  elseif m.regex ~= nil then
    return "(?:^|&)" .. n .. "=(?:" .. m.regex .. ")(?:&|$)"
  elseif m.prefix ~= nil and m.prefix ~= "" then
    return "(?:^|&)" .. n .. "=" .. regex_escape(m.prefix)
  end
  return "(?:^|&)" .. n .. "(?:=|&|$)" -- presence
end

local function query_match(rt, params)
  local pieces = {}
  for name, m in rt.sorted_pairs(params) do
    pieces[#pieces + 1] = query_piece(name, m)
  end
  local re
  if #pieces == 1 then
    re = pieces[1]
  else
    local la = {}
    for i, p in ipairs(pieces) do
      la[i] = "(?=.*" .. p .. ")"
    end
    re = "^" .. table.concat(la)
  end
  return { match_criteria = "QUERY_MATCH_REGEX_MATCH", match_case = "SENSITIVE",
           match_str = { re } }
end

-- The host_hdr condition for virtual host `host` on listener `port`.
local function host_match(host, port)
  if host == "*" then
    return nil
  end
  if sub(host, 1, 2) == "*." then
    local suffix = sub(host, 2)
    return { match_criteria = "HDR_ENDS_WITH", match_case = "INSENSITIVE",
             value = { suffix, suffix .. ":" .. int_str[port] } }
  end
  return { match_criteria = "HDR_EQUALS", match_case = "INSENSITIVE",
           value = { host, host .. ":" .. int_str[port] } }
end
M.host_match = host_match

-- Does match block `mb` apply to this gateway and listener?
local function block_applies(ctx, vs, mb, listener)
  if mb.gateways and #mb.gateways > 0 and
     not names_gateway(ctx, vs, mb.gateways) then
    return false
  end
  if mb.port and mb.port ~= listener.port then
    return false
  end
  if mb.sourceLabels and
     not ctx.rt.labels_match(mb.sourceLabels, ctx.settings.ingress_selector) then
    return false
  end
  if mb.sourceNamespace and mb.sourceNamespace ~= ctx.gw_ns then
    return false
  end
  return true
end

local HEADER_SETS = { { "headers", false }, { "withoutHeaders", true } }

-- The header conditions of a block (authority, headers, withoutHeaders),
-- or nil when it has none; or nil, field, reason.
local function header_conditions(rt, mb)
  local hdrs, why = {}, nil
  if mb.authority then
    local h
    h, why = header_match("Host", mb.authority, false, "INSENSITIVE")
    if not h or h.match_criteria == "HDR_EXISTS" then
      return nil, "authority", why or "empty authority match"
    end
    hdrs[#hdrs + 1] = h
  end
  for k = 1, #HEADER_SETS do
    local set = HEADER_SETS[k]
    for name, m in rt.sorted_pairs(mb[set[1]]) do
      if name:sub(1, 1) == ":" then
        return nil, set[1] .. "." .. name,
          "pseudo-header matches are not supported by AVI header rules"
      end
      local h
      h, why = header_match(name, m, set[2], "SENSITIVE")
      if not h then
        return nil, set[1] .. "." .. name, why
      end
      hdrs[#hdrs + 1] = h
    end
  end
  if #hdrs > 0 then
    return hdrs
  end
  return nil
end

-- The MatchTarget for one block, or nil, field, reason.
local function match_target(ctx, mb, listener, host, in_child)
  local vs_port
  if not in_child then
    vs_port = { match_criteria = "IS_IN", ports = { listener.port } }
  end
  local host_hdr = host_match(host, listener.port)
  if mb == nil then
    return { vs_port = vs_port, host_hdr = host_hdr }
  end
  local path, method, protocol, hdrs, query, field, why
  if mb.uri then
    path, why = path_match(mb.uri, mb.ignoreUriCase)
    if not path then
      return nil, "uri", why
    end
  end
  if mb.method then
    method, why = method_match(mb.method)
    if not method then
      return nil, "method", why
    end
  end
  if mb.scheme then
    local s = (mb.scheme.exact or ""):upper()
    if s ~= "HTTP" and s ~= "HTTPS" then
      return nil, "scheme", "only exact http/https schemes can be matched"
    end
    protocol = { match_criteria = "IS_IN", protocols = s }
  end
  if mb.authority or mb.headers or mb.withoutHeaders then
    hdrs, field, why = header_conditions(ctx.rt, mb)
    if field then
      return nil, field, why
    end
  end
  if mb.queryParams and next(mb.queryParams) then
    query = query_match(ctx.rt, mb.queryParams)
  end
  return { vs_port = vs_port, host_hdr = host_hdr, path = path,
           method = method, protocol = protocol, hdrs = hdrs, query = query }
end

---------------------------------------------------------------------------
-- Actions
---------------------------------------------------------------------------

local REDIRECT_CODES = {
  [301] = "HTTP_REDIRECT_STATUS_CODE_301",
  [302] = "HTTP_REDIRECT_STATUS_CODE_302",
  [307] = "HTTP_REDIRECT_STATUS_CODE_307",
}

local function string_token(s)
  return { type = "URI_PARAM_TYPE_TOKENIZED",
           tokens = { { type = "URI_TOKEN_TYPE_STRING", str_value = s } } }
end

local function redirect_action(ctx, vs, r, path, listener)
  local out = ctx.out
  local proto = listener.ssl and "HTTPS" or "HTTP"
  local a = { keep_query = true }
  if r.scheme then
    proto = r.scheme:upper()
    if proto ~= "HTTP" and proto ~= "HTTPS" then
      out:warn(vs, path .. ".scheme", "AVI redirects only to http or https")
      proto = listener.ssl and "HTTPS" or "HTTP"
    end
  end
  a.protocol = proto
  if r.port then
    a.port = r.port
  elseif r.derivePort == "FROM_REQUEST_PORT" then
    a.port = listener.port
  elseif r.scheme then
    a.port = proto == "HTTPS" and 443 or 80
  end
  if r.authority then
    a.host = string_token(r.authority)
  end
  if r.uri then
    a.path = string_token((r.uri:gsub("^/", "")))
  end
  if r.prefixRewrite then
    out:warn(vs, path .. ".prefixRewrite", "redirect prefixRewrite is not " ..
      "translated: the redirect keeps the request path")
  end
  local code = r.redirectCode or 301
  a.status_code = REDIRECT_CODES[code]
  if not a.status_code then
    local nearest = (code == 308) and 301 or 302
    out:warn(vs, path .. ".redirectCode", string.format(
      "AVI cannot redirect with %d; using %d", code, nearest))
    a.status_code = REDIRECT_CODES[nearest]
  end
  return a
end

local LOCAL_CODES = { [200] = true, [204] = true, [403] = true, [404] = true,
  [429] = true, [501] = true }

local function direct_response(ctx, vs, d, path)
  local status = d.status
  if not LOCAL_CODES[status] then
    ctx.out:warn(vs, path .. ".status", string.format(
      "AVI local responses support status 200, 204, 403, 404, 429 and 501, " ..
      "not %s; the route is not translated", tostring(status)))
    return nil
  end
  local a = { action = "HTTP_SWITCHING_SELECT_LOCAL",
              status_code = "HTTP_LOCAL_RESPONSE_STATUS_CODE_" .. status }
  local body = d.body
  if body then
    local content = body.string
    if content == nil and body.bytes then
      content = ctx.rt.base64_decode(body.bytes)
      if content == nil then
        ctx.out:warn(vs, path .. ".body.bytes", "not base64; body dropped")
      end
    end
    if content then
      a.file = { content_type = "text/plain", file_content = content }
    end
  end
  return a
end

-- The rewrite of the path for one match block, or nil, reason.
local function rewrite_path(mb, uri)
  local m = mb and mb.uri
  if m == nil or m.exact ~= nil then
    return string_token((uri:gsub("^/", "")))
  end
  if m.prefix ~= nil and m.prefix:sub(-1) == "/" then
    -- "/api/" -> uri + the request path from segment n on
    local n = select(2, m.prefix:gsub("[^/]+", ""))
    local tokens = {}
    local head = uri:gsub("^/+", ""):gsub("/+$", "")
    if head ~= "" then
      tokens[#tokens + 1] = { type = "URI_TOKEN_TYPE_STRING",
                              str_value = head }
    end
    tokens[#tokens + 1] = { type = "URI_TOKEN_TYPE_PATH", start_index = n,
                            end_index = 65535 }
    return { type = "URI_PARAM_TYPE_TOKENIZED", tokens = tokens }
  end
  return nil, "AVI can rewrite only exact paths or prefixes ending in '/'"
end

local function header_actions(rt, ops)
  local acts = {}
  for name, v in rt.sorted_pairs(ops.set or {}) do
    acts[#acts + 1] = { action = "HTTP_REPLACE_HDR",
                        hdr = { name = name, value = { val = v } } }
  end
  for name, v in rt.sorted_pairs(ops.add or {}) do
    acts[#acts + 1] = { action = "HTTP_ADD_HDR",
                        hdr = { name = name, value = { val = v } } }
  end
  for _, name in ipairs(ops.remove or {}) do
    acts[#acts + 1] = { action = "HTTP_REMOVE_HDR", hdr = { name = name } }
  end
  return acts
end

-- (shared stand-ins for absent route fields)
local NO_HEADERS = {}
local NO_MATCH = { false } -- one block that matches everything

local UNSUPPORTED = {
  { "timeout", "AVI policies have no per-route timeout" },
  { "retries", "AVI policies have no per-route retries" },
  { "fault", "AVI has no fault injection" },
  { "mirror", "AVI policies cannot mirror a route's traffic" },
  { "mirrors", "AVI policies cannot mirror a route's traffic" },
  { "mirrorPercent", "AVI policies cannot mirror a route's traffic" },
  { "mirrorPercentage", "AVI policies cannot mirror a route's traffic" },
  { "corsPolicy", "CORS is not translated (AVI has no CORS policy)" },
}
local IS_UNSUPPORTED = {}
for k = 1, #UNSUPPORTED do
  IS_UNSUPPORTED[UNSUPPORTED[k][1]] = true
end

-- Does `route` have a field of UNSUPPORTED? (A route has a few fields:
-- looking at each is cheaper than looking up every UNSUPPORTED one.)
local function has_unsupported(route)
  for k in next, route do
    if IS_UNSUPPORTED[k] then
      return true
    end
  end
  return false
end

-- The member of `members` for the pool `pool_ref`, or nil.
local function member_of(members, pool_ref)
  for k = 1, #members do
    if members[k].pool_ref == pool_ref then
      return members[k]
    end
  end
  return nil
end

-- The PoolGroup for route `route` (index i) of `vs`, emitted once per scope.
local function pool_group(ctx, vs, route, i, scope)
  local rt = ctx.rt
  local name = ctx.scoped_name(scope, vs.metadata.namespace, vs.metadata.name,
    "http" .. int_str[i - 1])
  if avi.emitted(ctx, "poolgroup", name) then
    return name
  end
  local dests = route.route
  local any_weight = false
  for j = 1, #dests do
    if dests[j].weight ~= nil then
      any_weight = true
    end
  end
  local members = rt.new_array(#dests)
  for j = 1, #dests do
    local d = dests[j]
    if d.headers then
      ctx.out:warn(vs, string.format("spec.http[%d].route[%d].headers", i - 1,
        j - 1), "per-destination header edits are not translated (AVI " ..
        "applies header actions per rule)")
    end
    local pool = destination.pool(ctx, vs, d.destination, avi.lazy_path(
      "spec.http[%d].route[%d].destination", i - 1, j - 1), scope)
    if pool then
      -- one member per pool: a pool named twice gets the weights' sum
      local ratio = d.weight or (any_weight and 0 or 1)
      local ref = ctx.ref("pool", pool)
      local m = member_of(members, ref)
      if m then
        m.ratio = m.ratio + ratio
      else
        members[#members + 1] = { pool_ref = ref, ratio = ratio }
      end
    end
  end
  for k = 1, #members do
    local m = members[k]
    if m.ratio > 1000 then
      ctx.out:warn(vs, string.format("spec.http[%d].route", i - 1),
        "weights above 1000 are capped (AVI ratio range 0-1000)")
      m.ratio = 1000
    end
  end
  avi.emit(ctx, "poolgroup", {
    name = name,
    members = members,
    cloud_ref = ctx.cloud_ref,
  })
  return name
end

---------------------------------------------------------------------------
-- Rules
---------------------------------------------------------------------------

-- Appends to `req` (and `rsp`) the rules of VirtualService `vs` for virtual
-- host `host` on `listener`. `scope` is {} for the parent VS, {host} for an
-- SNI child (whose rules need no port condition). Rule indexes are set by
-- the caller.
function M.http_rules(ctx, vs, listener, host, scope, req, rsp)
  local out = ctx.out
  local in_child = #scope > 0
  local vs_id = vs.metadata.namespace .. "/" .. vs.metadata.name
  -- rule names end in "<host>:<port>"
  local where = " " .. host .. ":" .. int_str[listener.port]
  local http = (vs.spec or {}).http or {}
  for i = 1, #http do
    local route = http[i]
    -- "spec.http[i-1]", built only for diagnostics
    local function rpath()
      return "spec.http[" .. (i - 1) .. "]"
    end
    if has_unsupported(route) then -- (warned in UNSUPPORTED's order)
      for k = 1, #UNSUPPORTED do
        local u = UNSUPPORTED[k]
        if route[u[1]] ~= nil then
          out:warn(vs, rpath() .. "." .. u[1], u[2])
        end
      end
    end
    local headers = route.headers or NO_HEADERS

    -- the action shared by every match block of the route
    local action, redirect, ok = nil, nil, true
    if route.delegate then
      out:warn(vs, rpath() .. ".delegate", "delegate is not translated; " ..
        "the route is left out")
      ok = false
    elseif route.redirect then
      redirect = true
    elseif route.directResponse then
      action = direct_response(ctx, vs, route.directResponse,
        rpath() .. ".directResponse")
      ok = action ~= nil
    elseif route.route and #route.route > 0 then
      action = { action = "HTTP_SWITCHING_SELECT_POOLGROUP",
                 pool_group_ref = ctx.ref("poolgroup",
                   pool_group(ctx, vs, route, i, scope)) }
    else
      out:error(vs, rpath(), "route has no destination, redirect or " ..
        "directResponse; left out")
      ok = false
    end

    local blocks = route.match
    if blocks == nil or #blocks == 0 then
      blocks = NO_MATCH
    end
    for j = 1, ok and #blocks or 0 do
      local block = blocks[j] or nil
      if block == nil or block_applies(ctx, vs, block, listener) then
        local mt, field, why = match_target(ctx, block, listener, host,
          in_child)
        local rule
        if not mt then
          out:warn(vs, string.format("%s.match[%d].%s", rpath(), j - 1,
            field), why .. "; this match block is left out")
        else
          -- "<ns>/<vs> http[i] match[j] <host>:<port>" (no "match[j]" for a
          -- route without match blocks)
          local name = block and (vs_id .. " http[" .. int_str[i - 1] ..
            "] match[" .. int_str[j - 1] .. "]" .. where) or
            (vs_id .. " http[" .. int_str[i - 1] .. "]" .. where)
          local redirect_to = redirect and redirect_action(ctx, vs,
            route.redirect, rpath() .. ".redirect", listener)
          rule = { name = name, enable = true, match = mt,
                   switching_action = action, redirect_action = redirect_to }
          if route.rewrite then
            local rw = route.rewrite
            local ra = {}
            if rw.uri then
              local p, err = rewrite_path(block, rw.uri)
              if p then
                ra.path = p
              else
                out:warn(vs, rpath() .. ".rewrite.uri", err .. "; left out")
                rule = nil
              end
            end
            if rw.authority then
              ra.host_hdr = string_token(rw.authority)
            end
            if rw.uriRegexRewrite then
              out:warn(vs, rpath() .. ".rewrite.uriRegexRewrite",
                "regex rewrites are not translated; the route is left out")
              rule = nil
            end
            if rule and next(ra) then
              rule.rewrite_url_action = ra
            end
          end
          if rule and headers.request then
            local acts = header_actions(ctx.rt, headers.request)
            if #acts > 0 then
              rule.hdr_action = acts
            end
          end
        end
        if rule then
          req[#req + 1] = rule
          if headers.response then
            local acts = header_actions(ctx.rt, headers.response)
            if #acts > 0 then
              rsp[#rsp + 1] = { name = rule.name, enable = true,
                                match = mt, hdr_action = acts }
            end
          end
        end
      end
    end
  end
end

-- The pool group for TCP traffic on `listener` from the bound
-- VirtualServices' tcp[] routes (first matching route wins), or nil.
function M.tcp_pool_group(ctx, vss, listener)
  for _, vs in ipairs(vss) do
    for i, route in ipairs((vs.spec or {}).tcp or {}) do
      local applies = route.match == nil or #route.match == 0
      for _, m in ipairs(route.match or {}) do
        if block_applies(ctx, vs, m, listener) and
           not m.destinationSubnets and not m.sourceSubnet then
          applies = true
        end
      end
      if applies then
        local scope = { "tcp" .. listener.port }
        local name = ctx.name(scope[1], vs.metadata.namespace,
          vs.metadata.name, "tcp" .. (i - 1))
        if not avi.emitted(ctx, "poolgroup", name) then
          local members = {}
          for j, d in ipairs(route.route or {}) do
            local pool = destination.pool(ctx, vs, d.destination,
              string.format("spec.tcp[%d].route[%d].destination", i - 1,
                j - 1), scope)
            if pool then
              members[#members + 1] = { pool_ref = ctx.ref("pool", pool),
                ratio = d.weight or (#route.route == 1 and 1 or 0) }
            end
          end
          avi.emit(ctx, "poolgroup", { name = name,
            members = ctx.rt.array(members), cloud_ref = ctx.cloud_ref })
        end
        return name
      end
    end
  end
  return nil
end

return M
