package charging

// A session reports at most UnitsMax units in all (update and terminate
// refuse more), so a grant that went past that bound could be used and
// never charged: about 1.1 TB of data per session at the demo tariff.
// Found by the money-path audit; grant now stops at the bound.

import (
	"testing"
	"time"
)

func TestGrantNeverExceedsSessionBound(t *testing.T) {
	cfg := DemoConfig()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := Account{ID: 38349000001, Balance: Euros(5000), ValidUntil: now.Add(Days(30)).Unix()}
	out, _ := a.Apply(&cfg, &Command{Kind: KindReserve, Key: "r", RatingGroup: RatingGroupData, Units: UnitsMax}, now)
	if out.Result != ResultOK || out.Granted != UnitsMax {
		t.Fatalf("reserve: %v granted %d", out.Result, out.Granted)
	}
	s := out.Session
	const left = 100 << 20 // 100 MiB: enough to cost money at the demo tariff
	out, _ = a.Apply(&cfg, &Command{Kind: KindUpdate, Key: "u1", Session: s, Used: UnitsMax - left, Units: UnitsMax}, now)
	if out.Result != ResultOK {
		t.Fatalf("update: %v", out.Result)
	}
	granted := out.Granted
	if granted != left || !out.FinalUnit {
		t.Fatalf("update granted %d (final %v), want the %d units left, as the final unit", granted, out.FinalUnit, left)
	}
	before := a.Balance
	out, _ = a.Apply(&cfg, &Command{Kind: KindTerminate, Key: "t", Session: s, Used: granted}, now)
	if out.Result != ResultOK {
		t.Fatalf("terminate reporting the %d units granted: %v (granted units can never be charged)", granted, out.Result)
	}
	if a.Balance >= before {
		t.Fatalf("granted usage not charged: balance %v before %v", a.Balance, before)
	}
}
