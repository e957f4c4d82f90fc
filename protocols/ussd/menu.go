package ussd

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ocs-engine/ocs/charging"
)

// Service codes (the first token after '*'). *123# and *101# are the
// operator's (seed 001, seed 002); *100# and *150# are ours, documented in
// the README.
const (
	CodeVoucher  = "123" // *123*CODE# tops up the caller, *123*CODE*MSISDN# another subscriber
	CodeBalance  = "100" // *100# balance and validity inquiry
	CodePayments = "101" // *101# → 1 Pagesat → package → account → confirm
	CodeTransfer = "150" // *150*MSISDN*AMOUNT# → confirm; or *150# step by step
)

// Limits of the input.
const (
	// ScreenRunesMax is the longest reply body, "CON "/"END " included: a
	// USSD screen holds 182 characters (GSM 7-bit), and counting the prefix
	// keeps every gateway's convention safe.
	ScreenRunesMax = 182
	// InputBytesMax bounds serviceCode+text: a USSD string is at most 182
	// characters; anything longer is not from a handset.
	InputBytesMax = 182
	// tokensMax bounds the '*'-separated inputs: the deepest flow (*101#)
	// has five.
	tokensMax = 8
)

// IntentKind names a completed request the engine must run.
type IntentKind uint8

const (
	IntentRedeem   IntentKind = 1
	IntentPay      IntentKind = 2
	IntentInquire  IntentKind = 3
	IntentTransfer IntentKind = 4
)

// Intent is a completed request, every field parsed and valid.
type Intent struct {
	Kind        IntentKind
	Caller      charging.SubscriberID
	Code        charging.VoucherCode  // IntentRedeem
	Beneficiary charging.SubscriberID // IntentRedeem: the caller or another subscriber
	Package     charging.PackageID    // IntentPay
	Account     string                // IntentPay: normalised by charging.ParseFixedID
	To          charging.SubscriberID // IntentTransfer
	Amount      charging.Amount       // IntentTransfer: sent to To, before the fee
}

// Step is the translator's answer to one gateway request: a screen to show
// (End false: the menu continues), a final text (End true), or an Intent to
// run (Intent.Kind != 0), whose final text Render makes from the engine's
// Reply.
type Step struct {
	Text   string // without the "CON "/"END " prefix
	End    bool
	Intent Intent
}

// Body returns the HTTP reply body of a screen step.
func (s Step) Body() string {
	if s.End {
		return "END " + s.Text
	}
	return "CON " + s.Text
}

// Menu is the pure translator from dialled strings to screens and intents.
// The whole position in a menu is in the request (serviceCode plus every
// input so far in text), so Menu keeps no state: a lost or evicted session
// never breaks a flow.
type Menu struct {
	Catalogue charging.Catalogue
	Transfer  charging.TransferRules
	// PaymentFee is the *101# service fee shown at confirmation.
	PaymentFee charging.Amount
	// Location renders dates (the subscriber's local day); nil means UTC.
	Location *time.Location
}

// DemoMenu uses the demo catalogue and transfer rules and the seed's 0.50 EUR
// *101# fee.
func DemoMenu() *Menu {
	return &Menu{Catalogue: charging.DemoCatalogue(), Transfer: charging.DemoTransferRules(),
		PaymentFee: charging.USSDPaymentFee, Location: Kosovo()}
}

// Kosovo returns the operator's time zone (Europe/Belgrade in the tz
// database), or CET without summer time if the system has no tz data.
func Kosovo() *time.Location {
	if l, err := time.LoadLocation("Europe/Belgrade"); err == nil {
		return l
	}
	return time.FixedZone("CET", 3600)
}

func end(text string) Step                 { return Step{Text: text, End: true} }
func con(text string) Step                 { return Step{Text: text} }
func endf(format string, args ...any) Step { return end(fmt.Sprintf(format, args...)) }

// tokens splits serviceCode ("*123#", "*123*CODE#") and text ("", "CODE",
// "1*3*arber") into the inputs after '*'. ok is false for anything a
// handset does not send: no leading '*', empty inputs, too many or too long.
func tokens(serviceCode, text string) ([]string, bool) {
	if len(serviceCode)+len(text) > InputBytesMax || len(serviceCode) < 2 || serviceCode[0] != '*' {
		return nil, false
	}
	sc := strings.TrimSuffix(serviceCode[1:], "#")
	text = strings.TrimSuffix(text, "#")
	all := sc
	if text != "" {
		all = sc + "*" + text
	}
	parts := strings.Split(all, "*")
	if len(parts) > tokensMax {
		return nil, false
	}
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, "#") {
			return nil, false
		}
	}
	return parts, true
}

// Parse translates one request of caller. It never panics and never
// returns an Intent whose fields did not parse (fuzzed).
func (m *Menu) Parse(serviceCode, text string, caller charging.SubscriberID) Step {
	t, ok := tokens(serviceCode, text)
	if !ok {
		return end(txtUnknownService)
	}
	switch t[0] {
	case CodeVoucher:
		return m.voucher(t[1:], caller)
	case CodeBalance:
		if len(t) != 1 {
			return end(txtInvalidChoice)
		}
		return Step{Intent: Intent{Kind: IntentInquire, Caller: caller}}
	case CodePayments:
		return m.payments(t[1:], caller)
	case CodeTransfer:
		return m.transfer(t[1:], caller)
	}
	return end(txtUnknownService)
}

func (m *Menu) voucher(t []string, caller charging.SubscriberID) Step {
	if len(t) == 0 {
		return con(txtPromptCode)
	}
	if len(t) > 2 {
		return end(txtInvalidChoice)
	}
	code, err := charging.ParseVoucherCode(t[0])
	if err != nil {
		return end(txtBadCodeFormat)
	}
	to := caller
	if len(t) == 2 {
		if to, err = charging.ParseMSISDN(t[1]); err != nil {
			return end(txtBadMSISDN)
		}
	}
	return Step{Intent: Intent{Kind: IntentRedeem, Caller: caller, Code: code, Beneficiary: to}}
}

func (m *Menu) payments(t []string, caller charging.SubscriberID) Step {
	switch {
	case len(t) == 0:
		return con(txtMenu101)
	case t[0] != "1" || len(t) > 4:
		return end(txtInvalidChoice)
	case len(t) == 1:
		return con(m.packageList())
	}
	p, ok := m.pickPackage(t[1])
	if !ok {
		return end(txtInvalidChoice)
	}
	if len(t) == 2 {
		if p.SmartCard {
			return con(txtPromptSmartCard)
		}
		return con(txtPromptUsername)
	}
	account, err := charging.ParseFixedID(t[2])
	if err != nil {
		return end(txtBadAccount)
	}
	if len(t) == 3 {
		return con(fmt.Sprintf(txtConfirmPay, p.Name, account, p.Price, m.PaymentFee))
	}
	switch t[3] {
	case "1":
		return Step{Intent: Intent{Kind: IntentPay, Caller: caller, Package: p.ID, Account: account}}
	case "2":
		return end(txtCancelled)
	}
	return end(txtInvalidChoice)
}

func (m *Menu) pickPackage(s string) (charging.Package, bool) {
	if len(s) != 1 || s[0] < '1' || s[0] > '9' {
		return charging.Package{}, false
	}
	return m.Catalogue.Lookup(charging.PackageID(s[0] - '0'))
}

func (m *Menu) packageList() string {
	var b strings.Builder
	b.WriteString(txtPackagesHead)
	for id := charging.PackageID(1); id < charging.PackagesMax; id++ {
		if p, ok := m.Catalogue.Lookup(id); ok {
			fmt.Fprintf(&b, "\n%d. %s", id, p.Name)
		}
	}
	return b.String()
}

func (m *Menu) transfer(t []string, caller charging.SubscriberID) Step {
	switch {
	case len(t) == 0:
		return con(txtPromptRecipient)
	case len(t) > 3:
		return end(txtInvalidChoice)
	}
	to, err := charging.ParseMSISDN(t[0])
	if err != nil {
		return end(txtBadMSISDN)
	}
	if to == caller {
		return end(txtTransferToSelf)
	}
	if len(t) == 1 {
		return con(fmt.Sprintf(txtPromptAmount, m.Transfer.Min, m.Transfer.Max))
	}
	amount, err := charging.ParseAmount(t[1])
	if err != nil || amount <= 0 {
		return end(txtBadAmount)
	}
	switch m.Transfer.Validate(caller, to, amount) {
	case charging.TransferOK:
	case charging.TransferBelowMinimum:
		return endf(txtBelowMinimum, m.Transfer.Min)
	case charging.TransferAboveMaximum:
		return endf(txtAboveMaximum, m.Transfer.Max)
	default:
		return end(txtBadAmount)
	}
	if len(t) == 2 {
		return con(fmt.Sprintf(txtConfirmTransfer, amount, to, m.Transfer.Fee))
	}
	switch t[2] {
	case "1":
		return Step{Intent: Intent{Kind: IntentTransfer, Caller: caller, To: to, Amount: amount}}
	case "2":
		return end(txtCancelled)
	}
	return end(txtInvalidChoice)
}

// Reason is the outcome of an intent as the subscriber is told it: OK or
// one precise refusal. The engine adapter maps its results with the
// ReasonFor… functions.
type Reason uint8

const (
	ReasonOK                Reason = 1
	ReasonWrongCode         Reason = 2
	ReasonUsedCode          Reason = 3
	ReasonBlockedCode       Reason = 4
	ReasonExpiredCode       Reason = 5
	ReasonBarred            Reason = 6
	ReasonUnknownRecipient  Reason = 7 // the beneficiary or receiver has no account
	ReasonUnknownAccount    Reason = 8 // no fixed account has this identifier
	ReasonPackageMismatch   Reason = 9
	ReasonInsufficient      Reason = 10
	ReasonAlreadyPaidMonth  Reason = 11
	ReasonSuspended         Reason = 12
	ReasonGrace             Reason = 13
	ReasonBalanceLimit      Reason = 14
	ReasonBelowMinimum      Reason = 15
	ReasonAboveMaximum      Reason = 16
	ReasonTransferToSelf    Reason = 17
	ReasonOverloaded        Reason = 18
	ReasonUnavailable       Reason = 19 // the engine could not answer
	ReasonUnknownSubscriber Reason = 20 // the caller himself has no account
	reasonCount                    = 21
)

// ReasonForResult maps an account Result.
func ReasonForResult(r charging.Result) Reason {
	switch r {
	case charging.ResultOK:
		return ReasonOK
	case charging.ResultInsufficientBalance:
		return ReasonInsufficient
	case charging.ResultSuspended:
		return ReasonSuspended
	case charging.ResultGraceOutgoingBarred:
		return ReasonGrace
	case charging.ResultBalanceLimit:
		return ReasonBalanceLimit
	case charging.ResultAmountBelowMinimum:
		return ReasonBelowMinimum
	case charging.ResultAmountAboveMaximum:
		return ReasonAboveMaximum
	case charging.ResultUnknownSubscriber:
		return ReasonUnknownRecipient
	case charging.ResultOverloaded:
		return ReasonOverloaded
	}
	return ReasonUnavailable
}

// ReasonForVoucher maps a redemption result.
func ReasonForVoucher(r charging.VoucherResult) Reason {
	switch r {
	case charging.VoucherOK:
		return ReasonOK
	case charging.VoucherUnknown:
		return ReasonWrongCode
	case charging.VoucherAlreadyUsed:
		return ReasonUsedCode
	case charging.VoucherIsBlocked:
		return ReasonBlockedCode
	case charging.VoucherIsExpired:
		return ReasonExpiredCode
	case charging.VoucherBarred:
		return ReasonBarred
	case charging.VoucherWrongSubscriber:
		return ReasonUnknownRecipient
	}
	return ReasonUnavailable
}

// ReasonForFixed maps a fixed-service result.
func ReasonForFixed(r charging.FixedResult) Reason {
	switch r {
	case charging.FixedOK:
		return ReasonOK
	case charging.FixedUnknownAccount:
		return ReasonUnknownAccount
	case charging.FixedPackageMismatch, charging.FixedUnknownPackage:
		return ReasonPackageMismatch
	case charging.FixedAlreadyPaidMonth:
		return ReasonAlreadyPaidMonth
	case charging.FixedBalanceLimit:
		return ReasonBalanceLimit
	}
	return ReasonUnavailable
}

// ReasonForTransfer maps a transfer validation result.
func ReasonForTransfer(r charging.TransferResult) Reason {
	switch r {
	case charging.TransferOK:
		return ReasonOK
	case charging.TransferToSelf:
		return ReasonTransferToSelf
	case charging.TransferBelowMinimum:
		return ReasonBelowMinimum
	case charging.TransferAboveMaximum:
		return ReasonAboveMaximum
	}
	return ReasonUnavailable
}

// TxnIDBytesMax bounds the transaction ID an engine returns: "38349123456-"
// plus a 20-digit sequence number fits; the screens are sized for it.
const TxnIDBytesMax = 32

// Reply is the engine's answer to an intent.
type Reply struct {
	Reason Reason
	// TxnID is the transaction ID the subscriber quotes (≤ TxnIDBytesMax).
	TxnID string
	// Balance and ValidUntil (Unix seconds) of the caller's account after
	// the intent; for a redemption for another subscriber, ValidUntil is
	// the beneficiary's (his balance is not the caller's to see).
	Balance    charging.Amount
	ValidUntil int64
	// State of the caller's account, for an inquiry.
	State charging.State
	// Amount credited (redemption), or paid before the fee (payment).
	Amount charging.Amount
	// PaidUntil is the fixed account's paid-until after a payment (Unix
	// seconds; 0 for a credit package such as PPV kredit).
	PaidUntil int64
	// BarredUntil (Unix seconds) explains ReasonBarred.
	BarredUntil int64
}

func (m *Menu) date(unix int64) string {
	loc := m.Location
	if loc == nil {
		loc = time.UTC
	}
	return time.Unix(unix, 0).In(loc).Format("02.01.2006")
}

func (m *Menu) dateTime(unix int64) string {
	loc := m.Location
	if loc == nil {
		loc = time.UTC
	}
	return time.Unix(unix, 0).In(loc).Format("02.01.2006 15:04")
}

// Render returns the final text of intent after the engine answered r.
func (m *Menu) Render(in *Intent, r *Reply) string {
	if r.Reason != ReasonOK {
		return m.refusal(in, r)
	}
	txn := r.TxnID
	if len(txn) > TxnIDBytesMax {
		txn = txn[:TxnIDBytesMax]
	}
	switch in.Kind {
	case IntentRedeem:
		if in.Beneficiary != in.Caller {
			return fmt.Sprintf(txtRedeemedOther, in.Beneficiary, r.Amount, m.date(r.ValidUntil), txn)
		}
		return fmt.Sprintf(txtRedeemedSelf, r.Amount, r.Balance, m.date(r.ValidUntil), txn)
	case IntentPay:
		p, _ := m.Catalogue.Lookup(in.Package)
		if r.PaidUntil == 0 {
			return fmt.Sprintf(txtPaidCredit, p.Name, r.Amount, r.Balance, txn)
		}
		return fmt.Sprintf(txtPaid, p.Name, r.Amount, m.date(r.PaidUntil), r.Balance, txn)
	case IntentTransfer:
		return fmt.Sprintf(txtTransferred, in.Amount, in.To, r.Balance, m.date(r.ValidUntil), txn)
	case IntentInquire:
		switch r.State {
		case charging.StateGrace:
			return fmt.Sprintf(txtInquiryGrace, r.Balance, m.date(r.ValidUntil))
		case charging.StateSuspended:
			return fmt.Sprintf(txtInquirySuspended, r.Balance, m.date(r.ValidUntil))
		}
		return fmt.Sprintf(txtInquiry, r.Balance, m.date(r.ValidUntil))
	}
	return txtUnavailable
}

func (m *Menu) refusal(in *Intent, r *Reply) string {
	switch r.Reason {
	case ReasonWrongCode:
		return txtWrongCode
	case ReasonUsedCode:
		return txtUsedCode
	case ReasonBlockedCode:
		return txtBlockedCode
	case ReasonExpiredCode:
		return txtExpiredCode
	case ReasonBarred:
		return fmt.Sprintf(txtBarred, m.dateTime(r.BarredUntil))
	case ReasonUnknownRecipient:
		to := in.To
		if in.Kind == IntentRedeem {
			to = in.Beneficiary
		}
		return fmt.Sprintf(txtUnknownRecipient, to)
	case ReasonUnknownSubscriber:
		return txtUnknownCaller
	case ReasonUnknownAccount:
		return fmt.Sprintf(txtUnknownAccount, in.Account)
	case ReasonPackageMismatch:
		p, _ := m.Catalogue.Lookup(in.Package)
		return fmt.Sprintf(txtPackageMismatch, p.Name, in.Account)
	case ReasonInsufficient:
		return fmt.Sprintf(txtInsufficient, r.Balance)
	case ReasonAlreadyPaidMonth:
		return txtAlreadyPaidMonth
	case ReasonSuspended:
		return txtSuspended
	case ReasonGrace:
		return txtGrace
	case ReasonBalanceLimit:
		return txtBalanceLimit
	case ReasonBelowMinimum:
		return fmt.Sprintf(txtBelowMinimum, m.Transfer.Min)
	case ReasonAboveMaximum:
		return fmt.Sprintf(txtAboveMaximum, m.Transfer.Max)
	case ReasonTransferToSelf:
		return txtTransferToSelf
	case ReasonOverloaded:
		return txtOverloaded
	}
	return txtUnavailable
}

// fits reports whether body fits one USSD screen.
func fits(body string) bool { return utf8.RuneCountInString(body) <= ScreenRunesMax }
