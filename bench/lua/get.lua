-- A plain GET of the URL on wrk's command line.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
