package procs

import (
	"runtime"
	"testing"
)

func TestSetLeavesTheOperatorsChoice(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })

	n, from := Set(func(k string) string {
		if k == "GOMAXPROCS" {
			return "1"
		}
		return ""
	})
	if n != before || runtime.GOMAXPROCS(0) != before {
		t.Fatalf("GOMAXPROCS set in the environment: got %d (runtime %d), want %d untouched", n, runtime.GOMAXPROCS(0), before)
	}
	if from != `GOMAXPROCS="1"` {
		t.Fatalf("from = %q", from)
	}

	n, _ = Set(func(string) string { return "" })
	if n != before+Extra || runtime.GOMAXPROCS(0) != before+Extra {
		t.Fatalf("got %d (runtime %d), want %d", n, runtime.GOMAXPROCS(0), before+Extra)
	}
}
