package charging

// Bank identifies the bank of an SMS Top Up (DOMAIN.md, seed 001). Stored in
// the journal and used as a metric label: never renumber, only append.
type Bank uint8

const (
	BankNone       Bank = 0
	BankEkonomike  Bank = 1 // Banka Ekonomike, 50005
	BankBiznes     Bank = 2 // Banka për Biznes, 50000
	BankNLB        Bank = 3 // NLB Prishtina, 50444
	BankRaiffeisen Bank = 4 // Raiffeisen Bank, 50222
	BankProCredit  Bank = 5 // ProCredit Bank, 50333
	BankTEB        Bank = 6 // TEB Bank, 50001
	bankCount           = 7
)

var bankNames = [bankCount]string{"none", "ekonomike", "biznes", "nlb", "raiffeisen", "procredit", "teb"}

// String returns the bank's stable name.
func (b Bank) String() string {
	if int(b) >= bankCount {
		return "invalid"
	}
	return bankNames[b]
}

// Banks lists every Bank including BankNone, for pre-creating metric labels.
func Banks() []Bank {
	bs := make([]Bank, bankCount)
	for i := range bs {
		bs[i] = Bank(i)
	}
	return bs
}
