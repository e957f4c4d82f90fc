package httpapi

import (
	"strconv"

	"github.com/ocs-engine/ocs/charging"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// wireUnit is which ServiceUnit field (TS 32.291 6.1.6.2.2.x) carries units.
type wireUnit uint8

const (
	unitNone    wireUnit = iota
	unitVolume           // totalVolume, or uplinkVolume + downlinkVolume
	unitTime             // time, seconds
	unitService          // serviceSpecificUnits: events, e.g. one SMS
)

var wireUnitNames = [...]string{"", "totalVolume", "time", "serviceSpecificUnits"}

// chargingData is the part of a ChargingDataRequest we act on. Byte slices
// point into the parser's memory: valid only during the request.
type chargingData struct {
	subscriber  charging.SubscriberID
	nfName      []byte
	timeStamp   []byte
	isn         uint64
	hasISN      bool
	oneTime     bool
	hasUsage    bool
	ratingGroup charging.RatingGroup
	requested   uint64
	reqUnit     wireUnit
	used        uint64
	usedUnit    wireUnit
}

// decodeChargingData reads a ChargingDataRequest. Unknown fields are
// ignored, as TS 29.500 asks of a receiver: an SMF sends much we do not
// rate on (PDU session, location, QoS). create requires subscriberIdentifier.
func decodeChargingData(p *fastjson.Parser, body []byte, create bool) (chargingData, problem) {
	var d chargingData
	v, _, pr := parseObject(p, body)
	if !pr.ok() {
		return d, pr
	}
	if create {
		sub, ok, pr := stringOf(v, "subscriberIdentifier")
		if !pr.ok() {
			return d, pr
		}
		if !ok {
			return d, badRequest("missing_subscriber_identifier", "The field subscriberIdentifier is required, e.g. \"msisdn-38349123456\".")
		}
		const prefix = "msisdn-"
		if len(sub) <= len(prefix) || b2s(sub[:len(prefix)]) != prefix {
			return d, badRequest("invalid_subscriber_identifier", "subscriberIdentifier must be \"msisdn-\" followed by the number, e.g. \"msisdn-38349123456\".")
		}
		if d.subscriber, pr = msisdnOf(sub[len(prefix):]); !pr.ok() {
			return d, pr
		}
	}
	if nf := v.Get("nfConsumerIdentification"); nf != nil {
		if d.nfName, _, pr = stringOf(nf, "nFName"); !pr.ok() {
			return d, pr
		}
	}
	if d.timeStamp, _, pr = stringOf(v, "invocationTimeStamp"); !pr.ok() {
		return d, pr
	}
	if f := v.Get("invocationSequenceNumber"); f != nil {
		n, err := f.Uint64()
		if err != nil || n > 1<<32-1 {
			return d, badRequest("invalid_field", "invocationSequenceNumber must be an integer from 0 to 4294967295.")
		}
		d.isn, d.hasISN = n, true
	}
	if f := v.Get("oneTimeEvent"); f != nil {
		b, err := f.Bool()
		if err != nil {
			return d, badRequest("invalid_field", "oneTimeEvent must be true or false.")
		}
		d.oneTime = b
	}
	if f := v.Get("oneTimeEventType"); f != nil && d.oneTime {
		if t, _ := f.StringBytes(); b2s(t) != "IEC" {
			return d, badRequest("unsupported_one_time_event_type", "Only immediate event charging (oneTimeEventType \"IEC\") is supported.")
		}
	}
	return d, decodeUsage(v, &d)
}

// decodeUsage reads multipleUnitUsage: at most one item in this version.
func decodeUsage(v *fastjson.Value, d *chargingData) problem {
	f := v.Get("multipleUnitUsage")
	if f == nil {
		return problem{}
	}
	items, err := f.Array()
	if err != nil {
		return badRequest("invalid_field", "multipleUnitUsage must be an array.")
	}
	switch {
	case len(items) == 0:
		return problem{}
	case len(items) > 1:
		return badRequest("one_rating_group_per_request", "This version accepts exactly one multipleUnitUsage item (one rating group) per request; open one session per rating group.")
	}
	u := items[0]
	rg := u.Get("ratingGroup")
	if rg == nil {
		return badRequest("missing_rating_group", "multipleUnitUsage[0].ratingGroup is required.")
	}
	n, err := rg.Uint64()
	if err != nil || n > 1<<32-1 {
		return badRequest("invalid_field", "ratingGroup must be an integer from 0 to 4294967295.")
	}
	d.hasUsage = true
	d.ratingGroup = charging.RatingGroup(n)
	var pr problem
	if ru := u.Get("requestedUnit"); ru != nil {
		if d.requested, d.reqUnit, pr = unitsOf(ru); !pr.ok() {
			return pr
		}
	}
	if uc := u.Get("usedUnitContainer"); uc != nil {
		containers, err := uc.Array()
		if err != nil {
			return badRequest("invalid_field", "usedUnitContainer must be an array.")
		}
		for _, c := range containers {
			n, kind, pr := unitsOf(c)
			if !pr.ok() {
				return pr
			}
			d.used = addUnits(d.used, n)
			if d.usedUnit == unitNone {
				d.usedUnit = kind
			}
		}
	}
	return problem{}
}

// addUnits adds without overflow: past UnitsMax the engine refuses the
// request as units_above_maximum, so saturating there is enough.
func addUnits(a, b uint64) uint64 {
	if a > charging.UnitsMax || b > charging.UnitsMax || a+b > charging.UnitsMax {
		return charging.UnitsMax + 1
	}
	return a + b
}

// unitsOf reads a ServiceUnit / UsedUnitContainer. One rating group counts
// one kind of unit, so one kind is taken, in this order: volume
// (totalVolume, else uplinkVolume + downlinkVolume), time,
// serviceSpecificUnits. A data session reports time and volume and is rated
// on volume; a call has no volume; an SMS has neither.
func unitsOf(v *fastjson.Value) (uint64, wireUnit, problem) {
	if v.Type() != fastjson.TypeObject {
		return 0, unitNone, badRequest("invalid_units", "A unit container must be a JSON object.")
	}
	var vals [5]uint64
	var has [5]bool
	for i, name := range [5]string{"totalVolume", "uplinkVolume", "downlinkVolume", "time", "serviceSpecificUnits"} {
		f := v.Get(name)
		if f == nil {
			continue
		}
		n, err := f.Uint64()
		if err != nil {
			return 0, unitNone, badRequest("invalid_units", "Units ("+name+") must be a non-negative integer.")
		}
		vals[i], has[i] = n, true
	}
	switch {
	case has[0]:
		return addUnits(vals[0], 0), unitVolume, problem{}
	case has[1] || has[2]:
		return addUnits(vals[1], vals[2]), unitVolume, problem{}
	case has[3]:
		return addUnits(vals[3], 0), unitTime, problem{}
	case has[4]:
		return addUnits(vals[4], 0), unitService, problem{}
	}
	return 0, unitNone, problem{}
}

// parseRef reads a charging data reference "<msisdn digits>-<session>" as
// issued in Location. Only the canonical form is accepted, so one session
// has exactly one reference (and one idempotency key space).
func parseRef(b []byte) (charging.SubscriberID, uint32, bool) {
	dash := -1
	for i, c := range b {
		if c == '-' {
			dash = i
			break
		}
		if c < '0' || c > '9' {
			return 0, 0, false
		}
	}
	if dash < 11 || dash > 15 || b[0] == '0' {
		return 0, 0, false
	}
	id, err := strconv.ParseUint(b2s(b[:dash]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	s := b[dash+1:]
	if len(s) == 0 || len(s) > 10 || s[0] == '0' {
		return 0, 0, false
	}
	session, err := strconv.ParseUint(b2s(s), 10, 32)
	if err != nil {
		return 0, 0, false
	}
	return charging.SubscriberID(id), uint32(session), true
}

func appendRef(b []byte, id charging.SubscriberID, session uint32) []byte {
	b = id.AppendText(b)
	b = append(b, '-')
	return strconv.AppendUint(b, uint64(session), 10)
}

var (
	probMissingTimeStamp = badRequest("missing_invocation_time_stamp",
		"Without an Idempotency-Key header, invocationTimeStamp, invocationSequenceNumber and nfConsumerIdentification.nFName are required: together they make the request key.")
	probMissingISN = badRequest("missing_invocation_sequence_number",
		"invocationSequenceNumber is required: with the reference it makes a retry idempotent.")
	probMissingUsage = badRequest("missing_multiple_unit_usage",
		"multipleUnitUsage with one item (ratingGroup, requestedUnit) is required.")
	probInvalidRef = problem{status: 404, code: "unknown_session",
		detail: "The charging data reference is not one this server issued (\"<msisdn>-<session>\").", cause: "CONTEXT_NOT_FOUND"}
)

// nchfCreate serves POST /chargingdata: an immediate event charge when
// oneTimeEvent is true, else a session opening with a reservation.
func (s *Server) nchfCreate(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	d, p := decodeChargingData(&st.parser, ctx.PostBody(), true)
	if d.oneTime {
		a.op = opCharge
	}
	if !p.ok() {
		return decodeFailed(ctx, st, p, true)
	}
	if !d.hasUsage {
		return decodeFailed(ctx, st, probMissingUsage, true)
	}
	key, p := idempotencyKey(ctx)
	if !p.ok() {
		return decodeFailed(ctx, st, p, true)
	}
	if key == "" {
		if len(d.timeStamp) == 0 || !d.hasISN || len(d.nfName) == 0 {
			return decodeFailed(ctx, st, probMissingTimeStamp, true)
		}
		b := append(st.buf[:0], d.nfName...)
		b = append(b, '|')
		b = append(b, d.timeStamp...)
		b = append(b, '|')
		b = strconv.AppendUint(b, d.isn, 10)
		st.buf = b
		if len(b) > charging.RequestKeyBytesMax {
			return decodeFailed(ctx, st, probKeyTooLong, true)
		}
		key = string(b)
	}
	cmd := &st.cmd
	cmd.Channel = charging.ChannelNetwork
	cmd.Key = key
	cmd.Subscriber = d.subscriber
	cmd.RatingGroup = d.ratingGroup
	if d.oneTime {
		// An event is charged on what it asks for; a post-event report
		// (usedUnitContainer only) is charged on what it used.
		cmd.Kind = charging.KindCharge
		cmd.Units = d.requested
		if d.reqUnit == unitNone {
			cmd.Units = d.used
		}
	} else {
		cmd.Kind = charging.KindReserve
		cmd.Units = d.requested
	}
	out, ok := s.execute(ctx, st, true)
	if !ok {
		return slotError
	}
	if out.Result != charging.ResultOK {
		return refuse(ctx, st, out.Result, true)
	}
	if cmd.Kind == charging.KindReserve {
		loc := append(st.buf[:0], nchfBase+"/"...)
		loc = appendRef(loc, d.subscriber, out.Session)
		st.buf = loc
		ctx.Response.Header.SetBytesV("Location", loc)
		s.writeChargingDataResponse(st, &d, &out, out.Granted, true)
	} else {
		s.writeChargingDataResponse(st, &d, &out, cmd.Units, false)
	}
	writeJSON(ctx, st, fasthttp.StatusCreated)
	return slotOf(out.Result)
}

// sessionCommand decodes an update or release: the reference from the
// path, the key from the reference and invocationSequenceNumber.
func (s *Server) sessionCommand(ctx *fasthttp.RequestCtx, st *reqState, a *args, kind charging.Kind) (chargingData, problem) {
	id, session, ok := parseRef(a.params[0])
	if !ok {
		return chargingData{}, probInvalidRef
	}
	d, p := decodeChargingData(&st.parser, ctx.PostBody(), false)
	if !p.ok() {
		return d, p
	}
	if kind == charging.KindUpdate && !d.hasUsage {
		return d, probMissingUsage
	}
	if !d.hasISN {
		return d, probMissingISN
	}
	b := appendRef(st.buf[:0], id, session)
	b = append(b, '/')
	b = strconv.AppendUint(b, d.isn, 10)
	st.buf = b
	d.subscriber = id
	cmd := &st.cmd
	cmd.Kind = kind
	cmd.Channel = charging.ChannelNetwork
	cmd.Key = string(b)
	cmd.Subscriber = id
	cmd.Session = session
	cmd.RatingGroup = d.ratingGroup
	cmd.Used = d.used
	if kind == charging.KindUpdate {
		cmd.Units = d.requested
	}
	return d, problem{}
}

// nchfUpdate serves POST /chargingdata/{ref}/update: debit the used units,
// grant more. Once the usage is debited, a refusal to grant more (no money,
// validity ended) is answered 200 with the per-unit resultCode and no
// grantedUnit, as TS 32.291 does: the report itself succeeded.
func (s *Server) nchfUpdate(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	d, p := s.sessionCommand(ctx, st, a, charging.KindUpdate)
	if !p.ok() {
		return decodeFailed(ctx, st, p, true)
	}
	out, ok := s.execute(ctx, st, true)
	if !ok {
		return slotError
	}
	w := wireOf(out.Result)
	perUnit := out.Result != charging.ResultOK && w.unitCode != "" && out.Result != charging.ResultUnknownSubscriber
	if out.Result != charging.ResultOK && !perUnit {
		return refuse(ctx, st, out.Result, true)
	}
	s.writeChargingDataResponse(st, &d, &out, out.Granted, true)
	writeJSON(ctx, st, fasthttp.StatusOK)
	return slotOf(out.Result)
}

// nchfRelease serves POST /chargingdata/{ref}/release: debit the final
// usage and close the session; 204 with no body.
func (s *Server) nchfRelease(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	_, p := s.sessionCommand(ctx, st, a, charging.KindTerminate)
	if !p.ok() {
		return decodeFailed(ctx, st, p, true)
	}
	out, ok := s.execute(ctx, st, true)
	if !ok {
		return slotError
	}
	if out.Result != charging.ResultOK {
		return refuse(ctx, st, out.Result, true)
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return slotOf(out.Result)
}

// writeChargingDataResponse builds a ChargingDataResponse in st.buf.
func (s *Server) writeChargingDataResponse(st *reqState, d *chargingData, out *charging.Outcome, granted uint64, session bool) {
	b := append(st.buf[:0], `{"invocationTimeStamp":"`...)
	b = s.clock().UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, '"')
	if d.hasISN {
		b = appendUintField(b, "invocationSequenceNumber", d.isn)
	}
	b = append(b, `,"multipleUnitInformation":[{"resultCode":"`...)
	b = append(b, wireOf(out.Result).unitCode...)
	b = append(b, '"')
	b = appendUintField(b, "ratingGroup", uint64(d.ratingGroup))
	if out.Result == charging.ResultOK {
		b = append(appendKey(b, "grantedUnit"), '{')
		b = appendUintField(b, wireUnitNames[s.unitFor(d)], granted)
		b = append(b, '}')
		if session {
			b = appendUintField(b, "validityTime", uint64(out.QuotaValidity))
		}
	}
	if out.FinalUnit || (session && out.Result != charging.ResultOK) {
		b = append(b, `,"finalUnitIndication":{"finalUnitAction":"TERMINATE"}`...)
	}
	st.buf = append(b, "}]}"...)
}

// unitFor picks the unit a grant is expressed in: the one the request
// used, else the tariff's, else service-specific units.
func (s *Server) unitFor(d *chargingData) wireUnit {
	switch {
	case d.reqUnit != unitNone:
		return d.reqUnit
	case d.usedUnit != unitNone:
		return d.usedUnit
	}
	if t, ok := s.tariffs[d.ratingGroup]; ok {
		switch t.Unit {
		case charging.UnitBytes:
			return unitVolume
		case charging.UnitSeconds:
			return unitTime
		}
	}
	return unitService
}
