package charging

// Result is the business outcome of a command. A refusal is a correct answer,
// not an error: it is stored with the request key, sent on the wire and
// counted by label.
//
// Result values are stored and sent on the wire: never renumber, only append.
// Zero is invalid so that a forgotten assignment cannot read as success.
type Result uint8

const (
	ResultOK                    Result = 1
	ResultAmountMustBePositive  Result = 2
	ResultAmountBelowMinimum    Result = 3
	ResultAmountAboveMaximum    Result = 4
	ResultInsufficientBalance   Result = 5
	ResultBalanceLimit          Result = 6
	ResultGraceOutgoingBarred   Result = 7
	ResultSuspended             Result = 8
	ResultUnknownRatingGroup    Result = 9
	ResultUnitsMustBePositive   Result = 10
	ResultUnknownSession        Result = 11
	ResultSessionExists         Result = 12
	ResultTooManySessions       Result = 13
	ResultUnknownTransaction    Result = 14
	ResultNotRefundable         Result = 15
	ResultAlreadyRefunded       Result = 16
	ResultRefundExceedsCharge   Result = 17
	ResultRequestKeyReused      Result = 18
	ResultSubscriberExists      Result = 19
	ResultUnknownSubscriber     Result = 20
	ResultOverloaded            Result = 21
	ResultUnknownChannel        Result = 22
	ResultAdjustmentNeedsReason Result = 23
	ResultUnitsAboveMaximum     Result = 24
)

// resultCount is one more than the highest Result.
const resultCount = 25

var resultCodes = [resultCount]string{
	ResultOK:                    "ok",
	ResultAmountMustBePositive:  "amount_must_be_positive",
	ResultAmountBelowMinimum:    "amount_below_minimum",
	ResultAmountAboveMaximum:    "amount_above_maximum",
	ResultInsufficientBalance:   "insufficient_balance",
	ResultBalanceLimit:          "balance_limit",
	ResultGraceOutgoingBarred:   "grace_outgoing_barred",
	ResultSuspended:             "suspended",
	ResultUnknownRatingGroup:    "unknown_rating_group",
	ResultUnitsMustBePositive:   "units_must_be_positive",
	ResultUnknownSession:        "unknown_session",
	ResultSessionExists:         "session_exists",
	ResultTooManySessions:       "too_many_sessions",
	ResultUnknownTransaction:    "unknown_transaction",
	ResultNotRefundable:         "not_refundable",
	ResultAlreadyRefunded:       "already_refunded",
	ResultRefundExceedsCharge:   "refund_exceeds_charge",
	ResultRequestKeyReused:      "request_key_reused",
	ResultSubscriberExists:      "subscriber_exists",
	ResultUnknownSubscriber:     "unknown_subscriber",
	ResultOverloaded:            "overloaded",
	ResultUnknownChannel:        "unknown_channel",
	ResultAdjustmentNeedsReason: "adjustment_needs_reason",
	ResultUnitsAboveMaximum:     "units_above_maximum",
}

var resultSentences = [resultCount]string{
	ResultOK:                    "Done.",
	ResultAmountMustBePositive:  "The amount must be greater than zero.",
	ResultAmountBelowMinimum:    "The amount is below the minimum this channel accepts.",
	ResultAmountAboveMaximum:    "The amount is above the maximum this channel accepts.",
	ResultInsufficientBalance:   "The balance does not cover this charge.",
	ResultBalanceLimit:          "This credit would take the balance above its limit.",
	ResultGraceOutgoingBarred:   "Validity has ended: in the grace period only incoming services are allowed until the next top-up.",
	ResultSuspended:             "The subscriber is suspended: validity ended more than the grace period ago; a top-up reconnects it.",
	ResultUnknownRatingGroup:    "No tariff exists for this rating group.",
	ResultUnitsMustBePositive:   "The number of units must be greater than zero.",
	ResultUnknownSession:        "No open charging session has this reference.",
	ResultSessionExists:         "A charging session with this reference is already open.",
	ResultTooManySessions:       "The subscriber has the most charging sessions open at once that are allowed.",
	ResultUnknownTransaction:    "No transaction of this subscriber has this ID.",
	ResultNotRefundable:         "Only a charge can be refunded.",
	ResultAlreadyRefunded:       "This charge has already been refunded.",
	ResultRefundExceedsCharge:   "The refund is larger than the charge it refunds.",
	ResultRequestKeyReused:      "This request key was already used for a different request.",
	ResultSubscriberExists:      "A subscriber with this number already exists.",
	ResultUnknownSubscriber:     "No subscriber has this number.",
	ResultOverloaded:            "The engine is at its limit of work in flight; retry shortly with the same request key.",
	ResultUnknownChannel:        "This channel is not configured to top up balances.",
	ResultAdjustmentNeedsReason: "An adjustment must state its reason.",
	ResultUnitsAboveMaximum:     "The number of units is above what one request may carry.",
}

// String returns the stable snake_case code used on the wire and in metrics.
func (r Result) String() string {
	if r == 0 || int(r) >= resultCount {
		return "invalid_result"
	}
	return resultCodes[r]
}

// Sentence returns a sentence a person understands.
func (r Result) Sentence() string {
	if r == 0 || int(r) >= resultCount {
		return "Invalid result."
	}
	return resultSentences[r]
}

// Valid reports whether r is a defined Result.
func (r Result) Valid() bool { return r != 0 && int(r) < resultCount }

// Results lists every defined Result, for pre-creating metric labels.
func Results() []Result {
	rs := make([]Result, 0, resultCount-1)
	for r := Result(1); r < resultCount; r++ {
		rs = append(rs, r)
	}
	return rs
}
