package httpapi

import (
	"strconv"
	"strings"
	"testing"

	"github.com/ocs-engine/ocs/charging"
	"github.com/stretchr/testify/require"
)

const msisdn = "38349123456"

// smsBody is a one-SMS immediate event charge.
func smsBody(isn int, sub string) string {
	return `{"subscriberIdentifier":"msisdn-` + sub + `",
	"nfConsumerIdentification":{"nodeFunctionality":"SMSF","nFName":"smsf-1"},
	"invocationTimeStamp":"2026-03-01T12:00:00.000Z","invocationSequenceNumber":` + strconv.Itoa(isn) + `,
	"oneTimeEvent":true,"oneTimeEventType":"IEC",
	"multipleUnitUsage":[{"ratingGroup":2,"requestedUnit":{"serviceSpecificUnits":1}}]}`
}

func sessionBody(isn int, rg int, requested, used string) string {
	b := `{"subscriberIdentifier":"msisdn-` + msisdn + `","nfConsumerIdentification":{"nFName":"smf-1"},
	"invocationTimeStamp":"2026-03-01T12:00:00Z","invocationSequenceNumber":` + strconv.Itoa(isn) +
		`,"multipleUnitUsage":[{"ratingGroup":` + strconv.Itoa(rg)
	if requested != "" {
		b += `,"requestedUnit":{` + requested + `}`
	}
	if used != "" {
		b += `,"usedUnitContainer":[{` + used + `}]`
	}
	return b + `}],"pDUSessionChargingInformation":{"chargingId":7}}`
}

func TestNchfEventChargeAndReplay(t *testing.T) {
	h := newHarness(t)
	id := h.provision(msisdn, "1.00")

	r := h.do("POST", nchfBase, keyNetwork, smsBody(1, msisdn))
	require.Equal(t, 201, r.status, r.body)
	v := r.json(t)
	require.Equal(t, "SUCCESS", string(v.GetStringBytes("multipleUnitInformation", "0", "resultCode")))
	require.Equal(t, 2, v.GetInt("multipleUnitInformation", "0", "ratingGroup"))
	require.Equal(t, 1, v.GetInt("multipleUnitInformation", "0", "grantedUnit", "serviceSpecificUnits"))
	require.Equal(t, 1, v.GetInt("invocationSequenceNumber"))
	require.Equal(t, "2026-03-01T12:00:00.000Z", string(v.GetStringBytes("invocationTimeStamp")))
	require.Equal(t, charging.Euros(1)-5*charging.AmountPerCent, h.engine.balance(t, id))

	// A retry (same nFName, timestamp, ISN) gets the same answer and is
	// not charged again.
	again := h.do("POST", nchfBase, keyNetwork, smsBody(1, msisdn))
	require.Equal(t, 201, again.status)
	require.Equal(t, r.body, again.body)
	require.Equal(t, charging.Euros(1)-5*charging.AmountPerCent, h.engine.balance(t, id))

	// The same key for another payload (two SMS) is refused, changes nothing.
	reused := strings.Replace(smsBody(1, msisdn), `"serviceSpecificUnits":1`, `"serviceSpecificUnits":2`, 1)
	r = h.do("POST", nchfBase, keyNetwork, reused)
	require.Equal(t, 409, r.status, r.body)
	require.Equal(t, "request_key_reused", r.code(t))
	require.Equal(t, charging.Euros(1)-5*charging.AmountPerCent, h.engine.balance(t, id))

	// An explicit Idempotency-Key wins over the derived one.
	r = h.do("POST", nchfBase, keyNetwork, smsBody(1, msisdn), "Idempotency-Key", "sms-2")
	require.Equal(t, 201, r.status, r.body)
	require.Equal(t, charging.Euros(1)-10*charging.AmountPerCent, h.engine.balance(t, id))
}

func TestNchfEventRefusals(t *testing.T) {
	h := newHarness(t)
	id := h.provision(msisdn, "0.04")

	r := h.do("POST", nchfBase, keyNetwork, smsBody(1, msisdn))
	require.Equal(t, 403, r.status, r.body)
	require.Equal(t, "insufficient_balance", r.code(t))
	require.Equal(t, "QUOTA_LIMIT_REACHED", r.str(t, "cause"))
	require.Equal(t, 4*charging.AmountPerCent, h.engine.balance(t, id))

	r = h.do("POST", nchfBase, keyNetwork, smsBody(2, "38344000000"))
	require.Equal(t, 404, r.status, r.body)
	require.Equal(t, "unknown_subscriber", r.code(t))
	require.Equal(t, "USER_UNKNOWN", r.str(t, "cause"))

	r = h.do("POST", nchfBase, keyNetwork, strings.Replace(smsBody(3, msisdn), `"ratingGroup":2`, `"ratingGroup":99`, 1))
	require.Equal(t, 400, r.status, r.body)
	require.Equal(t, "unknown_rating_group", r.code(t))
}

func TestNchfDecoderRefusals(t *testing.T) {
	h := newHarness(t)
	h.provision(msisdn, "5")
	before := h.engine.count()
	two := strings.Replace(smsBody(1, msisdn), `"multipleUnitUsage":[`,
		`"multipleUnitUsage":[{"ratingGroup":1,"requestedUnit":{"time":60}},`, 1)
	noTS := strings.Replace(smsBody(1, msisdn), `"invocationTimeStamp":"2026-03-01T12:00:00.000Z",`, ``, 1)
	longName := strings.Replace(smsBody(1, msisdn), `"smsf-1"`, `"`+strings.Repeat("n", 40)+`"`, 1)
	for _, tc := range []struct {
		name, body, code string
		headers          []string
	}{
		{"malformed", `{"subscriberIdentifier":`, "malformed_json", nil},
		{"array", `[1]`, "malformed_json", nil},
		{"two rating groups", two, "one_rating_group_per_request", nil},
		{"no timestamp", noTS, "missing_invocation_time_stamp", nil},
		{"key too long", longName, "request_key_too_long", nil},
		{"header key too long", smsBody(1, msisdn), "request_key_too_long", []string{"Idempotency-Key", strings.Repeat("k", 65)}},
		{"imsi", strings.Replace(smsBody(1, msisdn), "msisdn-", "imsi-", 1), "invalid_subscriber_identifier", nil},
		{"bad msisdn", strings.Replace(smsBody(1, msisdn), "msisdn-"+msisdn, "msisdn-12", 1), "invalid_msisdn", nil},
		{"float units", strings.Replace(smsBody(1, msisdn), `"serviceSpecificUnits":1`, `"serviceSpecificUnits":1.5`, 1), "invalid_units", nil},
		{"negative units", strings.Replace(smsBody(1, msisdn), `"serviceSpecificUnits":1`, `"serviceSpecificUnits":-1`, 1), "invalid_units", nil},
		{"PEC", strings.Replace(smsBody(1, msisdn), `"IEC"`, `"PEC"`, 1), "unsupported_one_time_event_type", nil},
		{"no usage", strings.Replace(smsBody(1, msisdn), `"multipleUnitUsage"`, `"x"`, 1), "missing_multiple_unit_usage", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("POST", nchfBase, keyNetwork, tc.body, tc.headers...)
			require.Equal(t, 400, r.status, r.body)
			require.Equal(t, tc.code, r.code(t))
			require.NotEmpty(t, r.str(t, "cause"))
		})
	}
	require.Equal(t, before, h.engine.count(), "a refused decode must not reach the engine")
}

func TestNchfSession(t *testing.T) {
	h := newHarness(t)
	id := h.provision(msisdn, "10.00")

	r := h.do("POST", nchfBase, keyNetwork, sessionBody(0, 1, `"time":300`, ""))
	require.Equal(t, 201, r.status, r.body)
	loc := r.headers["Location"]
	require.Equal(t, nchfBase+"/"+msisdn+"-1", loc)
	require.Equal(t, 300, r.json(t).GetInt("multipleUnitInformation", "0", "grantedUnit", "time"))
	require.Equal(t, 600, r.json(t).GetInt("multipleUnitInformation", "0", "validityTime"))
	require.Nil(t, r.json(t).Get("multipleUnitInformation", "0", "finalUnitIndication"))
	require.Equal(t, charging.Euros(10), h.engine.balance(t, id), "a reservation holds money, it does not debit")

	// 90 s used: 0.06 €/min billed per second after the first minute = 0.09 €.
	upd := sessionBody(1, 1, `"time":300`, `"time":90`)
	r = h.do("POST", loc+"/update", keyNetwork, upd)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, "SUCCESS", r.str(t, "multipleUnitInformation", "0", "resultCode"))
	require.Equal(t, charging.Euros(10)-9*charging.AmountPerCent, h.engine.balance(t, id))
	// Same ISN again: a retry, not a second debit.
	again := h.do("POST", loc+"/update", keyNetwork, upd)
	require.Equal(t, r.body, again.body)
	require.Equal(t, charging.Euros(10)-9*charging.AmountPerCent, h.engine.balance(t, id))

	r = h.do("POST", loc+"/release", keyNetwork, sessionBody(2, 1, "", `"time":10`))
	require.Equal(t, 204, r.status, r.body)
	require.Empty(t, r.body)
	require.Equal(t, charging.Euros(10)-10*charging.AmountPerCent, h.engine.balance(t, id))

	r = h.do("POST", loc+"/release", keyNetwork, sessionBody(3, 1, "", ""))
	require.Equal(t, 404, r.status, r.body)
	require.Equal(t, "unknown_session", r.code(t))

	for _, bad := range []string{"/x-1", "/" + msisdn + "-0", "/0" + msisdn + "-1", "/" + msisdn + "-", "/" + msisdn + "-99999999999"} {
		r = h.do("POST", nchfBase+bad+"/update", keyNetwork, upd)
		require.Equal(t, 404, r.status, bad)
		require.Equal(t, "CONTEXT_NOT_FOUND", r.str(t, "cause"))
	}
	r = h.do("POST", loc+"/update", keyNetwork, strings.Replace(upd, `"invocationSequenceNumber":1,`, ``, 1))
	require.Equal(t, 400, r.status, r.body)
	require.Equal(t, "missing_invocation_sequence_number", r.code(t))
}

func TestNchfFinalUnitAndQuotaLimit(t *testing.T) {
	h := newHarness(t)
	id := h.provision(msisdn, "0.09")

	// 0.09 € buys 90 s of the 300 asked: the grant is the final one.
	r := h.do("POST", nchfBase, keyNetwork, sessionBody(0, 1, `"time":300`, ""))
	require.Equal(t, 201, r.status, r.body)
	mui := r.json(t).Get("multipleUnitInformation", "0")
	require.Equal(t, 90, mui.GetInt("grantedUnit", "time"))
	require.Equal(t, "TERMINATE", string(mui.GetStringBytes("finalUnitIndication", "finalUnitAction")))

	// All 90 s used, more asked: the usage is debited and the answer is
	// 200 with the per-unit QUOTA_LIMIT_REACHED and no grant.
	r = h.do("POST", r.headers["Location"]+"/update", keyNetwork, sessionBody(1, 1, `"time":300`, `"time":90`))
	require.Equal(t, 200, r.status, r.body)
	mui = r.json(t).Get("multipleUnitInformation", "0")
	require.Equal(t, "QUOTA_LIMIT_REACHED", string(mui.GetStringBytes("resultCode")))
	require.Nil(t, mui.Get("grantedUnit"))
	require.Equal(t, charging.Amount(0), h.engine.balance(t, id))

	// Data: the grant is expressed in the tariff's unit when none was asked.
	h.provision("38349000001", "1")
	body := strings.Replace(sessionBody(0, 3, "", ""), msisdn, "38349000001", 1)
	r = h.do("POST", nchfBase, keyNetwork, body)
	require.Equal(t, 201, r.status, r.body)
	require.Equal(t, 10_000_000, r.json(t).GetInt("multipleUnitInformation", "0", "grantedUnit", "totalVolume"))
}

func TestParseRefRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		id      charging.SubscriberID
		session uint32
	}{{38349123456, 1}, {383491234567890, 4294967295}, {10000000000, 7}} {
		got, s, ok := parseRef(appendRef(nil, tc.id, tc.session))
		require.True(t, ok)
		require.Equal(t, tc.id, got)
		require.Equal(t, tc.session, s)
	}
	for _, bad := range []string{"", "-", "38349123456", "38349123456-", "38349123456-01", "3834912345-1",
		"3834912345678901-1", "+38349123456-1", "38349123456-1-2", "38349123456-4294967296", "38349123456-a"} {
		_, _, ok := parseRef([]byte(bad))
		require.False(t, ok, bad)
	}
}
