package charging

import (
	"errors"
	"time"
)

// Fixed-service accounts (DOMAIN.md "Accounts", seed 001): internet, TV,
// DUO TV and fixed telephony, each with a package from a catalogue and a
// paid-until date; fixed telephony (and the PPV credit of a TV) also holds a
// balance topped up by amount. Pure: the caller passes now and the catalogue.

// FixedKind is the kind of fixed service. Stored: never renumber.
type FixedKind uint8

const (
	FixedInternet  FixedKind = 1 // identified by username / contract name
	FixedTV        FixedKind = 2 // username or SMART card number
	FixedDuoTV     FixedKind = 3 // TV + internet: username / contract or SMART card
	FixedTelephony FixedKind = 4 // 038 number, or username / contract name
	fixedKindCount           = 5
)

var fixedKindNames = [fixedKindCount]string{"invalid", "internet", "tv", "duotv", "telephony"}

// String returns the kind's stable name.
func (k FixedKind) String() string {
	if int(k) >= len(fixedKindNames) {
		return "invalid"
	}
	return fixedKindNames[k]
}

// ParseFixedKind maps a stable name back to its kind.
func ParseFixedKind(s string) (FixedKind, bool) {
	for k := FixedKind(1); k < fixedKindCount; k++ {
		if fixedKindNames[k] == s {
			return k, true
		}
	}
	return 0, false
}

// PackageID names a catalogue package. Stored: never renumber. The numbers
// are also the order of the *101# menu (seed 001).
type PackageID uint8

const (
	PackageDTVFamiljare  PackageID = 1
	PackageDuoTV         PackageID = 2
	PackageInternetPako1 PackageID = 3
	PackageInternetPako2 PackageID = 4
	PackageInternetPako3 PackageID = 5
	PackageDuoMini       PackageID = 6
	PackageDuoMaxi       PackageID = 7
	PackagePPVKredit     PackageID = 8
	// PackagesMax bounds the catalogue: the *101# list must fit one
	// 182-character USSD screen.
	PackagesMax = 9
)

// Package is one catalogue entry.
type Package struct {
	ID    PackageID
	Name  string // as the operator prints it (seed 001)
	Kind  FixedKind
	Price Amount
	// SmartCard: the *101# menu asks for the SMART card number (TV
	// packages) rather than the username (seed 001, step c).
	SmartCard bool
	// Credit: paying it adds Price to the account's balance instead of a
	// month of service (PPV kredit buys pay-per-view credit).
	Credit bool
}

// Catalogue is the package list, indexed by PackageID. Prices are
// configuration: cmd/ocs may load another.
type Catalogue [PackagesMax]Package

// DemoCatalogue has plausible prices: the seed names the packages but gives
// no prices, so these are invented for the demo, not the operator's.
func DemoCatalogue() Catalogue {
	var c Catalogue
	for _, p := range []Package{
		{PackageDTVFamiljare, "DTV Familjare", FixedTV, Euros(12), true, false},
		{PackageDuoTV, "DUO TV", FixedDuoTV, Euros(25), true, false},
		{PackageInternetPako1, "Internet Pako 1", FixedInternet, Euros(15), false, false},
		{PackageInternetPako2, "Internet Pako 2", FixedInternet, Euros(20), false, false},
		{PackageInternetPako3, "Internet Pako 3", FixedInternet, Euros(30), false, false},
		{PackageDuoMini, "Duo mini", FixedDuoTV, Euros(22), false, false},
		{PackageDuoMaxi, "Duo maxi", FixedDuoTV, Euros(35), false, false},
		{PackagePPVKredit, "PPV kredit", FixedTV, Euros(5), true, true},
	} {
		c[p.ID] = p
	}
	return c
}

// Lookup returns package id, or false if the catalogue has none.
func (c *Catalogue) Lookup(id PackageID) (Package, bool) {
	if id == 0 || int(id) >= len(c) || c[id].ID != id {
		return Package{}, false
	}
	return c[id], true
}

// FixedIDBytesMax bounds an identifier: usernames and contract names are
// short, SMART card numbers are at most 20 digits.
const FixedIDBytesMax = 32

// fixedIDBytesMin refuses one- and two-letter typos that could hit another
// customer's short username.
const fixedIDBytesMin = 3

// ErrFixedID is returned for an identifier that is no username, contract
// name, SMART card number or 038 number.
var ErrFixedID = errors.New("account must be a username, contract name, SMART card number or 038 number: 3 to 32 letters, digits, '.', '_' or '-'")

// ParseFixedID normalises an identifier: ASCII letters are lowercased
// (usernames are case-insensitive, as SMS keywords are), and a fixed number
// in international form (+38338…, 0038338…, 38338…) becomes its national
// form 038…, so one account has one key.
func ParseFixedID(s string) (string, error) {
	switch {
	case len(s) > 6 && s[:6] == "+38338":
		s = "0" + s[4:]
	case len(s) > 7 && s[:7] == "0038338":
		s = "0" + s[5:]
	case len(s) == 11 && s[:5] == "38338":
		s = "0" + s[3:]
	}
	if len(s) < fixedIDBytesMin || len(s) > FixedIDBytesMax {
		return "", ErrFixedID
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return "", ErrFixedID
		}
	}
	return string(b), nil
}

// FixedAccount is one fixed-service contract.
type FixedAccount struct {
	ID      string // normalised by ParseFixedID
	Kind    FixedKind
	Package PackageID
	// PaidUntil is the end of the paid service, Unix seconds (0: never paid).
	PaidUntil int64
	// AnchorDay is the day of the month the paid period ends on (1–31),
	// kept so that a contract paid to the 31st returns to the 31st after
	// a short month (see NextPaidUntil).
	AnchorDay uint8
	Balance   Amount // fixed telephony credit, or a TV's PPV credit
	Seq       uint64 // payments and top-ups applied: the transaction counter
}

// FixedResult is the outcome of a fixed-service operation.
type FixedResult uint8

const (
	FixedOK                FixedResult = 1
	FixedUnknownAccount    FixedResult = 2
	FixedUnknownPackage    FixedResult = 3
	FixedPackageMismatch   FixedResult = 4 // the package is not the account's
	FixedAmountNotPositive FixedResult = 5
	FixedBalanceLimit      FixedResult = 6
	FixedNoBalance         FixedResult = 7 // only telephony takes top-ups by amount
	FixedAlreadyPaidMonth  FixedResult = 8 // *101# used already this calendar month
	fixedResultCount                   = 9
)

var fixedResultNames = [fixedResultCount]string{"invalid", "ok", "unknown_account", "unknown_package",
	"package_mismatch", "amount_must_be_positive", "balance_limit", "no_balance", "already_paid_this_month"}

// String returns the stable snake_case code.
func (r FixedResult) String() string {
	if int(r) >= len(fixedResultNames) {
		return "invalid"
	}
	return fixedResultNames[r]
}

// PayPackage applies one payment of package id to a at now. Checks, in
// order: package known, package is the account's (PPV kredit: any TV or DUO
// TV account), balance limit for a credit package. A monthly package moves
// PaidUntil by NextPaidUntil; a credit package adds its price to Balance.
func (a *FixedAccount) PayPackage(cat *Catalogue, id PackageID, now time.Time) FixedResult {
	p, ok := cat.Lookup(id)
	switch {
	case !ok:
		return FixedUnknownPackage
	case p.Credit && a.Kind != FixedTV && a.Kind != FixedDuoTV:
		return FixedPackageMismatch
	case !p.Credit && a.Package != id:
		return FixedPackageMismatch
	case p.Credit && p.Price > BalanceMax-a.Balance:
		return FixedBalanceLimit
	}
	if p.Credit {
		a.Balance += p.Price
	} else {
		a.PaidUntil, a.AnchorDay = NextPaidUntil(a.PaidUntil, a.AnchorDay, now)
	}
	a.Seq++
	return FixedOK
}

// TopUp credits a fixed-telephony balance by amount. Checks, in order:
// telephony, amount positive, balance limit.
func (a *FixedAccount) TopUp(amount Amount) FixedResult {
	switch {
	case a.Kind != FixedTelephony:
		return FixedNoBalance
	case amount <= 0:
		return FixedAmountNotPositive
	case amount > BalanceMax-a.Balance:
		return FixedBalanceLimit
	}
	a.Balance += amount
	a.Seq++
	return FixedOK
}

// NextPaidUntil returns the paid-until date after one more month is paid:
// one calendar month (UTC) from max(now, paidUntil), keeping the time of day.
//
// The 31st: a month is "the same day next month", clamped to that month's
// last day, so 31 January + 1 month = 28 (29) February, never 3 March as
// time.AddDate would say. The day the period started on is kept as the
// anchor, so the next payment from 28 February ends on 31 March, not 28
// March: a customer who always pays on time keeps his day for ever. When the
// service has lapsed (now >= paidUntil) the new period starts now and now's
// day becomes the anchor.
func NextPaidUntil(paidUntil int64, anchor uint8, now time.Time) (int64, uint8) {
	base := now.UTC()
	if paidUntil > base.Unix() {
		base = time.Unix(paidUntil, 0).UTC()
		if anchor < 1 || anchor > 31 {
			anchor = uint8(base.Day())
		}
	} else {
		anchor = uint8(base.Day())
	}
	y, m, _ := base.Date()
	m++
	if m > time.December {
		m = time.January
		y++
	}
	day := int(anchor)
	if last := daysIn(y, m); day > last {
		day = last
	}
	h, mi, s := base.Clock()
	return time.Date(y, m, day, h, mi, s, 0, time.UTC).Unix(), anchor
}

// daysIn returns the number of days of month m of year y.
func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// MonthOf returns yyyymm of t in UTC: the key of the *101# once-a-month rule.
func MonthOf(t time.Time) uint32 { return monthOf(t.Unix()) }

// USSDPaymentFee is the *101# service fee (seed 001: 0.50 EUR since 1 April
// 2016), debited from mobile credit on top of the package price.
const USSDPaymentFee = 50 * AmountPerCent

// MayPayByUSSD reports whether a subscriber whose last *101# payment was in
// month lastMonth (yyyymm, 0: never) may pay again at now: the seed allows
// the service "only once within a month", read as once per calendar month.
func MayPayByUSSD(lastMonth uint32, now time.Time) bool { return lastMonth != MonthOf(now) }
