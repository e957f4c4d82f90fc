package httpapi

import "strings"

// op is one operation: a metric label and a route's identity.
type op uint8

const (
	opCharge op = iota + 1
	opReserve
	opUpdate
	opRelease
	opTopUp
	opAdjust
	opBucket
	opProvision
	opSubscriber
	opTransactions
	opRefund
	opLedger
	opAPIKeys
	opMeta // healthz, readyz, openapi.json
	opFixedPut
	opFixed
	opVoucher
	opVoucherBlock
	opBatchBlock
	opGuards
	opUSSD
	opBatchGenerate
	opBackupCreate
	opBackups
	opCount
)

var opNames = [opCount]string{"", "charge", "reserve", "update", "release", "topup", "adjust", "bucket",
	"provision", "subscriber", "transactions", "refund", "ledger", "apikeys", "meta",
	"fixed_account_put", "fixed_account", "voucher", "voucher_block", "batch_block", "redeem_guards", "ussd", "batch_generate",
	"backup_create", "backups"}

var opInterface = [opCount]string{"", "nchf", "nchf", "nchf", "nchf", "tmf", "tmf", "tmf",
	"ops", "ops", "ops", "ops", "ops", "ops", "ops",
	"ops", "ops", "ops", "ops", "ops", "ops", "ussd", "ops", "ops", "ops"}

// roles is a bit set of Role values allowed on a route; 0 means no auth.
type roles uint8

const (
	network = roles(1 << RoleNetwork)
	channel = roles(1 << RoleChannel)
	ops     = roles(1 << RoleOps)
)

// route is one method on one path pattern. A pattern segment "{name}"
// matches one non-empty path segment.
type route struct {
	method  string
	pattern string
	op      op
	roles   roles
	handler handlerFunc
	segs    []string
	allow   string // every method served on this pattern, for 405
}

const (
	nchfBase = "/nchf-convergedcharging/v3/chargingdata"
	tmfBase  = "/tmf-api/prepayBalanceManagement/v4"
)

// routes is every operation served; the OpenAPI test checks it against
// openapi.json both ways. The SMS event charge comes first: it is the hot
// path and matching is a linear scan.
var routes = []*route{
	// The create route's op is refined to charge or reserve by the body.
	{method: "POST", pattern: nchfBase, op: opReserve, roles: network, handler: (*Server).nchfCreate},
	{method: "POST", pattern: nchfBase + "/{ref}/update", op: opUpdate, roles: network, handler: (*Server).nchfUpdate},
	{method: "POST", pattern: nchfBase + "/{ref}/release", op: opRelease, roles: network, handler: (*Server).nchfRelease},
	{method: "POST", pattern: tmfBase + "/topupBalance", op: opTopUp, roles: channel, handler: (*Server).tmfTopUp},
	{method: "POST", pattern: tmfBase + "/adjustBalance", op: opAdjust, roles: ops, handler: (*Server).tmfAdjust},
	{method: "GET", pattern: tmfBase + "/bucket", op: opBucket, roles: channel | ops, handler: (*Server).tmfBucket},
	{method: "PUT", pattern: "/v1/subscribers/{msisdn}", op: opProvision, roles: ops, handler: (*Server).opsProvision},
	{method: "GET", pattern: "/v1/subscribers/{msisdn}", op: opSubscriber, roles: ops, handler: (*Server).opsSubscriber},
	{method: "GET", pattern: "/v1/subscribers/{msisdn}/transactions", op: opTransactions, roles: ops, handler: (*Server).opsTransactions},
	{method: "POST", pattern: "/v1/subscribers/{msisdn}/refunds", op: opRefund, roles: ops | network, handler: (*Server).opsRefund},
	{method: "GET", pattern: "/v1/ledger", op: opLedger, roles: ops, handler: (*Server).opsLedger},
	{method: "POST", pattern: "/v1/apikeys", op: opAPIKeys, roles: ops, handler: (*Server).opsAPIKeys},
	{method: "PUT", pattern: "/v1/fixed-accounts/{id}", op: opFixedPut, roles: ops, handler: (*Server).opsFixedPut},
	{method: "GET", pattern: "/v1/fixed-accounts/{id}", op: opFixed, roles: ops, handler: (*Server).opsFixedGet},
	{method: "GET", pattern: "/v1/vouchers/{serial}", op: opVoucher, roles: ops, handler: (*Server).opsVoucher},
	{method: "POST", pattern: "/v1/vouchers/{serial}/block", op: opVoucherBlock, roles: ops, handler: (*Server).opsVoucherBlock},
	{method: "POST", pattern: "/v1/voucher-batches", op: opBatchGenerate, roles: ops, handler: (*Server).opsBatchGenerate},
	{method: "POST", pattern: "/v1/voucher-batches/{batch}/block", op: opBatchBlock, roles: ops, handler: (*Server).opsBatchBlock},
	{method: "GET", pattern: "/v1/redeem-guards", op: opGuards, roles: ops, handler: (*Server).opsGuards},
	{method: "GET", pattern: "/v1/redeem-guards/{msisdn}", op: opGuards, roles: ops, handler: (*Server).opsGuard},
	{method: "POST", pattern: "/v1/backups", op: opBackupCreate, roles: ops, handler: (*Server).opsBackupCreate},
	{method: "GET", pattern: "/v1/backups", op: opBackups, roles: ops, handler: (*Server).opsBackupList},
	{method: "POST", pattern: "/ussd", op: opUSSD, roles: network, handler: (*Server).ussdGateway},
	{method: "GET", pattern: "/healthz", op: opMeta, handler: (*Server).healthz},
	{method: "GET", pattern: "/readyz", op: opMeta, handler: (*Server).readyz},
	{method: "GET", pattern: "/openapi.json", op: opMeta, handler: (*Server).openapi},
	{method: "GET", pattern: "/metrics", op: opMeta, handler: (*Server).metricsExposition},
}

func init() {
	allow := map[string][]string{}
	for _, r := range routes {
		r.segs = strings.Split(strings.TrimPrefix(r.pattern, "/"), "/")
		allow[r.pattern] = append(allow[r.pattern], r.method)
	}
	for _, r := range routes {
		r.allow = strings.Join(allow[r.pattern], ", ")
	}
}

// match finds the route for path and method. When the path matches but no
// route serves the method it returns that path's route and false (405).
// Path parameters are sub-slices of path: valid only during the request.
func match(path, method []byte, params *[2][]byte) (*route, bool) {
	var pathOnly *route
	for _, r := range routes {
		if !matchPattern(r.segs, path, params) {
			continue
		}
		if r.method == string(method) {
			return r, true
		}
		if pathOnly == nil {
			pathOnly = r
		}
	}
	return pathOnly, false
}

func matchPattern(segs []string, path []byte, params *[2][]byte) bool {
	if len(path) == 0 || path[0] != '/' {
		return false
	}
	rest := path[1:]
	n := 0
	for i, seg := range segs {
		end := 0
		for end < len(rest) && rest[end] != '/' {
			end++
		}
		part := rest[:end]
		if len(seg) > 1 && seg[0] == '{' {
			if len(part) == 0 || n == len(params) {
				return false
			}
			params[n] = part
			n++
		} else if string(part) != seg {
			return false
		}
		if i == len(segs)-1 {
			return end == len(rest)
		}
		if end == len(rest) {
			return false
		}
		rest = rest[end+1:]
	}
	return false
}
