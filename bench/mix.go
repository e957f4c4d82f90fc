package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseMix reads "sms=70,session=20,topup=10" (voucher and bank may be
// named too). Weights are non-negative integers; at least one is positive.
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return Mix{}, fmt.Errorf("bench: mix %q: each part must be name=weight, e.g. sms=70", s)
		}
		w, err := strconv.Atoi(val)
		if err != nil || w < 0 || w > 1_000_000 {
			return Mix{}, fmt.Errorf("bench: mix %q: weight of %s must be an integer 0…1000000", s, name)
		}
		switch name {
		case "sms":
			m.SMS = w
		case "session":
			m.Session = w
		case "topup":
			m.TopUp = w
		case "voucher":
			m.Voucher = w
		case "bank":
			m.Bank = w
		default:
			return Mix{}, fmt.Errorf("bench: mix %q: unknown operation %q (sms, session, topup, voucher, bank)", s, name)
		}
	}
	if m.total() == 0 {
		return Mix{}, fmt.Errorf("bench: mix %q has no positive weight", s)
	}
	return m, nil
}
