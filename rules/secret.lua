-- secret.lua - Kubernetes TLS Secret -> AVI SSLKeyAndCertificate.
--
-- Istio: a Gateway server with tls.mode SIMPLE names a Secret with
-- `credentialName`. amc has no gateway workload, so the Secret is looked up
-- in the Gateway's namespace. Keys: `tls.crt`/`tls.key` (type
-- kubernetes.io/tls) or the older generic `cert`/`key`.
--
-- AVI: one SSLKeyAndCertificate per Secret and Gateway, named
-- amc--<cluster>--<gwns>--<gw>--cert--<secret>; type VIRTUALSERVICE, PEM.
-- Key material never appears in a diagnostic.

local avi = import("lib/avi")

local M = {}

local function pem_pair(secret, rt)
  local data = secret.data or {}
  local pairs_to_try = { { "tls.crt", "tls.key" }, { "cert", "key" } }
  for _, p in ipairs(pairs_to_try) do
    local c, k = data[p[1]], data[p[2]]
    if type(c) == "string" and type(k) == "string" then
      return rt.base64_decode(c), rt.base64_decode(k), p
    end
  end
  return nil
end

-- The SSLKeyAndCertificate `name` from `secret`: its name, or nil after
-- reporting why (on the Gateway, at `field`).
local function certificate_of(ctx, secret, credential, field, name)
  local gw = ctx.gateway
  local cert, key, keys = pem_pair(secret, ctx.rt)
  if not keys then
    ctx.out:error(gw, field, string.format(
      "Secret %s/%s has neither tls.crt/tls.key nor cert/key; the server " ..
      "is not served", ctx.gw_ns, credential))
    return nil
  end
  if not cert or not key or not cert:find("-----BEGIN", 1, true) or
     not key:find("-----BEGIN", 1, true) then
    ctx.out:error(gw, field, string.format(
      "Secret %s/%s: %s/%s are not base64-encoded PEM; the server is not " ..
      "served", ctx.gw_ns, credential, keys[1], keys[2]))
    return nil
  end
  avi.emit(ctx, "sslkeyandcertificate", {
    name = name,
    type = "SSL_CERTIFICATE_TYPE_VIRTUALSERVICE",
    format = "SSL_PEM",
    certificate = { certificate = cert },
    key = key,
  })
  return name
end

-- Returns the name of the SSLKeyAndCertificate for the Secret
-- `credential` (emitting it once), or nil after reporting why.
-- `field` is the diagnostic path of the credentialName.
-- Memoized (rt.memo) on the Secret: a Gateway translated again after a
-- route change replays the certificate instead of decoding and encoding
-- the key material again.
function M.certificate(ctx, credential, field)
  local rt, gw = ctx.rt, ctx.gateway
  local name = ctx.name("cert", credential)
  if avi.emitted(ctx, "sslkeyandcertificate", name) then
    return name
  end
  local secret = rt.get("Secret", ctx.gw_ns, credential)
  if not secret then
    ctx.out:error(gw, field, string.format(
      "Secret %s/%s not found; the server is not served", ctx.gw_ns,
      credential))
    return nil
  end
  -- (the key names the arguments that are not inputs; `name` follows
  -- from the Gateway and `credential`)
  return rt.memo(ctx, { secret }, "certificate " .. credential .. " " .. field,
    certificate_of, ctx, secret, credential, field, name)
end

return M
