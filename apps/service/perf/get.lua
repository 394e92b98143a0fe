-- wrk script: getRecord as a viewer, rotating over paths listed one per line in PATHS_FILE
-- (default uris-paths.txt); VIEWER selects the dev-auth DID.
local paths = {}
for line in io.lines(os.getenv("PATHS_FILE") or "uris-paths.txt") do paths[#paths + 1] = line end
local n = 0
local viewer = os.getenv("VIEWER") or "did:plc:lgviewer"
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1], {["authorization"] = "Bearer " .. viewer})
end
done = function(summary, latency, requests)
  io.write(string.format("errors: status=%d connect=%d read=%d timeout=%d\n", summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.timeout))
  for _, p in pairs({50, 95, 99}) do io.write(string.format("p%d %.2f ms\n", p, latency:percentile(p) / 1000)) end
end
