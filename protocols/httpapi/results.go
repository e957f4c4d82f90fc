package httpapi

import "github.com/ocs-engine/ocs/charging"

// resultWire is how one charging.Result travels on every interface: the
// HTTP status of a refused request, the Nchf application error `cause`
// (TS 32.291 table 6.1.7.3-1, else TS 29.500 table 5.2.7.2-1), and the Nchf
// per-unit `resultCode` (TS 32.291 ResultCode) used when an update reports
// usage but gets no further quota.
type resultWire struct {
	status   int
	cause    string
	unitCode string
}

// resultTable is THE mapping from charging.Result to the wire: the one place
// that decides status codes for business outcomes. ResultOK's status is the
// default success; each endpoint picks 200, 201 or 204 itself.
var resultTable = [...]resultWire{
	charging.ResultOK:                    {200, "", "SUCCESS"},
	charging.ResultAmountMustBePositive:  {422, "CHARGING_FAILED", ""},
	charging.ResultAmountBelowMinimum:    {422, "CHARGING_FAILED", ""},
	charging.ResultAmountAboveMaximum:    {422, "CHARGING_FAILED", ""},
	charging.ResultInsufficientBalance:   {403, "QUOTA_LIMIT_REACHED", "QUOTA_LIMIT_REACHED"},
	charging.ResultBalanceLimit:          {422, "CHARGING_FAILED", ""},
	charging.ResultGraceOutgoingBarred:   {403, "END_USER_REQUEST_DENIED", "END_USER_SERVICE_DENIED"},
	charging.ResultSuspended:             {403, "END_USER_REQUEST_DENIED", "END_USER_SERVICE_DENIED"},
	charging.ResultUnknownRatingGroup:    {400, "CHARGING_FAILED", "RATING_FAILED"},
	charging.ResultUnitsMustBePositive:   {400, "CHARGING_FAILED", ""},
	charging.ResultUnknownSession:        {404, "CONTEXT_NOT_FOUND", ""},
	charging.ResultSessionExists:         {409, "CHARGING_FAILED", ""},
	charging.ResultTooManySessions:       {403, "END_USER_REQUEST_REJECTED", "END_USER_SERVICE_REJECTED"},
	charging.ResultUnknownTransaction:    {404, "", ""},
	charging.ResultNotRefundable:         {422, "", ""},
	charging.ResultAlreadyRefunded:       {409, "", ""},
	charging.ResultRefundExceedsCharge:   {422, "", ""},
	charging.ResultRequestKeyReused:      {409, "CHARGING_FAILED", ""},
	charging.ResultSubscriberExists:      {409, "", ""},
	charging.ResultUnknownSubscriber:     {404, "USER_UNKNOWN", "USER_UNKNOWN"},
	charging.ResultOverloaded:            {503, "NF_CONGESTION", ""},
	charging.ResultUnknownChannel:        {422, "", ""},
	charging.ResultAdjustmentNeedsReason: {422, "", ""},
	charging.ResultUnitsAboveMaximum:     {400, "CHARGING_FAILED", ""},
}

// wireOf returns the wire mapping of r; an unknown Result (a newer engine)
// is a 500 so it is noticed, never read as success.
func wireOf(r charging.Result) resultWire {
	if !r.Valid() || int(r) >= len(resultTable) || resultTable[r].status == 0 {
		return resultWire{status: 500, cause: "SYSTEM_FAILURE"}
	}
	return resultTable[r]
}

// resultProblem is the problem document for a refused Result.
func resultProblem(r charging.Result) problem {
	w := wireOf(r)
	return problem{status: w.status, code: r.String(), detail: r.Sentence(), cause: w.cause}
}

// retryAfterSeconds is sent with every 503: long enough for a burst to
// drain, short enough that a network element's retry still fits a 5G
// charging answer budget of seconds, not minutes.
const retryAfterSeconds = "1"
