package limiter

import "time"

// Clock is the engine's time source. Readings are monotonic nanoseconds since the
// clock's own epoch, which is cheaper to read than time.Now and immune to wall-clock
// steps; Wall maps a reading back to UTC for daily windows and reports.
type Clock interface {
	Now() int64
	Wall(reading int64) time.Time
	// AfterFunc calls f in its own goroutine after d, like time.AfterFunc.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it did.
	Stop() bool
}

type realClock struct{ epoch time.Time }

// NewRealClock returns the process clock.
func NewRealClock() Clock { return realClock{epoch: time.Now()} }

// Now uses time.Since, whose monotonic fast path skips reading the wall clock.
func (c realClock) Now() int64 { return int64(time.Since(c.epoch)) }

func (c realClock) Wall(reading int64) time.Time {
	return c.epoch.Add(time.Duration(reading)).UTC()
}

func (c realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// utcDay numbers UTC calendar days, for daily caps.
func utcDay(t time.Time) int64 {
	return t.Unix() / 86400
}

// untilNextUTCDay is how long from t until the next UTC midnight.
func untilNextUTCDay(t time.Time) time.Duration {
	next := time.Unix((utcDay(t)+1)*86400, 0)
	return next.Sub(t)
}
