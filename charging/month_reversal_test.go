package charging

// A transfer debited on 31 January and reversed on 1 February left
// February's spending at -2.10: CreditBack took the reversal off this
// month's counter whatever month the debit was in. Found by the money-path
// audit.

import (
	"testing"
	"time"
)

func TestReversalInNextMonthKeepsSpentNonNegative(t *testing.T) {
	cfg := DemoConfig()
	jan := time.Date(2026, 1, 31, 23, 59, 59, 0, time.UTC)
	feb := jan.Add(2 * time.Second)
	a := Account{ID: 38349000001, Balance: Euros(10), ValidUntil: jan.Add(Days(30)).Unix()}
	var eff Effect
	if r := a.DebitFor(&cfg, Euros(2)+10*AmountPerCent, EntryTransferOut, 1, jan, &eff); r != ResultOK {
		t.Fatalf("debit: %v", r)
	}
	if r := a.CreditBack(Euros(2)+10*AmountPerCent, EntryTransferIn, 1, feb, &eff); r != ResultOK {
		t.Fatalf("reversal: %v", r)
	}
	if a.Month.Spent != 0 {
		t.Fatalf("month %d spent %v after reversing last month's debit", a.Month.Month, a.Month.Spent)
	}
}
