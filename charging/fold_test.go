package charging_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
)

// TestFoldsToHotPath: the commands that make up peak traffic (an SMS, an
// electronic top-up, a transfer's credit), including the first of a new
// month, need no account record: their journal entry folds to the account.
// If this fails the engine still works, but writes a record per charge.
func TestFoldsToHotPath(t *testing.T) {
	cfg := charging.DemoConfig()
	now := time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC)
	a, _, _ := charging.NewAccount(&cfg, &charging.Command{Kind: charging.KindProvision, Subscriber: 38349123456,
		Amount: charging.Euros(20)}, now)
	cmds := []charging.Command{
		{Kind: charging.KindCharge, RatingGroup: charging.RatingGroupSMS, Units: 1, Channel: charging.ChannelNetwork},
		{Kind: charging.KindTopUp, Amount: charging.Euros(5), Channel: charging.ChannelElectronic},
		{Kind: charging.KindTopUp, Amount: charging.Euros(2), Channel: charging.ChannelTransfer},
	}
	for month := 0; month < 2; month++ {
		for i := range cmds {
			prev := a
			out, eff := a.Apply(&cfg, &cmds[i], now)
			if out.Result != charging.ResultOK || eff.Entry.Seq == 0 {
				t.Fatalf("%v: %v, entry %d", cmds[i].Kind, out.Result, eff.Entry.Seq)
			}
			if !prev.FoldsTo(&eff.Entry, &a) {
				t.Errorf("%v in %s: the entry does not fold to the account", cmds[i].Kind, now.Format("2006-01"))
			}
		}
		now = now.Add(2 * time.Minute) // into December: the month counters restart
	}
}

// TestFoldsToRefuses: with a reservation open, or for a command whose
// effect Fold does not know, the account record must be written.
func TestFoldsToRefuses(t *testing.T) {
	cfg := charging.DemoConfig()
	now := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	a, _, _ := charging.NewAccount(&cfg, &charging.Command{Kind: charging.KindProvision, Subscriber: 38349123456,
		Amount: charging.Euros(20)}, now)

	prev := a
	_, eff := a.Apply(&cfg, &charging.Command{Kind: charging.KindAdjust, Amount: charging.Euros(1),
		Reason: "goodwill", Channel: charging.ChannelOps}, now)
	if eff.Entry.Seq == 0 || prev.FoldsTo(&eff.Entry, &a) == (a.Month != prev.Month) {
		t.Errorf("adjustment: FoldsTo must hold exactly when the month counters are unchanged")
	}

	_, eff = a.Apply(&cfg, &charging.Command{Kind: charging.KindReserve, RatingGroup: charging.RatingGroupVoice,
		Units: 60, Channel: charging.ChannelNetwork}, now)
	if !eff.Dirty || len(a.Reservations) != 1 {
		t.Fatalf("reserve: dirty %v, %d reservations", eff.Dirty, len(a.Reservations))
	}
	prev = a
	_, eff = a.Apply(&cfg, &charging.Command{Kind: charging.KindCharge, RatingGroup: charging.RatingGroupSMS,
		Units: 1, Channel: charging.ChannelNetwork}, now)
	if eff.Entry.Seq == 0 {
		t.Fatal("the SMS was not charged")
	}
	if prev.FoldsTo(&eff.Entry, &a) {
		t.Error("an account holding a reservation folded: its record must always be written")
	}
}

// TestAccountFieldsKnownToFoldsTo: FoldsTo compares every field of
// Account; a new field must be added there (or the engine could skip a
// record that holds it).
func TestAccountFieldsKnownToFoldsTo(t *testing.T) {
	if n := reflect.TypeOf(charging.Account{}).NumField(); n != 8 {
		t.Fatalf("Account has %d fields; FoldsTo compares 8: compare the new one, then update this test", n)
	}
}
