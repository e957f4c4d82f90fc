package httpapi

import (
	"time"

	"github.com/ocs-engine/ocs/charging"
)

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

// Backups takes and lists online backups of the database
// (storage.Backups, adapted by cmd/ocs). An Engine that also implements
// Backups serves /v1/backups; any other answers 503 there, so the
// engines that need no backups (benchmarks, fakes) are unchanged. The
// implementation chooses where a backup goes: a client never names a path
// on the server.
type Backups interface {
	// Take backs the database up into a new directory and returns it once
	// it is complete and verified. ErrBackupInProgress: another backup is
	// running; ErrBackupDir: the backup directory cannot be used.
	Take() (BackupInfo, error)
	// List returns the backups in the backup directory, newest first.
	List() ([]BackupInfo, error)
}

// BackupInfo describes one backup.
type BackupInfo struct {
	Name      string // the directory's base name, e.g. 20261122T041500Z
	Path      string // the directory, inside the configured backup directory
	CreatedAt time.Time
	Bytes     int64
	Duration  time.Duration // zero in a listing
}
