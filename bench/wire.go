package bench

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/ocs-engine/ocs/charging"
)

// Paths of the engine's HTTP API.
const (
	pathSubscribers  = "/v1/subscribers/"
	pathAPIKeys      = "/v1/apikeys"
	pathLedger       = "/v1/ledger"
	pathChargingData = "/nchf-convergedcharging/v3/chargingdata"
	pathTopUp        = "/tmf-api/prepayBalanceManagement/v4/topupBalance"
)

// ErrNotAvailable is returned when the server has no endpoint for a
// scenario's operation: the scenario is skipped with this reason.
var ErrNotAvailable = errors.New("not available on this server")

// Client talks to one server. It is safe for concurrent use; each worker
// gets its own conn with reused request and response buffers.
type Client struct {
	base    string // scheme://host
	hc      *fasthttp.HostClient
	timeout time.Duration
	opsKey  string
}

// NewClient returns a client for target (http://host:port) holding up to
// conns connections.
func NewClient(target, opsKey string, conns int, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("bench: target %q must be http://host:port", target)
	}
	hc := &fasthttp.HostClient{
		Addr:     u.Host,
		IsTLS:    u.Scheme == "https",
		MaxConns: conns,
		// A retried POST would be a second request with the same key:
		// correct but it would hide a failure from the figures.
		MaxIdemponentCallAttempts: 1,
		ReadTimeout:               timeout,
		WriteTimeout:              timeout,
		MaxConnWaitTimeout:        timeout,
		ReadBufferSize:            8 << 10,
		WriteBufferSize:           8 << 10,
		NoDefaultUserAgentHeader:  true,
	}
	return &Client{base: u.Scheme + "://" + u.Host, hc: hc, timeout: timeout, opsKey: opsKey}, nil
}

// Close drops idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// conn is one worker's reusable request state: no allocation per request
// once warm.
type conn struct {
	c      *Client
	req    *fasthttp.Request
	resp   *fasthttp.Response
	uri    []byte
	body   []byte
	auth   []byte
	parser fastjson.Parser
}

func (c *Client) conn() *conn {
	return &conn{c: c, req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse(),
		uri: make([]byte, 0, 256), body: make([]byte, 0, 512), auth: make([]byte, 0, 128)}
}

func (k *conn) release() {
	fasthttp.ReleaseRequest(k.req)
	fasthttp.ReleaseResponse(k.resp)
}

// do sends method to the path already in k.uri with k.body (nil: none) and
// key as bearer token; idem, if not nil, is the Idempotency-Key.
func (k *conn) do(method, key string, idem []byte, withBody bool) (int, error) {
	ct := ""
	if withBody {
		ct = "application/json"
	}
	return k.send(method, key, idem, ct)
}

// doForm POSTs k.body as an HTML form (the USSD gateway convention).
func (k *conn) doForm(key string) (int, error) {
	return k.send(fasthttp.MethodPost, key, nil, "application/x-www-form-urlencoded")
}

// send is do with the body's content type ("": no body).
func (k *conn) send(method, key string, idem []byte, contentType string) (int, error) {
	req := k.req
	req.Reset()
	req.Header.SetMethod(method)
	req.SetRequestURIBytes(k.uri)
	k.auth = append(append(k.auth[:0], "Bearer "...), key...)
	req.Header.SetBytesV("Authorization", k.auth)
	if idem != nil {
		req.Header.SetBytesV("Idempotency-Key", idem)
	}
	if contentType != "" {
		req.Header.SetContentType(contentType)
		req.SetBody(k.body)
	}
	k.resp.Reset()
	if err := k.c.hc.Do(req, k.resp); err != nil {
		return 0, err
	}
	return k.resp.StatusCode(), nil
}

func (k *conn) path(p string) { k.uri = append(append(k.uri[:0], k.c.base...), p...) }

// statusError describes an unexpected answer.
func (k *conn) statusError(what string, status int) error {
	b := k.resp.Body()
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Errorf("%s: status %d: %s", what, status, bytes.TrimSpace(b))
}

// IssueKey creates an API key of role with the ops key.
func (c *Client) IssueKey(role string) (string, error) {
	k := c.conn()
	defer k.release()
	k.path(pathAPIKeys)
	k.body = append(append(append(k.body[:0], `{"role":"`...), role...), `"}`...)
	status, err := k.do(fasthttp.MethodPost, c.opsKey, nil, true)
	if err != nil {
		return "", fmt.Errorf("bench: issue %s key: %w", role, err)
	}
	if status != fasthttp.StatusCreated && status != fasthttp.StatusOK {
		return "", k.statusError("bench: issue "+role+" key", status)
	}
	v, err := k.parser.ParseBytes(k.resp.Body())
	if err != nil {
		return "", fmt.Errorf("bench: issue %s key: %w", role, err)
	}
	key := string(v.GetStringBytes("key"))
	if key == "" {
		return "", errors.New("bench: issue " + role + " key: answer has no key")
	}
	return key, nil
}

// Ledger returns the server's ledger totals.
func (c *Client) Ledger() (charging.Totals, error) {
	k := c.conn()
	defer k.release()
	k.path(pathLedger)
	status, err := k.do(fasthttp.MethodGet, c.opsKey, nil, false)
	if err != nil {
		return charging.Totals{}, fmt.Errorf("bench: ledger: %w", err)
	}
	if status != fasthttp.StatusOK {
		return charging.Totals{}, k.statusError("bench: ledger", status)
	}
	v, err := k.parser.ParseBytes(k.resp.Body())
	if err != nil {
		return charging.Totals{}, fmt.Errorf("bench: ledger: %w", err)
	}
	owed, err := parseTotal(string(v.GetStringBytes("owed")))
	if err != nil {
		return charging.Totals{}, fmt.Errorf("bench: ledger owed %q: %w", v.GetStringBytes("owed"), err)
	}
	return charging.Totals{Owed: owed, Accounts: v.GetUint64("accounts")}, nil
}

// balance returns the balance of msisdn, or found false for 404.
func (k *conn) balance(msisdn uint64) (charging.Amount, bool, error) {
	k.uri = strconv.AppendUint(append(append(k.uri[:0], k.c.base...), pathSubscribers...), msisdn, 10)
	status, err := k.do(fasthttp.MethodGet, k.c.opsKey, nil, false)
	if err != nil {
		return 0, false, fmt.Errorf("bench: balance of %d: %w", msisdn, err)
	}
	if status == fasthttp.StatusNotFound {
		return 0, false, nil
	}
	if status != fasthttp.StatusOK {
		return 0, false, k.statusError(fmt.Sprintf("bench: balance of %d", msisdn), status)
	}
	v, err := k.parser.ParseBytes(k.resp.Body())
	if err != nil {
		return 0, false, fmt.Errorf("bench: balance of %d: %w", msisdn, err)
	}
	b, err := charging.ParseAmount(string(v.GetStringBytes("balance")))
	if err != nil {
		return 0, false, fmt.Errorf("bench: balance of %d: %w", msisdn, err)
	}
	return b, true, nil
}

// historyEntry is one transaction of a subscriber's history.
type historyEntry struct {
	Seq     uint64
	Kind    string
	Channel string // "" when the server does not say (the limit server)
	Amount  charging.Amount
}

// history returns up to limit transactions of msisdn with seq < before
// (0: newest), and the next cursor (0: no more).
func (k *conn) history(msisdn, before uint64, limit int) ([]historyEntry, uint64, error) {
	u := append(append(k.uri[:0], k.c.base...), pathSubscribers...)
	u = strconv.AppendUint(u, msisdn, 10)
	u = strconv.AppendInt(append(u, "/transactions?limit="...), int64(limit), 10)
	if before > 0 {
		u = strconv.AppendUint(append(u, "&before="...), before, 10)
	}
	k.uri = u
	status, err := k.do(fasthttp.MethodGet, k.c.opsKey, nil, false)
	if err != nil {
		return nil, 0, fmt.Errorf("bench: history of %d: %w", msisdn, err)
	}
	if status != fasthttp.StatusOK {
		return nil, 0, k.statusError(fmt.Sprintf("bench: history of %d", msisdn), status)
	}
	v, err := k.parser.ParseBytes(k.resp.Body())
	if err != nil {
		return nil, 0, fmt.Errorf("bench: history of %d: %w", msisdn, err)
	}
	var out []historyEntry
	for _, t := range v.GetArray("transactions") {
		a, err := charging.ParseAmount(string(t.GetStringBytes("amount")))
		if err != nil {
			return nil, 0, fmt.Errorf("bench: history of %d: amount: %w", msisdn, err)
		}
		out = append(out, historyEntry{Seq: t.GetUint64("seq"), Kind: string(t.GetStringBytes("kind")),
			Channel: string(t.GetStringBytes("channel")), Amount: a})
	}
	next := v.Get("next")
	var cursor uint64
	if next != nil {
		switch next.Type() {
		case fastjson.TypeNumber:
			cursor = next.GetUint64()
		case fastjson.TypeString:
			cursor, _ = strconv.ParseUint(string(next.GetStringBytes()), 10, 64)
		}
	}
	return out, cursor, nil
}

// provision creates msisdn with balance; created false means it existed.
func (k *conn) provision(msisdn uint64, balance []byte, validUntil []byte) (bool, error) {
	k.uri = strconv.AppendUint(append(append(k.uri[:0], k.c.base...), pathSubscribers...), msisdn, 10)
	b := append(k.body[:0], `{"balance":"`...)
	b = append(b, balance...)
	b = append(b, `","validUntil":"`...)
	b = append(b, validUntil...)
	k.body = append(b, `"}`...)
	status, err := k.do(fasthttp.MethodPut, k.c.opsKey, nil, true)
	if err != nil {
		return false, fmt.Errorf("bench: provision %d: %w", msisdn, err)
	}
	switch status {
	case fasthttp.StatusCreated:
		return true, nil
	case fasthttp.StatusOK:
		return false, nil
	}
	return false, k.statusError(fmt.Sprintf("bench: provision %d", msisdn), status)
}

// classify maps an HTTP status to an Outcome: 2xx is checked further by the
// caller; 403/404/409/422 are business refusals in Nchf and TMF; anything
// else (400, 401, 5xx) means the request was not understood or the outcome
// is unknown.
func classify(status int) Outcome {
	switch {
	case status >= 200 && status < 300:
		return OutcomeOK
	case status == fasthttp.StatusForbidden, status == fasthttp.StatusNotFound,
		status == fasthttp.StatusConflict, status == fasthttp.StatusUnprocessableEntity:
		return OutcomeRefused
	}
	return OutcomeFailed
}

// nchfSuccess reports whether an Nchf answer's first unit information says
// SUCCESS. An answer without multipleUnitInformation (a release) counts as
// success when its status was 2xx.
func (k *conn) nchfSuccess() (bool, error) {
	body := k.resp.Body()
	if len(body) == 0 {
		return true, nil
	}
	v, err := k.parser.ParseBytes(body)
	if err != nil {
		return false, fmt.Errorf("nchf answer: %w", err)
	}
	mui := v.GetArray("multipleUnitInformation")
	if len(mui) == 0 {
		return true, nil
	}
	return bytes.Equal(mui[0].GetStringBytes("resultCode"), []byte("SUCCESS")), nil
}

// parseTotal reads a ledger-wide decimal amount, which unlike one balance
// may exceed charging.BalanceMax, with the same syntax as
// charging.ParseAmount.
func parseTotal(s string) (charging.Amount, error) {
	whole, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(whole, "-")
	whole = strings.TrimPrefix(whole, "-")
	if whole == "" || len(frac) > 4 || (strings.Contains(s, ".") && frac == "") {
		return 0, charging.ErrAmountSyntax
	}
	for _, c := range whole + frac {
		if c < '0' || c > '9' {
			return 0, charging.ErrAmountSyntax
		}
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > math.MaxInt64/int64(charging.AmountPerEuro)-1 {
		return 0, charging.ErrAmountRange
	}
	frac += strings.Repeat("0", 4-len(frac))
	f, _ := strconv.ParseInt(frac, 10, 64)
	a := charging.Amount(w)*charging.AmountPerEuro + charging.Amount(f)
	if neg {
		a = -a
	}
	return a, nil
}
