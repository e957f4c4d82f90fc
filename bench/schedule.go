package bench

import "time"

// Schedule gives the send times of an open-loop run. Times are computed from
// the start and the index, never accumulated, so rounding cannot drift over
// millions of ticks: At(i) is exact to the nanosecond for any i.
type Schedule struct {
	Start time.Time
	Rate  float64 // requests per second, > 0
}

// At returns the scheduled send time of request i.
func (s Schedule) At(i int64) time.Time {
	return s.Start.Add(s.Offset(i))
}

// Offset returns the scheduled time of request i relative to Start.
func (s Schedule) Offset(i int64) time.Duration {
	// Split i into whole seconds and a remainder so that i*1e9 never
	// overflows or loses precision in float64 for long runs.
	perSecond := s.Rate
	whole := float64(i) / perSecond
	secs := int64(whole)
	rem := float64(i) - float64(secs)*perSecond
	return time.Duration(secs)*time.Second + time.Duration(rem*1e9/perSecond)
}

// Count returns how many requests fall in [Start, Start+d).
func (s Schedule) Count(d time.Duration) int64 {
	n := int64(d.Seconds() * s.Rate)
	for n > 0 && s.Offset(n-1) >= d {
		n--
	}
	for s.Offset(n) < d {
		n++
	}
	return n
}
