package httpapi

import (
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/ocs-engine/ocs/charging"
	"github.com/valyala/fastjson"
)

// b2s views b as a string without copying. Only for callees that do not
// keep the string (ParseMSISDN, ParseAmount, comparisons): fasthttp and
// fastjson reuse the bytes once the handler returns.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// problem is a refusal before or after the engine: an RFC 9457 document.
// The zero value (code == "") means no problem, so decoders return it by
// value and the happy path allocates nothing.
type problem struct {
	status int
	code   string // our stable code: a charging.Result name or a decoder code
	detail string // a sentence a person understands
	cause  string // Nchf only: TS 32.291 / TS 29.500 application error cause
}

func (p problem) ok() bool { return p.code == "" }

func badRequest(code, detail string) problem {
	return problem{status: 400, code: code, detail: detail, cause: "MANDATORY_IE_INCORRECT"}
}

// Decoder problems shared by every interface. Sentences are constant so that
// a refusal allocates nothing either.
var (
	probMalformedJSON = problem{status: 400, code: "malformed_json",
		detail: "The request body is not valid JSON.", cause: "INVALID_MSG_FORMAT"}
	probNotObject = problem{status: 400, code: "malformed_json",
		detail: "The request body must be a JSON object.", cause: "INVALID_MSG_FORMAT"}
	probMissingIdemKey = problem{status: 400, code: "missing_idempotency_key",
		detail: "This request needs an Idempotency-Key header, so that a retry is not applied twice."}
	probKeyTooLong = badRequest("request_key_too_long",
		"The request key (Idempotency-Key, or nFName|invocationTimeStamp|invocationSequenceNumber) is longer than 64 bytes.")
	probKeyInvalid = badRequest("invalid_idempotency_key",
		"The Idempotency-Key header must be printable ASCII (space to ~), the characters of an HTTP structured-field string.")
	probKeyReserved = badRequest("reserved_idempotency_key",
		"The Idempotency-Key header may not contain '/' or '|': the engine makes its own request keys with them (transfers, *101# payments, scratch cards, charging sessions).")
	probBodyTooLarge = problem{status: 413, code: "body_too_large",
		detail: "The request body is larger than this API accepts (64 KiB)."}
	probUnauthorized = problem{status: 401, code: "unauthorized",
		detail: "Send a valid API key as 'Authorization: Bearer <key>'."}
	probForbidden = problem{status: 403, code: "forbidden",
		detail: "This API key's role may not use this operation."}
	probNotFound = problem{status: 404, code: "not_found",
		detail: "No operation is served at this path."}
	probMethod = problem{status: 405, code: "method_not_allowed",
		detail: "This path does not serve this HTTP method."}
	probUnavailable = problem{status: 503, code: "unavailable",
		detail: "The engine could not answer (starting, stopping or timed out); nothing is known to have changed: retry with the same request key.",
		cause:  "SYSTEM_FAILURE"}
	probInvalidMSISDN = badRequest("invalid_msisdn", charging.ErrMSISDN.Error()+".")
)

// JSON appenders: every response is built by appending into one pooled
// buffer, so no encoding/json, no reflection and no allocation.

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			const hex = "0123456789abcdef"
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		case c < utf8.RuneSelf:
			b = append(b, c)
		default:
			// Strings from clients (request keys, reasons) may be any
			// bytes; JSON must be UTF-8. An invalid byte becomes U+FFFD,
			// as encoding/json writes it.
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
			continue
		}
		i++
	}
	return append(b, '"')
}

func appendKey(b []byte, key string) []byte {
	if b[len(b)-1] != '{' && b[len(b)-1] != '[' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendStringField(b []byte, key, v string) []byte {
	return appendString(appendKey(b, key), v)
}

func appendUintField(b []byte, key string, v uint64) []byte {
	return strconv.AppendUint(appendKey(b, key), v, 10)
}

// appendAmountString writes an amount as a JSON string ("12.50"): exact for
// every client, including those that parse JSON numbers into floats.
func appendAmountString(b []byte, key string, a charging.Amount) []byte {
	b = append(appendKey(b, key), '"')
	return append(a.AppendText(b), '"')
}

// appendMoney writes a TMF Money / Quantity object. TMF's schema types
// amount as a number, so it is written as one; the text is exact (at most 4
// decimals), never formatted through a float.
func appendMoney(b []byte, key string, a charging.Amount) []byte {
	b = append(appendKey(b, key), `{"amount":`...)
	b = a.AppendText(b)
	return append(b, `,"units":"EUR"}`...)
}

// appendTime writes Unix seconds as an RFC 3339 UTC string.
func appendTime(b []byte, key string, unix int64) []byte {
	b = append(appendKey(b, key), '"')
	b = time.Unix(unix, 0).UTC().AppendFormat(b, time.RFC3339)
	return append(b, '"')
}

// appendTxID writes the transaction ID users quote: "<msisdn>-<seq>".
func appendTxID(b []byte, id charging.SubscriberID, seq uint64) []byte {
	b = id.AppendText(b)
	b = append(b, '-')
	return strconv.AppendUint(b, seq, 10)
}

// Field readers over fastjson values.

// amountOf reads an amount given as a JSON number or string, from its text,
// exactly: 5.005 is 50050 units, 1e1 and 5.00001 are refused.
func amountOf(v *fastjson.Value, field string) (charging.Amount, problem) {
	var scratch [32]byte
	var text []byte
	switch {
	case v == nil:
		return 0, badRequest("missing_amount", "The field "+field+" is required.")
	case v.Type() == fastjson.TypeNumber:
		text = v.MarshalTo(scratch[:0])
	case v.Type() == fastjson.TypeString:
		text, _ = v.StringBytes()
	default:
		return 0, badRequest("invalid_amount", "The field "+field+" must be a decimal number of euros, e.g. 12.50.")
	}
	a, err := charging.ParseAmount(b2s(text))
	switch err {
	case nil:
		return a, problem{}
	case charging.ErrAmountRange:
		return 0, badRequest("amount_out_of_range", "The field "+field+" is beyond one million euros.")
	default:
		return 0, badRequest("invalid_amount", "The field "+field+": "+err.Error()+".")
	}
}

// stringOf returns the bytes of a string field, nil and false if absent.
func stringOf(v *fastjson.Value, key string) ([]byte, bool, problem) {
	f := v.Get(key)
	if f == nil {
		return nil, false, problem{}
	}
	s, err := f.StringBytes()
	if err != nil {
		return nil, false, badRequest("invalid_field", "The field "+key+" must be a string.")
	}
	return s, true, problem{}
}

// msisdnOf parses a subscriber number in any local form.
func msisdnOf(b []byte) (charging.SubscriberID, problem) {
	id, err := charging.ParseMSISDN(b2s(b))
	if err != nil {
		return 0, probInvalidMSISDN
	}
	return id, problem{}
}

// checkFields refuses any top-level field of o not in allowed. Fields that
// start with '@' (TMF's @type, @baseType, @schemaLocation) are metadata and
// always allowed. Refusing the rest catches typos ("ammount") and features a
// client expects but we do not implement (a recurring top-up), instead of
// silently doing something else.
func checkFields(o *fastjson.Object, allowed ...string) problem {
	var bad []byte
	o.Visit(func(key []byte, _ *fastjson.Value) {
		if bad != nil || (len(key) > 0 && key[0] == '@') {
			return
		}
		for _, a := range allowed {
			if b2s(key) == a {
				return
			}
		}
		bad = key
	})
	if bad == nil {
		return problem{}
	}
	p := badRequest("unknown_field", "The field \""+string(bad)+"\" is not supported here.")
	return p
}

// parseObject parses body with p and returns the top-level object.
func parseObject(p *fastjson.Parser, body []byte) (*fastjson.Value, *fastjson.Object, problem) {
	v, err := p.ParseBytes(body)
	if err != nil {
		return nil, nil, probMalformedJSON
	}
	o, err := v.Object()
	if err != nil {
		return nil, nil, probNotObject
	}
	return v, o, problem{}
}
