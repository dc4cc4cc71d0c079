-- Shared by every bench/lua script: per-thread ids, status counting, and a one-line
-- machine-readable summary (the "BENCH" line bench/run parses) printed after wrk's own.
-- Environment: BENCH_THREADS (wrk -t, so each thread can pick its own slice of the data).

threads = {}
nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

-- Counts answers that are not 2xx, per thread (412 apart); scripts count other failures in cfail.
function count_status(status)
  if status == 412 then
    c412 = (c412 or 0) + 1
  elseif status < 200 or status > 299 then
    cother = (cother or 0) + 1
  end
end

function done(summary, latency, requests)
  local c412, cother, cfail = 0, 0, 0
  for _, t in ipairs(threads) do
    c412 = c412 + (t:get("c412") or 0)
    cother = cother + (t:get("cother") or 0)
    cfail = cfail + (t:get("cfail") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d mean_us=%.1f max_us=%d "
      .. "non2xx=%d sockerr=%d c412=%d cother=%d cfail=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    e.status, e.connect + e.read + e.write + e.timeout, c412, cother, cfail))
end
