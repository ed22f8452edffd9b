-- wrk script for the serving benchmark: POST one-image b64 PNG `:predict` bodies, rotating over the
-- distinct images, and print the result as one JSON line from done().
-- Run: wrk -t1 -cC -dDs --latency -s bench/serving_wrk.lua URL -- BODIES_FILE
-- BODIES_FILE holds one JSON request body per line (written by bench/serving_bench.py).

local requests = {}
local next_index = 1
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
end

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk ... -s serving_wrk.lua URL -- BODIES_FILE")
  end
  local headers = { ["Content-Type"] = "application/json" }
  for line in io.lines(path) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", nil, headers, line)
    end
  end
  if #requests == 0 then
    error("no request bodies in " .. path)
  end
  -- threads start at different images so they do not all send the same one
  next_index = ((thread_id or 1) - 1) % #requests + 1
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end

function done(summary, latency, requests_)
  local e = summary.errors
  local failed = e.connect + e.read + e.write + e.status + e.timeout
  local seconds = summary.duration / 1e6
  local ok = summary.requests - e.status - e.timeout
  if ok < 0 then ok = 0 end
  io.write(string.format(
    '{"requests": %d, "ok": %d, "errors": %d, "seconds": %.6f, "images_per_s": %.3f, ' ..
    '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, ' ..
    '"errors_detail": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, ok, failed, seconds, ok / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.connect, e.read, e.write, e.status, e.timeout))
end
