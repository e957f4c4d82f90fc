// Package actors runs one Proto.Actor actor per active subscriber, owning
// its charging.Account in memory, and makes every accepted change durable
// through one shared committer before anyone is told.
//
// The path of a command (DESIGN.md has the measurements behind each choice):
//
//	Execute ─▶ directory shard (get or spawn, send under the shard lock)
//	        ─▶ subscriber actor: idempotency check, charging.Apply
//	        ─▶ committer: group commit of many actors' changes, pebble.Sync
//	        ─▶ reply to the caller's pooled reply slot
//
// Invariants:
//   - an Outcome reaches its caller only after every change it depends on is
//     durable: replies leave through the committer, in submission order, even
//     replies that wrote nothing, when their actor has writes in flight;
//   - a commit error stops the engine (Failed is closed): what was
//     acknowledged is always a prefix of what is on disk;
//   - work in flight is bounded by Config.InflightMax; past it Execute answers
//     ResultOverloaded at once, so memory stays bounded under any load;
//   - an actor is passivated only when idle with nothing in flight and no
//     open reservation, under its shard lock, so no message can race it.
//
// Concurrency: Execute, History and Totals are safe from any goroutine.
// Inside an actor everything is single-threaded. The committer is one
// goroutine; it shares with each actor only an atomic count of that actor's
// durable changes.
package actors
