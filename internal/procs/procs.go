// Package procs sets how many Go processors (Ps) a server runs with.
//
// The engine's commit path blocks in fdatasync: Pebble's write-ahead log
// syncs from one goroutine, and every acknowledged write waits for it. A
// goroutine that blocks in a system call gives up its P; when the call
// returns it needs a P again, and with GOMAXPROCS equal to the CPUs, on a
// loaded server every P is busy running request handlers: the syncing
// goroutine waits in the global run queue, which the scheduler looks at
// only every 61st turn, while every request of the batch waits for it.
// Measured on the 2-CPU machine of BENCHMARKS.md under the redemption
// benchmark: fdatasync took 0.9 ms on average and was busy 20% of the time,
// yet a batch took 3 ms from apply to durable; with two more Ps than CPUs
// the same build served 7–9% more redemptions a second (three pairs run at
// the same time, against the same build at the runtime's default) at the
// same CPU per redemption. The extra Ps let the returning goroutine run at
// once; the kernel time-slices the threads.
package procs

import (
	"runtime"
	"strconv"
)

// Extra is how many Ps beyond the runtime's default (the CPUs the process
// may use) a server runs with: enough for the goroutines that return from
// a sync while all the others are busy, few enough that a many-core
// machine does not run far more threads than CPUs.
const Extra = 2

// Set raises GOMAXPROCS by Extra unless the GOMAXPROCS environment
// variable is set (the operator's choice, which the runtime has applied
// already). It returns the value in force and where it came from, for the
// start-up log. Like any runtime.GOMAXPROCS call it ends the runtime's own
// updates when a container's CPU limit changes: a restart picks up a new
// limit.
func Set(getenv func(string) string) (n int, from string) {
	if v := getenv("GOMAXPROCS"); v != "" {
		return runtime.GOMAXPROCS(0), "GOMAXPROCS=" + strconv.Quote(v)
	}
	n = runtime.GOMAXPROCS(0) + Extra
	runtime.GOMAXPROCS(n)
	return n, "CPUs + " + strconv.Itoa(Extra)
}
