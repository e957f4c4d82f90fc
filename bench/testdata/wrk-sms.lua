-- One SMS event charge per request, each with its own Idempotency-Key,
-- spread over 100,000 provisioned subscribers.
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end
function init(args)
  counter = 0
end
request = function()
  counter = counter + 1
  local sub = 38349000000 + ((tid * 7919 + counter * 104729) % 100000)
  local body = '{"subscriberIdentifier":"msisdn-' .. sub .. '","oneTimeEvent":true,"oneTimeEventType":"IEC","invocationSequenceNumber":1,"invocationTimeStamp":"2026-11-22T01:00:00Z","nfConsumerIdentification":{"nFName":"smsf-1","nodeFunctionality":"SMSF"},"multipleUnitUsage":[{"ratingGroup":2,"requestedUnit":{"serviceSpecificUnits":1}}]}'
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. (os.getenv("NETKEY") or "")
  headers["Idempotency-Key"] = "wrk-" .. tid .. "-" .. counter
  return wrk.format("POST", "/nchf-convergedcharging/v3/chargingdata", headers, body)
end
