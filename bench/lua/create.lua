-- POST a dataset-create body with a fresh random v4 dataset_id to the URL on the command line
-- (floe's /v1/configuration/datasets, or the ceiling's /echo). BENCH_PRIMARY is the primary.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local primary = os.getenv("BENCH_PRIMARY") or "cf0f0346-17b2-4812-beca-1434997d6c3f"
local headers = { ["Content-Type"] = "application/json" }
local n = 0

function init(args)
  math.randomseed(os.time() * 1000 + tid * 7919 + math.floor(os.clock() * 1e6))
end

local function hex(digits)
  local s = ""
  for _ = 1, digits / 4 do
    s = s .. string.format("%04x", math.random(0, 65535))
  end
  return s
end

local function uuid4()
  return string.format("%s-%s-4%s-%x%s-%s", hex(8), hex(4), hex(4):sub(2),
    math.random(8, 11), hex(4):sub(2), hex(12))
end

function request()
  n = n + 1
  local body = '{"primary": "' .. primary .. '", "dataset_id": "' .. uuid4()
    .. '", "metadata": {"name": "wrk-' .. tid .. '-' .. n .. '", "tier": "gold"}}'
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  count_status(status)
end
