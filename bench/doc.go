// Package bench is the load generator of the charging engine: a library
// (Config plus Run, Provision, Audit, Report) that drives a running engine
// over its real HTTP interface, and a ceiling server (Limit) that answers the
// same requests with nothing but an in-memory update and the engine's durable
// write pattern, so every figure can be stated as a fraction of what this
// machine can do at all.
//
// It is a black box over the wire: it imports no engine package except
// charging, for exact amounts and the demo tariff the audit prices usage
// with.
//
// Open loop (Config.Rate > 0): request i is scheduled at start + i/Rate,
// computed from the start time and never accumulated, and its latency is
// measured from that scheduled time, so a slow server cannot hide its queue
// (no coordinated omission). A bounded pool of workers claims scheduled
// slots; when all are busy the backlog shows up as latency. Closed loop
// (Rate == 0): Concurrency callers send back to back, to find the maximum
// throughput.
//
// Every run is audited: the ledger total before and after, balances of a
// sample of touched subscribers and the histories of acknowledged top-ups
// must agree with what the server acknowledged, to the 1/10,000 EUR.
package bench
