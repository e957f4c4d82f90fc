package charging

import (
	"testing"
	"time"
)

// A session whose cumulative usage already costs more than any balance must
// not turn further usage free: the capped costs' difference is zero.
func TestUsageBeyondTheCostCapIsNeverFree(t *testing.T) {
	cfg := DemoConfig()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := Account{ID: 38349000001, Balance: Euros(10), ValidUntil: now.Add(Days(30)).Unix()}
	out, _ := a.Apply(&cfg, &Command{Kind: KindReserve, Key: "r", RatingGroup: RatingGroupVoice, Units: 60}, now)
	if out.Result != ResultOK {
		t.Fatalf("reserve: %v", out.Result)
	}
	// The network reports an absurd usage first (beyond the cap) ...
	out, _ = a.Apply(&cfg, &Command{Kind: KindUpdate, Key: "u1", Session: out.Session, Used: UnitsMax}, now)
	if a.Balance != 0 {
		t.Fatalf("usage beyond any balance left %v", a.Balance)
	}
	// ... then the subscriber is topped up and the session reports more.
	a.Apply(&cfg, &Command{Kind: KindTopUp, Key: "t", Channel: ChannelElectronic, Amount: Euros(5)}, now)
	a.Apply(&cfg, &Command{Kind: KindTerminate, Key: "u2", Session: out.Session, Used: 60}, now)
	if a.Balance == Euros(5) {
		t.Fatal("usage after the cost cap was free")
	}
}
