-- gateway.lua - the entry rule: one Istio Gateway -> its whole AVI tree.
--
--   Gateway selected?   spec.selector must be a subset of the configured
--                       ingress labels (settings.ingress_selector); an empty
--                       selector selects every gateway workload, as in
--                       Istio. Other Gateways belong to other gateway
--                       workloads: they produce nothing, silently.
--   VsVip               amc--<c>--<ns>--<gw>: one auto-allocated VIP, DNS
--                       records for the servers' exact hosts.
--   parent VS           amc--<c>--<ns>--<gw>: one services[] entry per server
--                       port (enable_ssl for HTTPS, enable_http2 for HTTP2/
--                       GRPC, L4 application profile for TCP), System-HTTP
--                       application profile; VS_TYPE_VH_PARENT when it has
--                       SNI children. Plain-HTTP traffic and HTTPS servers
--                       for host "*" are routed by the parent's policy set.
--   SNI child VS        amc--<c>--<ns>--<gw>--<host>: one per host of an
--                       HTTPS server with tls.mode SIMPLE + credentialName
--                       (VS_TYPE_VH_CHILD, vh_domain_name, vh_parent_vs_ref,
--                       the server's certificate: secret.lua), with its own
--                       policy set, pool groups and pools.
--   httpsRedirect       a 301 redirect rule to HTTPS for the server's hosts.
--   TCP servers         services[] entry with the L4 profile and a
--                       service_pool_select to the first matching tcp[] route.
--   PASSTHROUGH, MUTUAL, AUTO_PASSTHROUGH, ISTIO_MUTUAL, TLS-protocol
--   servers             diagnostics; the server is not served.
--
-- Rule order in a policy set mirrors Envoy: per listener port (ascending),
-- virtual hosts from the most specific host (exact, then longer wildcards,
-- then "*"), routes in VirtualService order and http[] order. A specific
-- host followed by a wider one that covers it ends with a 404 rule so that
-- its unmatched requests do not fall through to the wider host's routes.

local avi = import("lib/avi")
local secret = import("secret")
local virtualservice = import("virtualservice")

-- (globals as locals: a global lookup goes through the sandbox's proxies,
-- and so does a string method call such as s:sub())
local ipairs, pairs, type = ipairs, pairs, type
local sub = string.sub
local int_str = avi.int_str

local KIND_BY_PROTOCOL = {
  HTTP = "http", HTTP2 = "http", GRPC = "http", HTTPS = "https",
  TCP = "tcp", MONGO = "tcp", TLS = "tls",
}

local function strip_ns(entry)
  return entry:match("^[^/]+/(.+)$") or entry
end

-- Servers -> listeners (one per port) and SNI hosts. Reports what it
-- cannot serve.
local function listeners_of(ctx)
  local gw, out = ctx.gateway, ctx.out
  local by_port, sni, sni_order = {}, {}, {}
  for i, server in ipairs(gw.spec.servers or {}) do
    local path = string.format("spec.servers[%d]", i - 1)
    local port = server.port or {}
    local proto = (port.protocol or ""):upper()
    local kind = KIND_BY_PROTOCOL[proto]
    local ok = true
    if type(port.number) ~= "number" then
      out:error(gw, path .. ".port.number", "server port missing")
      ok = false
    elseif not kind then
      out:warn(gw, path .. ".port.protocol", string.format(
        "protocol %s is not supported; the server is not served", proto))
      ok = false
    end
    for _, f in ipairs({ "bind", "defaultEndpoint" }) do
      if server[f] ~= nil then
        out:warn(gw, path .. "." .. f, f .. " is not translated")
      end
    end
    local tls, cert = server.tls or {}, nil
    if ok and (kind == "https" or kind == "tls") then
      local mode = tls.mode or "PASSTHROUGH"
      if mode ~= "SIMPLE" then
        out:warn(gw, path .. ".tls.mode", string.format(
          "TLS mode %s is not supported by amc (AVI would need a " ..
          "passthrough or client-certificate setup); the server is not " ..
          "served", mode))
        ok = false
      elseif kind == "tls" then
        out:warn(gw, path .. ".port.protocol", "TLS termination for " ..
          "non-HTTP traffic is not supported; the server is not served")
        ok = false
      elseif not tls.credentialName then
        out:error(gw, path .. ".tls", "SIMPLE TLS needs credentialName " ..
          "(file-mounted certificates are not visible to amc); the " ..
          "server is not served")
        ok = false
      else
        cert = secret.certificate(ctx, tls.credentialName,
          path .. ".tls.credentialName")
        ok = cert ~= nil
      end
      for _, f in ipairs({ "minProtocolVersion", "maxProtocolVersion",
                           "cipherSuites", "subjectAltNames",
                           "verifyCertificateSpki", "verifyCertificateHash" }) do
        if ok and tls[f] ~= nil then
          out:warn(gw, path .. ".tls." .. f, f .. " is not translated; " ..
            "the System-Standard SSL profile applies")
        end
      end
    end
    if ok and kind == "https" and tls.httpsRedirect then
      out:warn(gw, path .. ".tls.httpsRedirect",
        "httpsRedirect on an HTTPS server is ignored")
    end
    if ok then
      local l = by_port[port.number]
      if l and l.kind ~= kind then
        out:error(gw, path .. ".port", string.format(
          "port %d is already a %s listener; the server is not served",
          port.number, l.kind))
      else
        if not l then
          l = { port = port.number, kind = kind, ssl = kind == "https",
                http2 = false, entries = {} }
          by_port[port.number] = l
        end
        if proto == "HTTP2" or proto == "GRPC" then
          l.http2 = true
        end
        for _, entry in ipairs(server.hosts or {}) do
          local host = strip_ns(entry):lower()
          local e = { entry = entry, host = host, cert = cert,
                      redirect = kind == "http" and tls.httpsRedirect == true,
                      server = i }
          if kind == "https" and host ~= "*" then
            if sni[host] then
              out:warn(gw, path .. ".hosts", string.format(
                "host %s is already served over TLS by servers[%d]; this " ..
                "server's entry is ignored", host, sni[host].server - 1))
            else
              e.listener = l
              sni[host] = e
              sni_order[#sni_order + 1] = host
            end
          else
            table.insert(l.entries, e)
          end
        end
        l.cert = l.cert or cert
      end
    end
  end
  local listeners = {}
  for _, l in pairs(by_port) do
    listeners[#listeners + 1] = l
  end
  table.sort(listeners, function(a, b) return a.port < b.port end)
  return listeners, sni, sni_order
end

-- (`vs` is the projection virtualservice.bound lists: the routes are in
-- the whole object, read here, inside the memoized call)
local function http_rules_of(ctx, vs, listener, host, scope)
  local req, rsp = {}, {}
  virtualservice.http_rules(ctx, virtualservice.full(ctx, vs), listener, host,
    scope, req, rsp)
  return { req = req, rsp = rsp }
end

-- Appends the elements of `src` to `dst`. (A route gives a rule or two: a
-- loop costs less than calling table.move.)
local function append(dst, src)
  local n = #dst
  for i = 1, #src do
    dst[n + i] = src[i]
  end
end

-- virtualservice.http_rules for one VirtualService on one virtual host,
-- memoized (rt.memo): after a change, only the VirtualServices whose
-- inputs changed are translated again; the others are replayed. The key
-- (made by listener_rules, once per host) names every argument that is not
-- an input object (the listener's port and TLS, the host, the SNI scope);
-- everything else comes from the Gateway.
local function vs_http_rules(ctx, vs, key, listener, host, scope, req, rsp)
  local got = ctx.rt.memo(ctx, { vs }, key, http_rules_of, ctx, vs, listener,
    host, scope)
  append(req, got.req)
  if #got.rsp > 0 then -- (response rules are rare)
    append(rsp, got.rsp)
  end
end

-- Is `h` a wildcard host ("*" or "*.suffix"), one that can cover others?
local function is_wildcard(h)
  return h == "*" or sub(h, 1, 2) == "*."
end

-- The HTTP rules of one AVI virtual service (parent or child) for the
-- host entries `entries` on `listener`. Sets served[i] when vss[i] has a
-- host on one of the entries.
local function listener_rules(ctx, vss, listener, entries, scope, req, rsp,
                              served)
  local rt = ctx.rt
  -- per virtual host: its VirtualServices (each once), or the server entry
  -- that redirects it to HTTPS
  local vss_of, redirect_of, hosts = {}, {}, {}
  local sets = nil -- per host with several VirtualServices: the set of them
  local function add_vs(h, vs)
    local vss_of_h = vss_of[h]
    if not vss_of_h then
      vss_of[h] = { vs }
      hosts[#hosts + 1] = h
      return
    end
    sets = sets or {}
    local has = sets[h]
    if not has then -- (made once a second one comes)
      has = {}
      for i = 1, #vss_of_h do
        has[vss_of_h[i]] = true
      end
      sets[h] = has
    end
    if not has[vs] then
      has[vs] = true
      vss_of_h[#vss_of_h + 1] = vs
    end
  end
  for i = 1, #entries do
    local e = entries[i]
    if e.redirect then
      if not vss_of[e.host] then
        vss_of[e.host] = {}
        hosts[#hosts + 1] = e.host
      end
      redirect_of[e.host] = e
    else
      for j = 1, #vss do
        local vs = vss[j]
        local vs_hosts = virtualservice.hosts_on(ctx, vs, e.entry)
        if #vs_hosts > 0 then
          served[j] = true
          for k = 1, #vs_hosts do
            add_vs(vs_hosts[k], vs)
          end
        end
      end
    end
  end
  rt.sort_by(hosts, rt.host_specificity_key)
  -- Only "*" and "*.suffix" hosts can cover another one; the sort put
  -- them last.
  local first_wildcard = #hosts + 1
  while first_wildcard > 1 and is_wildcard(hosts[first_wildcard - 1]) do
    first_wildcard = first_wildcard - 1
  end
  local order = nil -- VirtualService -> its place in Istio order
  local function istio_order(a, b)
    return order[a] < order[b]
  end
  -- the match of a rule for the whole virtual host
  local function host_rule_match(h)
    local mt = { host_hdr = virtualservice.host_match(h, listener.port) }
    if #scope == 0 then
      mt.vs_port = { match_criteria = "IS_IN", ports = { listener.port } }
    end
    return mt
  end
  -- memo keys: "http_rules <port> ssl|plain <host> <SNI host or empty>"
  local key_head = "http_rules " .. int_str[listener.port] ..
    (listener.ssl and " ssl " or " plain ")
  local key_tail = " " .. (scope[1] or "")
  for k = 1, #hosts do
    local h = hosts[k]
    local redirect = redirect_of[h]
    if redirect then
      req[#req + 1] = {
        name = string.format("https-redirect servers[%d] %s:%d",
          redirect.server - 1, h, listener.port),
        enable = true, match = host_rule_match(h),
        redirect_action = { protocol = "HTTPS", port = 443, keep_query = true,
                            status_code = "HTTP_REDIRECT_STATUS_CODE_301" },
      }
    else
      -- VirtualServices in Istio order
      local vss_of_h = vss_of[h]
      if #vss_of_h > 1 then
        if not order then
          order = {}
          for i = 1, #vss do
            order[vss[i]] = i
          end
        end
        table.sort(vss_of_h, istio_order)
      end
      local key = key_head .. h .. key_tail
      for i = 1, #vss_of_h do
        vs_http_rules(ctx, vss_of_h[i], key, listener, h, scope, req, rsp)
      end
      -- a wider host after it that covers it
      local shadowed = false
      local from = k + 1
      if from < first_wildcard then
        from = first_wildcard
      end
      for k2 = from, #hosts do
        if rt.host_matches(hosts[k2], h) then
          shadowed = true
          break
        end
      end
      if shadowed then
        req[#req + 1] = {
          name = string.format("no route %s:%d", h, listener.port),
          enable = true, match = host_rule_match(h),
          switching_action = { action = "HTTP_SWITCHING_SELECT_LOCAL",
            status_code = "HTTP_LOCAL_RESPONSE_STATUS_CODE_404" },
        }
      end
    end
  end
end

-- Gives the rules of one policy their index (1, 2, ...) and unique names
-- (a repeated name gets " #2", " #3", ...).
local function number_rules(rules)
  local seen = {}
  for i = 1, #rules do
    local r = rules[i]
    r.index = i
    local n, k = r.name, 1
    while seen[n] do
      k = k + 1
      n = r.name .. " #" .. k
    end
    seen[n] = true
    r.name = n
  end
end

-- Emits the HTTPPolicySet `name` for the rules, or returns nil if none.
local function policy_set(ctx, name, req, rsp)
  if #req == 0 and #rsp == 0 then
    return nil
  end
  number_rules(req)
  number_rules(rsp)
  local ps = { name = name }
  if #req > 0 then
    ps.http_request_policy = { rules = req }
  end
  if #rsp > 0 then
    ps.http_response_policy = { rules = rsp }
  end
  avi.emit(ctx, "httppolicyset", ps)
  return { { index = 11, http_policy_set_ref = ctx.ref("httppolicyset", name) } }
end

local function vsvip(ctx, name, listeners, sni_order)
  local rt, s = ctx.rt, ctx.settings
  local vip = { vip_id = "0", auto_allocate_ip = true }
  if s.vip_network then
    local net = { network_ref = rt.ref("network", s.vip_network) }
    local addr, mask = tostring(s.vip_subnet or ""):match("^(.+)/(%d+)$")
    if addr then
      net.subnet = { ip_addr = { addr = addr,
        type = addr:find(":", 1, true) and "V6" or "V4" },
        mask = tonumber(mask) }
    end
    vip.ipam_network_subnet = net
  end
  local fqdns, seen = {}, {}
  local function add(h)
    if h ~= "*" and sub(h, 1, 2) ~= "*." and not seen[h] then
      seen[h] = true
      fqdns[#fqdns + 1] = h
    end
  end
  for _, l in ipairs(listeners) do
    for _, e in ipairs(l.entries) do
      add(e.host)
    end
  end
  for _, h in ipairs(sni_order) do
    add(h)
  end
  table.sort(fqdns)
  local dns = {}
  for i, h in ipairs(fqdns) do
    dns[i] = { fqdn = h }
  end
  local obj = { name = name, vip = { vip }, cloud_ref = ctx.cloud_ref,
                vrf_context_ref = ctx.vrf_ref }
  if #dns > 0 then
    obj.dns_info = dns
  end
  avi.emit(ctx, "vsvip", obj)
end

-- Does VirtualService `v` serve a host of one of the gateway's servers?
local function serves_a_host(ctx, v, listeners, sni, sni_order)
  for i = 1, #listeners do
    local entries = listeners[i].entries
    for j = 1, #entries do
      if #virtualservice.hosts_on(ctx, v, entries[j].entry) > 0 then
        return true
      end
    end
  end
  for i = 1, #sni_order do
    if #virtualservice.hosts_on(ctx, v, sni[sni_order[i]].entry) > 0 then
      return true
    end
  end
  return false
end

local function translate(gateway, rt)
  local out = rt.output()
  local spec = gateway.spec or {}
  if not rt.labels_match(spec.selector, rt.settings.ingress_selector) then
    return out:result()
  end
  local ctx = avi.context(gateway, rt, out)
  local vss = virtualservice.bound(ctx)
  local listeners, sni, sni_order = listeners_of(ctx)
  if #listeners == 0 and #sni_order == 0 then
    out:warn(gateway, "spec.servers", "no server amc can serve; no AVI " ..
      "virtual service is created")
    return out:result()
  end
  local parent = ctx.name()

  -- served[i]: vss[i] has a host on a server entry routed so far
  local served = {}

  -- SNI children, one per TLS host
  local children = {}
  for _, host in ipairs(sni_order) do
    local e = sni[host]
    local cname = ctx.name(host)
    local req, rsp = {}, {}
    listener_rules(ctx, vss, e.listener, { e }, { host }, req, rsp, served)
    local child = {
      name = cname,
      type = "VS_TYPE_VH_CHILD",
      vh_parent_vs_ref = rt.ref("virtualservice", parent),
      vh_domain_name = { host },
      ssl_key_and_certificate_refs = { rt.ref("sslkeyandcertificate", e.cert) },
      ssl_profile_ref = rt.ref("sslprofile", avi.SSL_PROFILE),
      application_profile_ref = rt.ref("applicationprofile",
        avi.APP_PROFILE_HTTP),
      cloud_ref = ctx.cloud_ref,
      se_group_ref = ctx.se_group_ref,
    }
    child.http_policies = policy_set(ctx, cname, req, rsp)
    children[#children + 1] = child
    e.listener.cert = e.listener.cert or e.cert
  end

  -- the parent: listeners, default certificate, its own routes
  local services, pool_select, req, rsp = {}, {}, {}, {}
  local cert, any_http = nil, false
  for _, l in ipairs(listeners) do
    local svc = { port = l.port }
    if l.kind == "tcp" then
      svc.override_application_profile_ref = rt.ref("applicationprofile",
        avi.APP_PROFILE_L4)
      local pg = virtualservice.tcp_pool_group(ctx, vss, l)
      if pg then
        pool_select[#pool_select + 1] = { service_port = l.port,
          service_pool_group_ref = rt.ref("poolgroup", pg) }
      else
        out:warn(gateway, "spec.servers", string.format(
          "no VirtualService tcp route for port %d; connections get no " ..
          "backend", l.port))
      end
    else
      any_http = true
      if l.ssl then
        svc.enable_ssl = true
        cert = cert or l.cert
      end
      if l.http2 then
        svc.enable_http2 = true
      end
      listener_rules(ctx, vss, l, l.entries, {}, req, rsp, served)
    end
    services[#services + 1] = svc
  end
  vsvip(ctx, parent, listeners, sni_order)
  local vs = {
    name = parent,
    type = #children > 0 and "VS_TYPE_VH_PARENT" or "VS_TYPE_NORMAL",
    vsvip_ref = rt.ref("vsvip", parent),
    services = services,
    application_profile_ref = rt.ref("applicationprofile",
      any_http and avi.APP_PROFILE_HTTP or avi.APP_PROFILE_L4),
    network_profile_ref = rt.ref("networkprofile", avi.NET_PROFILE_TCP),
    cloud_ref = ctx.cloud_ref,
    vrf_context_ref = ctx.vrf_ref,
    se_group_ref = ctx.se_group_ref,
  }
  if cert then
    vs.ssl_key_and_certificate_refs = { rt.ref("sslkeyandcertificate", cert) }
    vs.ssl_profile_ref = rt.ref("sslprofile", avi.SSL_PROFILE)
  end
  if #pool_select > 0 then
    vs.service_pool_select = pool_select
  end
  vs.http_policies = policy_set(ctx, parent, req, rsp)
  avi.emit(ctx, "virtualservice", vs)
  for _, child in ipairs(children) do
    avi.emit(ctx, "virtualservice", child)
  end

  -- VirtualServices that bind to this gateway but match none of its hosts
  for i = 1, #vss do
    local v = vss[i]
    if not served[i] and not serves_a_host(ctx, v, listeners, sni,
                                           sni_order) then
      out:warn(v, "spec.hosts", string.format("no host matches a server " ..
        "of Gateway %s/%s", ctx.gw_ns, ctx.gw_name))
    end
    if (v.spec or {}).tls then
      out:warn(v, "spec.tls", "tls routes (SNI passthrough) are not " ..
        "translated")
    end
  end
  return out:result()
end

-- The context translate gives its memoized calls, made again for a patch
-- (docs/rules-contract.md "Patches": only a stale route's rules run then).
local function patch_context(gateway, rt)
  return avi.context(gateway, rt, nil)
end

return {
  api_version = 1,
  kind = "Gateway",
  translate = translate,
  patch_context = patch_context,
}
