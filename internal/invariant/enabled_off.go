//go:build !invariants

package invariant

// Enabled reports whether expensive checks run (build tag invariants).
const Enabled = false
