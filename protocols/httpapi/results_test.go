package httpapi

import (
	"testing"

	"github.com/ocs-engine/ocs/charging"
)

// Every Result the engine can answer has a row in the one mapping table: a
// Result appended to charging without one would reach clients as a 500.
// Refusals are never a 2xx, and only success is.
func TestEveryResultHasAWireMapping(t *testing.T) {
	for _, r := range charging.Results() {
		w := wireOf(r)
		switch {
		case w.status == 500:
			t.Errorf("%v has no row in resultTable", r)
		case r == charging.ResultOK && w.status != 200:
			t.Errorf("ok maps to %d", w.status)
		case r != charging.ResultOK && w.status < 400:
			t.Errorf("refusal %v maps to %d", r, w.status)
		}
	}
	if w := wireOf(0); w.status != 500 {
		t.Errorf("the invalid Result 0 maps to %d, want 500", w.status)
	}
}
