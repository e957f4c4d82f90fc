package charging

import (
	"testing"
	"time"
)

// A session's usage is bounded by UnitsMax in total, so that its cost stays
// exact: an absurd report takes the whole balance, and a report past the
// bound is refused, never rated as free.
func TestSessionUsageIsBoundedAndNeverFree(t *testing.T) {
	cfg := DemoConfig()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := Account{ID: 38349000001, Balance: Euros(10), ValidUntil: now.Add(Days(30)).Unix()}
	out, _ := a.Apply(&cfg, &Command{Kind: KindReserve, Key: "r", RatingGroup: RatingGroupVoice, Units: 60}, now)
	if out.Result != ResultOK {
		t.Fatalf("reserve: %v", out.Result)
	}
	session := out.Session
	out, _ = a.Apply(&cfg, &Command{Kind: KindUpdate, Key: "u1", Session: session, Used: UnitsMax}, now)
	if a.Balance != 0 {
		t.Fatalf("usage beyond any balance left %v", a.Balance)
	}
	a.Apply(&cfg, &Command{Kind: KindTopUp, Key: "t", Channel: ChannelElectronic, Amount: Euros(5)}, now)
	out, _ = a.Apply(&cfg, &Command{Kind: KindTerminate, Key: "u2", Session: session, Used: 60}, now)
	if out.Result != ResultUnitsAboveMaximum {
		t.Fatalf("usage past UnitsMax in one session: %v, want units_above_maximum", out.Result)
	}
	if a.Balance != Euros(5) {
		t.Fatalf("a refused report changed the balance to %v", a.Balance)
	}
}
