-- etcd reads: POST /v3/kv/range of a random key among those `bench_load etcd` wrote
-- (BENCH_ETCD names its data file). Default (linearizable) reads.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local data = dofile(os.getenv("BENCH_ETCD"))
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  math.randomseed(os.time() + tid * 7919)
end

function request()
  local key = data.keys[math.random(1, #data.keys)]
  return wrk.format("POST", "/v3/kv/range", headers, '{"key": "' .. key .. '"}')
end

function response(status, headers, body)
  count_status(status)
end
