package storage

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// modelValues returns encoded accounts, entries and request records made
// by the real state machine: the fuzz seeds and round-trip cases.
func modelValues(n int) (accounts, entries, requests [][]byte) {
	m := newModel(99)
	for range n {
		c := m.next()
		accounts = append(accounts, appendAccount(nil, &c.Account))
		if c.Entry.Seq != 0 {
			entries = append(entries, appendEntry(nil, &c.Entry))
		}
		if c.Key != "" {
			requests = append(requests, appendRequest(nil, &c.Request))
		}
	}
	return
}

func TestCodecRoundTrip(t *testing.T) {
	m := newModel(7)
	sawReservations := false
	for range 2000 {
		c := m.next()
		require.NoError(t, validateChange(&c))
		a, err := decodeAccount(appendAccount(nil, &c.Account))
		require.NoError(t, err)
		require.Equal(t, c.Account, a)
		sawReservations = sawReservations || len(a.Reservations) > 0
		if c.Entry.Seq != 0 {
			e, err := decodeEntry(appendEntry(nil, &c.Entry))
			require.NoError(t, err)
			require.Equal(t, c.Entry, e)
		}
		if c.Key != "" {
			q, err := decodeRequest(appendRequest(nil, &c.Request))
			require.NoError(t, err)
			require.Equal(t, c.Request, q)
		}
	}
	require.True(t, sawReservations, "the model must exercise reservations")

	// Extremes of every field that may take them.
	full := charging.Account{ID: ^charging.SubscriberID(0), Balance: charging.BalanceMax, ValidUntil: -1, Seq: ^uint64(0),
		NextSession: ^uint32(0), Created: -1 << 63, Month: charging.MonthCounters{Month: 209912, Spent: -5, ToppedUp: 7, Charges: 1, TopUps: 2}}
	for i := range charging.SessionsMax {
		full.Reservations = append(full.Reservations, charging.Reservation{Session: uint32(i), RatingGroup: 1 << 31,
			Granted: ^uint64(0), Used: 1, Reserved: charging.BalanceMax / charging.SessionsMax, Charged: 1, ExpiresAt: -2, Final: i%2 == 0})
	}
	b := appendAccount(nil, &full)
	require.Len(t, b, accountLenMax)
	a, err := decodeAccount(b)
	require.NoError(t, err)
	require.Equal(t, full, a)

	e := charging.Entry{Seq: 1, Time: -1, Kind: charging.EntryAdjustment, Channel: charging.ChannelOps, Bank: 255,
		RatingGroup: 9, Units: ^uint64(0), Amount: -charging.BalanceMax, BalanceAfter: 0, ValidUntilAfter: 1 << 40,
		Ref: 3, Key: string(bytes.Repeat([]byte{0xff}, charging.RequestKeyBytesMax))}
	b = appendEntry(nil, &e)
	require.Len(t, b, entryLenMax)
	got, err := decodeEntry(b)
	require.NoError(t, err)
	require.Equal(t, e, got)

	q := charging.RequestRecord{Fingerprint: ^uint64(0), Kind: charging.KindUpdate, Outcome: charging.Outcome{
		Result: charging.ResultInsufficientBalance, Seq: 4, Amount: charging.BalanceMax, Balance: charging.BalanceMax,
		ValidUntil: -9, State: charging.StateSuspended, Session: 77, Granted: 5, FinalUnit: true, QuotaValidity: 600, Replayed: true},
		Time: 1<<63 - 1}
	b = appendRequest(nil, &q)
	require.Len(t, b, requestLen)
	gotQ, err := decodeRequest(b)
	require.NoError(t, err)
	require.Equal(t, q, gotQ)

	// A record written before records had a time still decodes, with
	// Time 0 (the pruner's epoch stands for it).
	q.Time = 0
	b = appendRequestV1(nil, &q)
	require.Len(t, b, requestV1Len)
	gotQ, err = decodeRequest(b)
	require.NoError(t, err)
	require.Equal(t, q, gotQ)
}

// appendRequestV1 is the encoder of request records before v2 (the
// layout of v2 without its time), kept to write old records in tests.
func appendRequestV1(b []byte, q *charging.RequestRecord) []byte {
	v2 := appendRequest(nil, q)
	b = append(b, requestV1)
	return append(b, v2[1:requestV1Len]...)
}

// appendRequestAnyVersion encodes q as the version that decodes to it:
// v1 for a record without time, v2 otherwise.
func appendRequestAnyVersion(q *charging.RequestRecord) []byte {
	if q.Time == 0 {
		return appendRequestV1(nil, q)
	}
	return appendRequest(nil, q)
}

func TestDecodeRejects(t *testing.T) {
	accounts, entries, requests := modelValues(50)
	a, e, q := accounts[len(accounts)-1], entries[0], requests[0]
	spoil := func(b []byte, i int, v byte) []byte {
		c := bytes.Clone(b)
		c[i] = v
		return c
	}
	for name, v := range map[string][]byte{
		"empty":           nil,
		"version":         spoil(a, 0, 2),
		"truncated":       a[:len(a)-1],
		"trailing":        append(bytes.Clone(a), 0),
		"negative":        spoil(a, 1+8+7, 0x80), // balance's top byte
		"too many res":    spoil(a, accountHeadLen-1, charging.SessionsMax+1),
		"res count lies":  spoil(a, accountHeadLen-1, 1),
		"balance too big": spoil(a, 1+8+6, 0x7f),
	} {
		_, err := decodeAccount(v)
		require.ErrorIs(t, err, ErrCorrupt, "account %s", name)
	}
	for name, v := range map[string][]byte{
		"version":     spoil(e, 0, 0),
		"truncated":   e[:entryHeadLen-1],
		"key too big": spoil(e, entryHeadLen-1, 200),
		"seq zero":    append(append([]byte{entryV1}, make([]byte, 8)...), e[9:]...),
		"kind":        spoil(e, 17, 0),
	} {
		_, err := decodeEntry(v)
		require.ErrorIs(t, err, ErrCorrupt, "entry %s", name)
	}
	for name, v := range map[string][]byte{
		"version":   spoil(q, 0, 9),
		"truncated": q[:len(q)-1],
		"kind":      spoil(q, 9, 0),
		"result":    spoil(q, 10, 250),
		"flags":     spoil(q, requestV1Len-5, 0x80),
		"time zero": append(bytes.Clone(q[:requestV1Len]), make([]byte, 8)...),
		"time < 0":  append(bytes.Clone(q[:requestV1Len]), 0, 0, 0, 0, 0, 0, 0, 0x80),
		"v1 long":   spoil(q, 0, requestV1),
		"v2 short":  q[:requestV1Len],
	} {
		_, err := decodeRequest(v)
		require.ErrorIs(t, err, ErrCorrupt, "request %s", name)
	}
	_, err := decodeTotals([]byte{totalsV1, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0})
	require.ErrorIs(t, err, ErrCorrupt)
	_, err = decodeRefunded([]byte{refundedV1, 1})
	require.ErrorIs(t, err, ErrCorrupt)
}

// fuzzDecoder checks the decoder's contract on any input: no panic; a
// value it accepts is valid, re-encodes to the very same bytes (one
// encoding per value), and none of its strict prefixes decodes.
func fuzzDecoder[T any](f *testing.F, seeds [][]byte, decode func([]byte) (T, error), encode func(*T) []byte, validate func(*T) error) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decode(b)
		if err != nil {
			return
		}
		if err := validate(&v); err != nil {
			t.Fatalf("decoded an invalid value: %v", err)
		}
		if again := encode(&v); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, again)
		}
		for i := range b {
			if _, err := decode(b[:i]); err == nil {
				t.Fatalf("prefix of %d bytes decoded", i)
			}
		}
	})
}

func FuzzDecodeAccount(f *testing.F) {
	accounts, _, _ := modelValues(200)
	fuzzDecoder(f, accounts, decodeAccount,
		func(a *charging.Account) []byte { return appendAccount(nil, a) }, validateAccount)
}

func FuzzDecodeEntry(f *testing.F) {
	_, entries, _ := modelValues(200)
	fuzzDecoder(f, entries, decodeEntry,
		func(e *charging.Entry) []byte { return appendEntry(nil, e) }, validateEntry)
}

func FuzzDecodeRequest(f *testing.F) {
	_, _, requests := modelValues(200)
	// Old records are input too: v1 seeds, and re-encoding checks that
	// each accepted input has exactly one encoding in its own version.
	for _, q := range requests[:20] {
		requests = append(requests, append([]byte{requestV1}, q[1:requestV1Len]...))
	}
	fuzzDecoder(f, requests, decodeRequest, appendRequestAnyVersion, validateRequest)
}

func FuzzDecodeTotals(f *testing.F) {
	fuzzDecoder(f, [][]byte{appendTotals(nil, charging.Totals{Owed: 12345, Accounts: 3})}, decodeTotals,
		func(t *charging.Totals) []byte { return appendTotals(nil, *t) },
		func(*charging.Totals) error { return nil })
}

func FuzzDecodeRefunded(f *testing.F) {
	fuzzDecoder(f, [][]byte{appendRefunded(nil, 9)}, decodeRefunded,
		func(s *uint64) []byte { return appendRefunded(nil, *s) },
		func(*uint64) error { return nil })
}
