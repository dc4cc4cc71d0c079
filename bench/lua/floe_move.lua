-- Conditional moves: each request moves one dataset from its current primary to the other,
-- with the If-Match of the state it is in. BENCH_MOVES names a file written by
-- `bench_load movable`; each wrk thread owns a disjoint slice of its datasets and walks it
-- round-robin, so a dataset is never moved by two requests at once and 412s stay absent.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local data = dofile(os.getenv("BENCH_MOVES"))

function init(args)
  items, at_b, pos = {}, {}, 0
  for i = 1 + tid, #data.items, nthreads do
    table.insert(items, data.items[i])
    table.insert(at_b, false)
  end
  bodies = { a = '{"primary": "' .. data.a .. '"}', b = '{"primary": "' .. data.b .. '"}' }
  -- wrk calls request() once in the first thread's state to check the script, and never
  -- sends that request: it must not advance the round.
  dry_run = tid == 0
end

function request()
  local p = pos % #items + 1
  local item = items[p]
  local from_b = at_b[p]
  if dry_run then
    dry_run = false
  else
    pos = p
    at_b[p] = not from_b
  end
  local headers = {
    ["Content-Type"] = "application/json",
    ["If-Match"] = from_b and item[3] or item[2],
  }
  return wrk.format("POST", "/v1/configuration/datasets/" .. item[1], headers,
    from_b and bodies.a or bodies.b)
end

function response(status, headers, body)
  count_status(status)
end
