// Package invariant checks conditions that only a programming error can break.
//
// Check takes a constant message rather than a format so that a passing check
// costs one branch and no allocation on the charging hot path (an
// assertf(ok, format, args...) boxes its arguments on every call).
package invariant

// Check panics with msg when ok is false.
func Check(ok bool, msg string) {
	if !ok {
		panic("invariant violated: " + msg)
	}
}
