package httpapi

import (
	"github.com/ocs-engine/ocs/charging"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// reasonBytesMax bounds an adjustment's reason: a sentence for the audit
// trail, not a document.
const reasonBytesMax = 256

// balanceChange is a decoded TopupBalance or AdjustBalance.
type balanceChange struct {
	subscriber charging.SubscriberID
	amount     charging.Amount
	channel    charging.Channel
	reason     []byte
}

// decodeTopUp reads a TMF654 TopupBalance create request. Top-level fields
// other than partyAccount, amount, channel and description (and TMF's
// @-metadata) are refused: the TMF fields we do not implement (recurring
// top-ups, vouchers, payment methods) would otherwise be silently ignored.
func decodeTopUp(p *fastjson.Parser, body []byte) (balanceChange, problem) {
	var c balanceChange
	v, o, pr := parseObject(p, body)
	if !pr.ok() {
		return c, pr
	}
	if pr = checkFields(o, "partyAccount", "amount", "channel", "description"); !pr.ok() {
		return c, pr
	}
	if c.subscriber, pr = partyAccountOf(v); !pr.ok() {
		return c, pr
	}
	if c.amount, pr = moneyOf(v); !pr.ok() {
		return c, pr
	}
	c.channel = charging.ChannelElectronic
	if ch := v.Get("channel"); ch != nil {
		name, ok, pr := stringOf(ch, "name")
		if !pr.ok() {
			return c, pr
		}
		if ok {
			switch b2s(name) {
			case "electronic":
			case "bank":
				c.channel = charging.ChannelBank
			case "ussd":
				c.channel = charging.ChannelUSSD
			default:
				return c, badRequest("invalid_channel", "channel.name must be \"electronic\", \"bank\" or \"ussd\".")
			}
		}
	}
	return c, problem{}
}

// decodeAdjust reads an adjustBalance request: a signed amount and a reason.
func decodeAdjust(p *fastjson.Parser, body []byte) (balanceChange, problem) {
	var c balanceChange
	v, o, pr := parseObject(p, body)
	if !pr.ok() {
		return c, pr
	}
	if pr = checkFields(o, "partyAccount", "amount", "reason", "description"); !pr.ok() {
		return c, pr
	}
	if c.subscriber, pr = partyAccountOf(v); !pr.ok() {
		return c, pr
	}
	if c.amount, pr = moneyOf(v); !pr.ok() {
		return c, pr
	}
	c.channel = charging.ChannelOps
	if c.reason, _, pr = stringOf(v, "reason"); !pr.ok() {
		return c, pr
	}
	if len(c.reason) > reasonBytesMax {
		return c, badRequest("reason_too_long", "reason must be at most 256 bytes.")
	}
	return c, problem{}
}

// partyAccountOf reads partyAccount.id, a number in any local form.
func partyAccountOf(v *fastjson.Value) (charging.SubscriberID, problem) {
	pa := v.Get("partyAccount")
	if pa == nil {
		return 0, badRequest("missing_party_account", "partyAccount.id (the subscriber's number) is required.")
	}
	id, ok, pr := stringOf(pa, "id")
	if !pr.ok() {
		return 0, pr
	}
	if !ok {
		return 0, badRequest("missing_party_account", "partyAccount.id (the subscriber's number) is required.")
	}
	return msisdnOf(id)
}

// moneyOf reads amount {amount, units}; only euros are kept.
func moneyOf(v *fastjson.Value) (charging.Amount, problem) {
	m := v.Get("amount")
	if m == nil || m.Type() != fastjson.TypeObject {
		return 0, badRequest("missing_amount", "amount {\"amount\": \"5.00\", \"units\": \"EUR\"} is required.")
	}
	if units, ok, pr := stringOf(m, "units"); !pr.ok() || (ok && b2s(units) != "EUR") {
		return 0, badRequest("invalid_currency", "amount.units must be \"EUR\": balances are kept in euros.")
	}
	return amountOf(m.Get("amount"), "amount.amount")
}

// tmfTopUp serves POST …/topupBalance: an electronic, bank or USSD top-up.
func (s *Server) tmfTopUp(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	key, p := idempotencyKey(ctx)
	if p.ok() && key == "" {
		p = probMissingIdemKey
	}
	if !p.ok() {
		return decodeFailed(ctx, st, p, false)
	}
	c, p := decodeTopUp(&st.parser, ctx.PostBody())
	if !p.ok() {
		return decodeFailed(ctx, st, p, false)
	}
	st.cmd = charging.Command{Kind: charging.KindTopUp, Channel: c.channel, Key: key,
		Subscriber: c.subscriber, Amount: c.amount}
	return s.balanceChanged(ctx, st, &c, "topupBalance")
}

// tmfAdjust serves POST …/adjustBalance: an operator's signed correction.
func (s *Server) tmfAdjust(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	key, p := idempotencyKey(ctx)
	if p.ok() && key == "" {
		p = probMissingIdemKey
	}
	if !p.ok() {
		return decodeFailed(ctx, st, p, false)
	}
	c, p := decodeAdjust(&st.parser, ctx.PostBody())
	if !p.ok() {
		return decodeFailed(ctx, st, p, false)
	}
	st.cmd = charging.Command{Kind: charging.KindAdjust, Channel: charging.ChannelOps, Key: key,
		Subscriber: c.subscriber, Amount: c.amount, Reason: string(c.reason)}
	return s.balanceChanged(ctx, st, &c, "adjustBalance")
}

// balanceChanged executes a top-up or adjustment and answers 201 with the
// TMF654 resource, plus our extensions transactionId, balance, validUntil.
func (s *Server) balanceChanged(ctx *fasthttp.RequestCtx, st *reqState, c *balanceChange, resource string) slot {
	out, ok := s.execute(ctx, st, false)
	if !ok {
		return slotError
	}
	if out.Result != charging.ResultOK {
		return refuse(ctx, st, out.Result, false)
	}
	b := append(st.buf[:0], `{"id":"`...)
	b = appendTxID(b, c.subscriber, out.Seq)
	b = append(b, `","href":"`+tmfBase+"/"...)
	b = append(b, resource...)
	b = append(b, '/')
	b = appendTxID(b, c.subscriber, out.Seq)
	b = append(b, `","status":"completed"`...)
	b = appendMoney(b, "amount", c.amount)
	if st.cmd.Kind == charging.KindTopUp {
		b = append(appendKey(b, "channel"), `{"name":`...)
		b = appendString(b, c.channel.String())
		b = append(b, '}')
	} else {
		b = appendStringField(b, "reason", st.cmd.Reason)
	}
	b = append(appendKey(b, "partyAccount"), `{"id":"`...)
	b = c.subscriber.AppendText(b)
	b = append(b, `"}`...)
	b = append(appendKey(b, "transactionId"), '"')
	b = appendTxID(b, c.subscriber, out.Seq)
	b = append(b, '"')
	b = appendMoney(b, "balance", out.Balance)
	b = appendTime(b, "validUntil", out.ValidUntil)
	b = appendStringField(b, "state", out.State.String())
	st.buf = append(b, '}')
	writeJSON(ctx, st, fasthttp.StatusCreated)
	return slotOf(out.Result)
}

// tmfBucket serves GET …/bucket?partyAccount.id=…: the main balance as a
// one-element TMF654 bucket list.
func (s *Server) tmfBucket(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	raw := ctx.QueryArgs().Peek("partyAccount.id")
	if len(raw) == 0 {
		return decodeFailed(ctx, st, badRequest("missing_party_account", "The query parameter partyAccount.id (the subscriber's number) is required."), false)
	}
	id, p := msisdnOf(raw)
	if !p.ok() {
		return decodeFailed(ctx, st, p, false)
	}
	st.cmd = charging.Command{Kind: charging.KindInquire, Subscriber: id}
	out, ok := s.execute(ctx, st, false)
	if !ok {
		return slotError
	}
	if out.Result != charging.ResultOK {
		return refuse(ctx, st, out.Result, false)
	}
	b := append(st.buf[:0], `[{"id":"`...)
	b = id.AppendText(b)
	b = append(b, `-main","name":"main"`...)
	b = appendMoney(b, "remainingValue", out.Balance)
	b = append(appendKey(b, "validFor"), '{')
	b = appendTime(b, "endDateTime", out.ValidUntil)
	b = append(b, '}')
	b = appendStringField(b, "status", out.State.String())
	b = append(appendKey(b, "partyAccount"), `{"id":"`...)
	b = id.AppendText(b)
	st.buf = append(b, `"}}]`...)
	writeJSON(ctx, st, fasthttp.StatusOK)
	return slotOf(out.Result)
}
