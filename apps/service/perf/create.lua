-- wrk script: createRecord for did:plc:lg00..lg49 (dev auth), boundary general of did:web:localhost%3A3100.
local n = 0
request = function()
  n = n + 1
  local i = n % 50
  local did = string.format("did:plc:lg%02d", i)
  local body = '{"repo":"' .. did .. '","collection":"zone.stratos.feed.post","record":{"$type":"zone.stratos.feed.post","text":"load ' .. n .. '","boundary":{"$type":"zone.stratos.boundary.defs#Domains","values":[{"value":"did:web:localhost%3A3100/general"}]},"createdAt":"2026-11-25T09:00:00.000Z"}}'
  return wrk.format("POST", "/xrpc/com.atproto.repo.createRecord", {["authorization"] = "Bearer " .. did, ["content-type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("errors: status=%d connect=%d read=%d timeout=%d\n", summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.timeout))
  for _, p in pairs({50, 95, 99}) do io.write(string.format("p%d %.2f ms\n", p, latency:percentile(p) / 1000)) end
end
