-- Scratch-card redemptions over the USSD gateway endpoint, one distinct card
-- per request (`*123*CODE#` for the caller), as wrk's load: a lean C
-- generator, so that more of the two shared cores is the server's.
--
--   CARDS=batch.csv NETKEY=<network key> SUBS=256 \
--     wrk -t2 -c192 -d15s --latency -s bench/testdata/wrk-redeem.lua http://127.0.0.1:18095
--
-- CARDS is the printer's CSV of `ocs vouchers generate` (serial,code,...);
-- thread t of n takes every n-th card from the t-th, so no card is dialled
-- twice. SUBS subscribers 0445 00001 … must be provisioned (the caller of
-- card i is the i-th modulo SUBS). Every answer that is not a success
-- counts as a failure; done() prints them, and a run that ran out of cards
-- says so: its rate is then not a measurement.
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
  table.insert(threads, thread)
end

function init(args)
  cards, next_card, failures, exhausted = {}, 0, 0, 0
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "2")
  local f = assert(io.open(os.getenv("CARDS") or "cards.csv"))
  f:read("*l") -- header
  local i = 0
  for line in f:lines() do
    if i % nthreads == tid then
      cards[#cards + 1] = line:match("^[^,]*,([^,]*),")
    end
    i = i + 1
  end
  f:close()
  subs = tonumber(os.getenv("SUBS") or "256")
  auth = "Bearer " .. (os.getenv("NETKEY") or "")
end

request = function()
  next_card = next_card + 1
  local code = cards[next_card]
  if code == nil then
    exhausted = exhausted + 1
    code = "0000000000000000"
  end
  local phone = string.format("0445%05d", (next_card % subs) + 1)
  local body = "sessionId=w" .. tid .. "-" .. next_card .. "&serviceCode=%2A123%2A" .. code ..
    "%23&phoneNumber=" .. phone .. "&networkCode=29341&text="
  return wrk.format("POST", "/ussd", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = auth,
  }, body)
end

response = function(status, headers, body)
  if status ~= 200 or body:sub(1, 18) ~= "END Mbushja u krye" then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local failed, out = 0, 0
  for _, t in ipairs(threads) do
    failed = failed + t:get("failures")
    out = out + t:get("exhausted")
  end
  io.write(string.format("redemptions: %d answered, %d not a success, %d past the cards\n",
    summary.requests, failed, out))
end
