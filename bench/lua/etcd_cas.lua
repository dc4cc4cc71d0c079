-- etcd compare-and-swap writes: POST /v3/kv/txn comparing the key's value with the one it
-- holds (A or B) and, if equal, putting the other. Each wrk thread owns a disjoint slice of the
-- keys and walks it round-robin, as floe_move.lua does for datasets. A txn whose compare fails
-- answers 200 with "succeeded": false; those are counted as failures (cfail).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local data = dofile(os.getenv("BENCH_ETCD"))
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  keys, at_b, pos = {}, {}, 0
  for i = 1 + tid, #data.keys, nthreads do
    table.insert(keys, data.keys[i])
    table.insert(at_b, false)
  end
  -- wrk calls request() once in the first thread's state to check the script, and never
  -- sends that request: it must not advance the round.
  dry_run = tid == 0
end

function request()
  local p = pos % #keys + 1
  local from_b = at_b[p]
  if dry_run then
    dry_run = false
  else
    pos = p
    at_b[p] = not from_b
  end
  local now, next = data.a, data.b
  if from_b then now, next = data.b, data.a end
  local key = keys[p]
  local body = '{"compare": [{"key": "' .. key .. '", "result": "EQUAL", "target": "VALUE", '
    .. '"value": "' .. now .. '"}], "success": [{"requestPut": {"key": "' .. key
    .. '", "value": "' .. next .. '"}}]}'
  return wrk.format("POST", "/v3/kv/txn", headers, body)
end

function response(status, headers, body)
  count_status(status)
  if status == 200 and not body:find('"succeeded":true', 1, true) then
    cfail = (cfail or 0) + 1
  end
end
