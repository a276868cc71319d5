-- wrk script: POST a different body per request, cycling through a file of bodies.
--
-- Environment (set by predict_load.py):
--   BENCH_BODIES   file with one request body per line
--   BENCH_PATH     request path, e.g. /api/v1/predict/<id>
--   BENCH_API_KEY  optional X-API-Key header
--   BENCH_OFFSET   where in the file to start (carried over between runs so that no row is
--                  sent twice within a server's result-cache horizon)
--   BENCH_OUT      where done() writes the summary and the latency histogram as JSON
--
-- wrk "corrects" its latency histogram for coordinated omission at the end of a run; the
-- histogram written here is that corrected one, and predict_load.py undoes the correction so
-- that percentiles are raw per-request values. Run with one thread (-t1): each thread has its
-- own copy of this state and would send the same sequence of rows.

local requests_ = {}
local n = 0
local i = 0

init = function(args)
  local path = os.getenv("BENCH_PATH")
  local key = os.getenv("BENCH_API_KEY")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if key ~= nil and key ~= "" then
    wrk.headers["X-API-Key"] = key
  end
  for line in io.lines(os.getenv("BENCH_BODIES")) do
    n = n + 1
    requests_[n] = wrk.format("POST", path, nil, line)
  end
  i = tonumber(os.getenv("BENCH_OFFSET") or "0") % n
end

request = function()
  i = i + 1
  if i > n then
    i = 1
  end
  return requests_[i]
end

done = function(summary, latency, requests)
  local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  local e = summary.errors
  out:write(string.format(
    '{"duration_us": %d, "requests": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d}, "hist": [',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout
  ))
  -- latency(k) is the k-th distinct value (microseconds) and how often it was seen.
  local k = 1
  local total = 0
  local target = latency.max
  while true do
    local value, count = latency(k)
    if count == 0 then
      break
    end
    if k > 1 then
      out:write(",")
    end
    out:write(string.format("[%d,%d]", value, count))
    total = total + count
    if value >= target then
      break
    end
    k = k + 1
  end
  out:write("]}\n")
  out:close()
end
