package bench

import (
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ocs-engine/ocs/charging"
)

// opKind is one kind of operation a scenario sends.
type opKind uint8

const (
	opSMS opKind = iota
	opSession
	opTopUp
	opVoucher
	opBank
	opKindCount
)

var opNames = [opKindCount]string{"sms", "session", "topup", "voucher", "bank"}

// available reports whether the server has an endpoint for op. Bank SMS
// top-ups are not on the HTTP API yet; when they land, give them a send
// function in worker.send and return true here. Vouchers are available
// when the server generates cards for the run (runner.prepareVouchers).
func (op opKind) available() bool { return op <= opVoucher }

// session is a worker's open charging session.
type session struct {
	open    bool
	sub     uint32
	ref     []byte
	seq     uint32
	updates int
	used    uint64
}

// tally is what one worker saw acknowledged, exactly.
type tally struct {
	toppedUp        charging.Amount
	charged         charging.Amount // event charges
	sessionDebited  charging.Amount
	voucherCredited charging.Amount // redeemed cards' values
	topUpIDs        []topUpID
	uncertain       int64 // requests whose outcome is unknown
}

// topUpID is an acknowledged top-up, for the history check.
type topUpID struct {
	sub     uint32
	seq     uint64
	amount  charging.Amount
	voucher bool // a card's credit: channel "voucher" in the history
}

// worker sends one run's operations over its own conn.
type worker struct {
	id    int
	r     *runner
	k     *conn
	rng   *rand.Rand
	rec   *workerRecorder
	sess  session
	t     tally
	idem  []byte
	idemN uint64
	err   string
}

// nextKey returns a request key unique across runs: the run's random prefix,
// the worker and a counter.
func (w *worker) nextKey() []byte {
	w.idemN++
	b := append(w.idem[:0], w.r.keyPrefix...)
	b = strconv.AppendInt(append(b, '-'), int64(w.id), 36)
	w.idem = strconv.AppendUint(append(b, '-'), w.idemN, 36)
	return w.idem
}

// pick chooses the next operation by the run's weights.
func (w *worker) pick() opKind {
	n := w.rng.IntN(w.r.mixTotal)
	for op := opKind(0); op < opKindCount; op++ {
		if n < w.r.mix[op] {
			return op
		}
		n -= w.r.mix[op]
	}
	return opSMS
}

// send performs one operation and returns its outcome.
func (w *worker) send(op opKind) Outcome {
	switch op {
	case opSMS:
		return w.sms(uint32(w.rng.IntN(w.r.cfg.Subscribers)))
	case opSession:
		return w.sessionStep()
	case opTopUp:
		return w.topUp(uint32(w.rng.IntN(w.r.cfg.Subscribers)))
	case opVoucher:
		return w.redeem(uint32(w.rng.IntN(w.r.cfg.Subscribers)))
	}
	return w.failed("operation " + opNames[op] + " is " + ErrNotAvailable.Error())
}

func (w *worker) failed(msg string) Outcome {
	if w.err == "" {
		w.err = msg
		w.rec.fail(msg)
	}
	return OutcomeFailed
}

// uncertain marks sub's balance as unknown to the audit.
func (w *worker) uncertain(sub uint32) {
	w.t.uncertain++
	w.r.audit.markUncertain(sub)
}

func (w *worker) msisdn(sub uint32) uint64 { return FirstMSISDN + uint64(sub) }

// appendNchfHead appends the fields every Nchf create carries.
func (w *worker) appendNchfHead(b []byte, sub uint32) []byte {
	b = append(b, `{"subscriberIdentifier":"msisdn-`...)
	b = strconv.AppendUint(b, w.msisdn(sub), 10)
	b = append(b, `","nfConsumerIdentification":{"nodeFunctionality":"SMSF","nFName":"bench"},"invocationTimeStamp":"`...)
	b = append(b, w.r.stamp...)
	return append(b, `","invocationSequenceNumber":0,`...)
}

// sms sends one event charge for one SMS.
func (w *worker) sms(sub uint32) Outcome {
	k := w.k
	k.path(pathChargingData)
	b := w.appendNchfHead(k.body[:0], sub)
	k.body = append(b, `"oneTimeEvent":true,"oneTimeEventType":"IEC","multipleUnitUsage":[{"ratingGroup":2,"requestedUnit":{"serviceSpecificUnits":1}}]}`...)
	status, err := k.do(fasthttp.MethodPost, w.r.networkKey, w.nextKey(), true)
	if err != nil {
		w.uncertain(sub)
		return w.failed("sms: " + err.Error())
	}
	o := classify(status)
	if o == OutcomeFailed {
		w.uncertain(sub)
		return w.failed(k.statusError("sms", status).Error())
	}
	if o == OutcomeRefused {
		return o
	}
	ok, err := k.nchfSuccess()
	if err != nil {
		w.uncertain(sub)
		return w.failed("sms: " + err.Error())
	}
	if !ok {
		return OutcomeRefused
	}
	cost := w.r.smsCost
	w.t.charged += cost
	w.r.audit.add(sub, -cost)
	return OutcomeOK
}

// topUp sends one electronic top-up of the configured amount.
func (w *worker) topUp(sub uint32) Outcome {
	k := w.k
	k.path(pathTopUp)
	b := append(k.body[:0], `{"partyAccount":{"id":"`...)
	b = strconv.AppendUint(b, w.msisdn(sub), 10)
	b = append(b, `"},"amount":{"amount":"`...)
	b = w.r.cfg.TopUp.AppendText(b)
	k.body = append(b, `","units":"EUR"},"channel":{"name":"electronic"}}`...)
	status, err := k.do(fasthttp.MethodPost, w.r.channelKey, w.nextKey(), true)
	if err != nil {
		w.uncertain(sub)
		return w.failed("topup: " + err.Error())
	}
	o := classify(status)
	if o != OutcomeOK {
		if o == OutcomeFailed {
			w.uncertain(sub)
			return w.failed(k.statusError("topup", status).Error())
		}
		return o
	}
	v, err := k.parser.ParseBytes(k.resp.Body())
	if err != nil {
		w.uncertain(sub)
		return w.failed("topup: " + err.Error())
	}
	amount := w.r.cfg.TopUp
	w.t.toppedUp += amount
	w.r.audit.add(sub, amount)
	if seq, ok := txSeq(v.GetStringBytes("transactionId"), w.msisdn(sub)); ok {
		if len(w.t.topUpIDs) < w.r.topUpIDsPerWorker {
			w.t.topUpIDs = append(w.t.topUpIDs, topUpID{sub: sub, seq: seq, amount: amount})
		}
	} else {
		w.r.audit.missingID()
	}
	return OutcomeOK
}

// txSeq reads the sequence of a transaction ID "<msisdn>-<seq>" and checks
// that it names msisdn.
func txSeq(id []byte, msisdn uint64) (uint64, bool) {
	for i := len(id) - 1; i > 0; i-- {
		if id[i] == '-' {
			m, err1 := strconv.ParseUint(string(id[:i]), 10, 64)
			s, err2 := strconv.ParseUint(string(id[i+1:]), 10, 64)
			return s, err1 == nil && err2 == nil && m == msisdn && s > 0
		}
	}
	return 0, false
}

// Voice usage the session scenario reports: 60 s granted and used per
// update, 30 s at release.
const (
	sessionGrantSeconds   = 60
	sessionReleaseSeconds = 30
)

// sessionStep advances the worker's session: create when none is open,
// else update until SessionUpdates are done, then release.
func (w *worker) sessionStep() Outcome {
	if !w.sess.open {
		return w.sessionCreate(uint32(w.rng.IntN(w.r.cfg.Subscribers)))
	}
	if w.sess.updates < w.r.cfg.SessionUpdates {
		return w.sessionReport(false)
	}
	return w.sessionReport(true)
}

func (w *worker) sessionCreate(sub uint32) Outcome {
	k := w.k
	k.path(pathChargingData)
	b := w.appendNchfHead(k.body[:0], sub)
	k.body = append(b, `"multipleUnitUsage":[{"ratingGroup":1,"requestedUnit":{"time":60}}]}`...)
	status, err := k.do(fasthttp.MethodPost, w.r.networkKey, w.nextKey(), true)
	if err != nil {
		// A reservation changes no balance: an unknown create only leaves
		// money held until it expires, which the audit does not see.
		return w.failed("session create: " + err.Error())
	}
	o := classify(status)
	if o != OutcomeOK {
		if o == OutcomeFailed {
			return w.failed(k.statusError("session create", status).Error())
		}
		return o
	}
	if ok, err := k.nchfSuccess(); err != nil || !ok {
		if err != nil {
			return w.failed("session create: " + err.Error())
		}
		return OutcomeRefused
	}
	loc := k.resp.Header.Peek("Location")
	i := len(loc) - 1
	for i >= 0 && loc[i] != '/' {
		i--
	}
	if i == len(loc)-1 {
		return w.failed("session create: answer has no Location")
	}
	w.sess = session{open: true, sub: sub, ref: append(w.sess.ref[:0], loc[i+1:]...), seq: 0}
	return OutcomeOK
}

// sessionReport sends an update (60 s used, 60 s more requested) or the
// release (30 s used) and accounts the debit the tariff gives for them.
func (w *worker) sessionReport(release bool) Outcome {
	k := w.k
	s := &w.sess
	s.seq++
	u := append(append(k.uri[:0], k.c.base...), pathChargingData...)
	u = append(append(u, '/'), s.ref...)
	used := uint64(sessionGrantSeconds)
	b := append(k.body[:0], `{"invocationSequenceNumber":`...)
	b = strconv.AppendUint(b, uint64(s.seq), 10)
	if release {
		u = append(u, "/release"...)
		used = sessionReleaseSeconds
		b = append(b, `,"multipleUnitUsage":[{"ratingGroup":1,"usedUnitContainer":[{"time":30}]}]}`...)
	} else {
		u = append(u, "/update"...)
		b = append(b, `,"multipleUnitUsage":[{"ratingGroup":1,"requestedUnit":{"time":60},"usedUnitContainer":[{"time":60}]}]}`...)
	}
	k.uri, k.body = u, b
	status, err := k.do(fasthttp.MethodPost, w.r.networkKey, w.nextKey(), true)
	what := "session update"
	if release {
		what = "session release"
	}
	if err != nil {
		w.uncertain(s.sub)
		s.open = false
		return w.failed(what + ": " + err.Error())
	}
	o := classify(status)
	if o != OutcomeOK {
		// A refused report may still have debited the usage (validity
		// ended mid-session): the balance of sub is no longer known.
		w.uncertain(s.sub)
		s.open = false
		if o == OutcomeFailed {
			return w.failed(k.statusError(what, status).Error())
		}
		return o
	}
	cost := w.r.voice.Cost(s.used+used) - w.r.voice.Cost(s.used)
	s.used += used
	w.t.sessionDebited += cost
	w.r.audit.add(s.sub, -cost)
	if release {
		s.open = false
		return OutcomeOK
	}
	s.updates++
	if ok, err := k.nchfSuccess(); err != nil || !ok {
		// Used units were debited; no more were granted: end here.
		w.sessionReport(true)
		return OutcomeRefused
	}
	return OutcomeOK
}

// closeSession releases an open session at the end of a run, untimed, so
// that its usage is debited and counted before the audit.
func (w *worker) closeSession() {
	if w.sess.open {
		w.sessionReport(true)
	}
}

// stampOf formats the invocation time stamp every request of a run carries.
func stampOf(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
