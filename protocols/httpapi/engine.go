package httpapi

import "github.com/ocs-engine/ocs/charging"

// Engine executes commands. *actors.Engine implements it; tests use fakes.
type Engine interface {
	// Execute runs cmd on its subscriber's actor and returns once the
	// outcome is durable. A business refusal is an Outcome; an error means
	// the engine could not answer (stopping, timed out): nothing is known
	// and the caller retries with the same request key.
	Execute(cmd *charging.Command) (charging.Outcome, error)
	// History returns up to limit journal entries of id with Seq <
	// beforeSeq (0: newest first).
	History(id charging.SubscriberID, beforeSeq uint64, limit int) ([]charging.Entry, error)
	// Totals returns the ledger totals.
	Totals() charging.Totals
	// Ready reports whether the engine accepts work.
	Ready() bool
}

// Role is what an API key may do.
type Role uint8

const (
	RoleNetwork Role = 1 // network elements: Nchf charging
	RoleChannel Role = 2 // sales channels: TMF654 top-up and balance
	RoleOps     Role = 3 // operations: provisioning, adjustment, history, keys
)

// Keys authenticates bearer tokens and issues new ones.
type Keys interface {
	// Role returns the role of token, or false if it is no valid key.
	Role(token []byte) (Role, bool)
	// Issue creates a key for role and returns the token, shown only once.
	Issue(role Role) (string, error)
}
