-- Workloads bench/run adds to the shared yardstick (../shared/bench/wrk/bench.lua).
--
-- The shared script is loaded first (BENCH_LUA = its path), so thread ids, random seeding,
-- the bearer token (TOKEN) and the one machine-readable line printed when wrk is done
--   RESULT <MODE> rps=… p50_ms=… p99_ms=… requests=… non2xx=… sockerr=…
-- are exactly the shared script's; only request() is replaced here. Env:
--   MODE=login      POST /api/v1/auth/login as user<i>@bench.test, i uniform in
--                   LOGIN_FIRST..LOGIN_LAST, with PASSWORD (the seeded users' password).
--   MODE=patch-ids  PATCH /api/v1/users/<id>, id uniform among IDS (comma-separated),
--                   with the shared script's PATCH body.
dofile(assert(os.getenv("BENCH_LUA"), "BENCH_LUA (path of the shared bench.lua) not set"))

local extra_mode = os.getenv("MODE")

if extra_mode == "login" then
  local first = tonumber(os.getenv("LOGIN_FIRST") or "2")
  local last = tonumber(os.getenv("LOGIN_LAST") or "100000")
  local password = os.getenv("PASSWORD") or "bench-password"
  -- No Authorization header: login is what an anonymous client calls.
  local headers = { ["Content-Type"] = "application/json" }
  function request()
    return wrk.format("POST", "/api/v1/auth/login", headers, string.format(
      '{"email":"user%d@bench.test","password":"%s"}', math.random(first, last), password))
  end
elseif extra_mode == "patch-ids" then
  local ids = {}
  for id in string.gmatch(os.getenv("IDS") or "", "%d+") do
    ids[#ids + 1] = id
  end
  assert(#ids > 0, "IDS (comma-separated user ids) not set")
  function request()
    return wrk.format("PATCH", "/api/v1/users/" .. ids[math.random(1, #ids)], nil,
      '{"first_name":"F' .. math.random(1, 1000000) .. '","last_name":"Patched"}')
  end
else
  error("extra.lua: unknown MODE " .. tostring(extra_mode) .. " (login | patch-ids)")
end
