// Package httpapi serves the engine over HTTP (fasthttp): a thin translator
// from the wire to a charging.Command, through Engine.Execute, back to the
// wire. It holds no business rules and no state besides pools and metrics.
//
// Three interfaces share one port, each for one API-key role
// (`Authorization: Bearer <key>`, resolved by Keys):
//
//   - Nchf_ConvergedCharging in the shape of 3GPP TS 32.291 for network
//     elements (role network): POST /nchf-convergedcharging/v3/chargingdata
//     (an immediate event charge when oneTimeEvent, else a session with a
//     reservation, 201 + Location), …/{ref}/update (200), …/{ref}/release
//     (204). One multipleUnitUsage item (one rating group) per request in
//     this version.
//   - TMF654 Prepay Balance Management for sales channels (role channel):
//     topupBalance, bucket; adjustBalance for ops.
//   - Ops (role ops): /v1/subscribers/{msisdn} (PUT provisions, GET reads),
//     …/transactions, …/refunds (also network), /v1/ledger, /v1/apikeys;
//     /healthz, /readyz, /openapi.json and /metrics need no key.
//
// openapi.json (embedded, served at /openapi.json) is the reference; a test
// keeps it and the router in step, route by route and role by role.
//
// # Conventions
//
// Refusals: every refusal is an RFC 9457 problem document with a stable
// `code` (a charging.Result name or a decoder code such as malformed_json,
// unknown_field, invalid_msisdn, missing_idempotency_key) and a `detail`
// sentence, and changes nothing. Decoder refusals never reach the engine.
// Business Results map to HTTP statuses in one table (resultTable); on Nchf
// the problem also carries the TS 32.291 / TS 29.500 `cause`. The one
// deliberate exception is an Nchf update: its usage report is debited
// before more quota is asked for, so a refusal to grant more is answered
// 200 with the per-unit resultCode (QUOTA_LIMIT_REACHED, …), as TS 32.291
// does. Overloaded and engine errors are 503 with Retry-After.
//
// Idempotency: every mutating request carries a request key: the
// Idempotency-Key header (required on TMF and refunds); on Nchf create the
// header or nFName|invocationTimeStamp|invocationSequenceNumber; on Nchf
// update/release "<ref>/<invocationSequenceNumber>"; on provisioning
// "provision/<msisdn>". The engine answers a retry with the original outcome
// and a reused key with another payload with request_key_reused (409).
//
// Amounts are exact: read from the JSON text of a number or a string with
// charging.ParseAmount (never through a float: 1e1 and 5.00001 are
// refused), written with Amount.AppendText: as strings ("12.50"), except
// inside TMF Money objects, whose schema types amount as a number.
//
// Unknown fields: ignored on Nchf (TS 29.500 forward compatibility: an SMF
// sends much we do not rate on), refused on TMF and ops (a typo such as
// "ammount", or a TMF feature we do not implement, must not be silently
// ignored), except TMF's @-metadata.
//
// # Performance
//
// The SMS event charge is the hot path (60,000 req/s on 2 cores leaves
// about 15 µs of CPU per request for everything). Per request the handler
// takes one pooled reqState (fastjson parser, Command, output buffer),
// routes by a linear scan over a dozen patterns without allocating, reads
// fields with fastjson, builds the response by appending into the buffer
// (no encoding/json, no fmt) and allocates only the request-key string the
// Command must own. Metrics children are pre-created and indexed by array;
// a nil Registerer costs one nil check.
//
// Concurrency: Server is safe for concurrent use; reqState is per request.
// Engine.Execute must not keep the *Command after it returns (the state is
// reused); on an Execute error the state is dropped, not reused.
package httpapi
