-- wrk script for the ingest scenario: POST the body in $BENCH_BODY_FILE with the API key in
-- $BENCH_KEY, count 202 answers, and print one JSON line of figures at the end.
local body_file = os.getenv("BENCH_BODY_FILE")
local key = os.getenv("BENCH_KEY") or ""
local f = assert(io.open(body_file, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  accepted = 0
  other = 0
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local a, o = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    o = o + t:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    '{"accepted": %d, "other": %d, "errors": %d, "duration": %.6f, "p50_ms": %.3f, "p99_ms": %.3f}\n',
    a, o, e.connect + e.read + e.write + e.timeout, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
