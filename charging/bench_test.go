package charging_test

import (
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
)

var benchNow = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

// benchAccount returns an active account with enough money for every
// iteration of a benchmark, so that the hot path, not a refusal, is timed.
func benchAccount(b *testing.B, cfg *charging.Config) charging.Account {
	b.Helper()
	a, out, _ := charging.NewAccount(cfg, &charging.Command{Kind: charging.KindProvision,
		Subscriber: 38349123456, Amount: charging.BalanceMax / 2,
		ValidUntil: benchNow.Add(charging.Days(365)).Unix()}, benchNow)
	if out.Result != charging.ResultOK {
		b.Fatalf("provision: %v", out.Result)
	}
	return a
}

// BenchmarkChargeEvent is the hot path of every SMS: it must not allocate.
func BenchmarkChargeEvent(b *testing.B) {
	cfg := charging.DemoConfig()
	a := benchAccount(b, &cfg)
	cmd := charging.Command{Kind: charging.KindCharge, Channel: charging.ChannelNetwork,
		Key: "sms-0001", Subscriber: a.ID, RatingGroup: charging.RatingGroupSMS, Units: 1}
	b.ReportAllocs()
	for b.Loop() {
		// b.Loop runs as many charges as fit in the bench time, more than
		// any balance pays for: refill before it runs out.
		if a.Balance < charging.Euros(1) {
			a.Balance = charging.BalanceMax
		}
		out, _ := a.Apply(&cfg, &cmd, benchNow)
		if out.Result != charging.ResultOK {
			b.Fatalf("charge: %v", out.Result)
		}
	}
}

// BenchmarkTopUp times an electronic top-up; the balance is reset when it
// nears its limit so that every iteration is accepted.
func BenchmarkTopUp(b *testing.B) {
	cfg := charging.DemoConfig()
	a := benchAccount(b, &cfg)
	a.Balance = 0
	cmd := charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelElectronic,
		Key: "topup-0001", Subscriber: a.ID, Amount: charging.Euros(10)}
	b.ReportAllocs()
	for b.Loop() {
		if a.Balance > charging.BalanceMax-charging.Euros(50) {
			a.Balance = 0
		}
		out, _ := a.Apply(&cfg, &cmd, benchNow)
		if out.Result != charging.ResultOK {
			b.Fatalf("topup: %v", out.Result)
		}
	}
}

// BenchmarkReserveUpdate times one update of an open voice session: report
// 30 s used and reserve 300 s more, the steady state of a call.
func BenchmarkReserveUpdate(b *testing.B) {
	cfg := charging.DemoConfig()
	a := benchAccount(b, &cfg)
	open := charging.Command{Kind: charging.KindReserve, Channel: charging.ChannelNetwork,
		Key: "call-0001/0", Subscriber: a.ID, RatingGroup: charging.RatingGroupVoice, Units: 300}
	out, _ := a.Apply(&cfg, &open, benchNow)
	if out.Result != charging.ResultOK {
		b.Fatalf("reserve: %v", out.Result)
	}
	upd := charging.Command{Kind: charging.KindUpdate, Channel: charging.ChannelNetwork,
		Key: "call-0001/1", Subscriber: a.ID, Session: out.Session, Used: 30, Units: 300}
	b.ReportAllocs()
	for b.Loop() {
		if a.Balance < charging.Euros(1000) {
			a.Balance = charging.BalanceMax / 2
		}
		out, _ := a.Apply(&cfg, &upd, benchNow)
		if out.Result != charging.ResultOK {
			b.Fatalf("update: %v", out.Result)
		}
	}
}

// BenchmarkReserveTerminate times opening and closing a session, which
// appends to and removes from Reservations.
func BenchmarkReserveTerminate(b *testing.B) {
	cfg := charging.DemoConfig()
	a := benchAccount(b, &cfg)
	open := charging.Command{Kind: charging.KindReserve, Channel: charging.ChannelNetwork,
		Key: "call-0001/0", Subscriber: a.ID, RatingGroup: charging.RatingGroupData, Units: 1_000_000}
	term := charging.Command{Kind: charging.KindTerminate, Channel: charging.ChannelNetwork,
		Key: "call-0001/1", Subscriber: a.ID, Used: 500_000}
	b.ReportAllocs()
	for b.Loop() {
		out, _ := a.Apply(&cfg, &open, benchNow)
		if out.Result != charging.ResultOK {
			b.Fatalf("reserve: %v", out.Result)
		}
		term.Session = out.Session
		if out, _ = a.Apply(&cfg, &term, benchNow); out.Result != charging.ResultOK {
			b.Fatalf("terminate: %v", out.Result)
		}
	}
}
