package flows

// End to end through the USSD handler: a gateway request, the handler's
// session table, Flows over the in-memory stores, and back to the text the
// subscriber reads. The rule under test lives in Flows and the texts in
// protocols/ussd, so the test that joins them sits here, where the fakes
// are (flows imports no protocol; only this test does).

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/protocols/ussd"
)

// ussdEngine adapts Flows to ussd.Engine as cmd/ocs's ussdEngine does.
type ussdEngine struct{ f *Flows }

func (u ussdEngine) Redeem(caller, to charging.SubscriberID, code charging.VoucherCode) (ussd.Reply, error) {
	res, err := u.f.Redeem(caller, to, code)
	return replyOf(&res), inProgressUSSD(err)
}

func (u ussdEngine) PayPackage(caller charging.SubscriberID, pkg charging.PackageID, account string) (ussd.Reply, error) {
	res, err := u.f.PayPackage(caller, pkg, account)
	return replyOf(&res), inProgressUSSD(err)
}

func (u ussdEngine) Inquire(caller charging.SubscriberID) (ussd.Reply, error) {
	res, err := u.f.Inquire(caller)
	return replyOf(&res), err
}

func (u ussdEngine) Transfer(key string, caller, to charging.SubscriberID, amount charging.Amount) (ussd.Reply, error) {
	res, err := u.f.Transfer(key, caller, to, amount)
	return replyOf(&res), inProgressUSSD(err)
}

func inProgressUSSD(err error) error {
	if errors.Is(err, ErrInProgress) {
		return errors.Join(ussd.ErrInProgress, err)
	}
	return err
}

// replyOf is cmd/ocs's replyOf: a Result to the subscriber's reason, with
// the transaction ID "<subscriber>-<seq>".
func replyOf(res *Result) ussd.Reply {
	r := ussd.Reply{Balance: res.Outcome.Balance, ValidUntil: res.Outcome.ValidUntil, State: res.Outcome.State,
		Amount: res.Amount, PaidUntil: res.PaidUntil, BarredUntil: res.BarredUntil}
	switch {
	case res.Voucher != 0 && res.Voucher != charging.VoucherOK:
		r.Reason = ussd.ReasonForVoucher(res.Voucher)
	case res.Transfer != 0 && res.Transfer != charging.TransferOK:
		r.Reason = ussd.ReasonForTransfer(res.Transfer)
	case res.Fixed != 0 && res.Fixed != charging.FixedOK:
		r.Reason = ussd.ReasonForFixed(res.Fixed)
	case res.Account == charging.ResultUnknownSubscriber && !res.ByReceiver:
		r.Reason = ussd.ReasonUnknownSubscriber
	default:
		r.Reason = ussd.ReasonForResult(res.Account)
	}
	if r.Reason == ussd.ReasonOK && res.Outcome.Seq != 0 {
		r.TxnID = res.Subscriber.String() + "-" + strconv.FormatUint(res.Outcome.Seq, 10)
	}
	return r
}

// gateway posts to a Handler in memory, as the USSD gateway does.
type gateway struct {
	t *testing.T
	h *ussd.Handler
}

func (g gateway) post(session, serviceCode, text string, phone charging.SubscriberID) string {
	g.t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/ussd")
	ctx.Request.Header.SetMethod(fasthttp.MethodPost)
	ctx.Request.Header.SetContentType("application/x-www-form-urlencoded")
	ctx.Request.SetBodyString(url.Values{"sessionId": {session}, "serviceCode": {serviceCode}, "phoneNumber": {"+" + phone.String()},
		"networkCode": {"21202"}, "text": {text}}.Encode())
	g.h.ServeHTTP(&ctx)
	require.Equal(g.t, fasthttp.StatusOK, ctx.Response.StatusCode())
	return string(ctx.Response.Body())
}

func setupUSSD(t *testing.T) (gateway, *Flows, *engine, *vouchers, *testClock) {
	f, e, x, clk := setupMonthly(t)
	_ = x
	h := ussd.NewHandler(ussdEngine{f}, ussd.Options{Now: clk.now, Menu: &ussd.Menu{Catalogue: charging.DemoCatalogue(),
		Transfer: charging.DemoTransferRules(), PaymentFee: charging.USSDPaymentFee, Location: time.UTC}})
	return gateway{t: t, h: h}, f, e, f.cfg.Vouchers.(*vouchers), clk
}

// txnOf returns the transaction ID at the end of a success text.
func txnOf(t *testing.T, body string) string {
	t.Helper()
	_, id, ok := strings.Cut(body, "ID e transaksionit: ")
	require.True(t, ok, body)
	return id
}

// A scratch card redeemed over USSD, then dialled again once the handler
// forgot the session (a new sessionId is what an evicted or expired one
// is to the handler): the same success text, the same transaction ID, no
// second credit. Another beneficiary, or the same one past RetryAnswerMax,
// reads "card used".
func TestUSSDRedeemRetryAfterSessionForgotten(t *testing.T) {
	g, _, e, v, clk := setupUSSD(t)
	const dial = "*123*2468246824682468#"
	v.add("2468246824682468", charging.Euros(5), t0.Add(time.Hour))

	first := g.post("s1", dial, "", alice)
	require.True(t, strings.HasPrefix(first, "END Mbushja u krye: +5.00 EUR."), first)
	require.Equal(t, alice.String()+"-"+strconv.FormatUint(e.journal[alice][len(e.journal[alice])-1].Seq, 10), txnOf(t, first))
	before := ledgerOf(e)

	// The gateway's retry of the same request after the session expired,
	// and a new session: both answered as the first was.
	clk.set(t0.Add(ussd.SessionIdleMax + time.Second))
	require.Equal(t, first, g.post("s1", dial, "", alice), "the same session, after it expired")
	require.Equal(t, first, g.post("s2", dial, "", alice), "a new session")
	requireSameLedger(t, before, e, "retries over USSD")

	// Another beneficiary: the caller for himself, or for someone else.
	require.Equal(t, "END Kjo kartelë është përdorur më parë.", g.post("s3", dial, "", bob))
	require.Equal(t, "END Kjo kartelë është përdorur më parë.", g.post("s4", "*123*2468246824682468*"+bob.String()+"#", "", alice))

	clk.set(t0.Add(RetryAnswerMax + time.Second))
	require.Equal(t, "END Kjo kartelë është përdorur më parë.", g.post("s5", dial, "", alice))
	requireSameLedger(t, before, e, "used-card answers")
}

// A *101# payment, then the final request again after the session was
// forgotten: the same success text and transaction ID, one debit, the
// package applied once. Another account, or past RetryAnswerMax: "already
// paid this month".
func TestUSSDPaymentRetryAfterSessionForgotten(t *testing.T) {
	g, f, e, _, clk := setupUSSD(t)
	x := f.cfg.Fixed.(*fixed)
	g.post("p1", "*101#", "", alice)
	first := g.post("p1", "*101#", "1*3*arber*1", alice)
	require.True(t, strings.HasPrefix(first, "END Pagesa u krye: Internet Pako 1, 15.00 EUR. Paguar deri më "), first)
	require.Equal(t, alice.String()+"-"+strconv.FormatUint(e.journal[alice][len(e.journal[alice])-1].Seq, 10), txnOf(t, first))
	before := ledgerOf(e)

	clk.set(t0.Add(ussd.SessionIdleMax + time.Second))
	require.Equal(t, first, g.post("p1", "*101#", "1*3*arber*1", alice), "the same session, after it expired")
	require.Equal(t, first, g.post("p2", "*101#", "1*3*arber*1", alice), "a new session")
	requireSameLedger(t, before, e, "retries over USSD")
	_, applied := x.state(1)
	require.Equal(t, 1, applied)
	require.Equal(t, uint64(1), x.next)

	const paid = "END Shërbimin e pagesave e keni përdorur këtë muaj. Mund ta përdorni sërish muajin e ardhshëm."
	require.Equal(t, paid, g.post("p3", "*101#", "1*3*besa*1", alice))
	clk.set(t0.Add(RetryAnswerMax + time.Second))
	require.Equal(t, paid, g.post("p4", "*101#", "1*3*arber*1", alice))
	requireSameLedger(t, before, e, "refusals")
}
