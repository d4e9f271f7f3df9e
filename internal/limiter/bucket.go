package limiter

import "math"

// fastTakeRefresh bounds how many admissions an account grants from its stale level
// before it reads the clock again (see Bucket).
const fastTakeRefresh = 8

// Bucket is a token bucket with continuous refill: it holds at most Burst units and
// gains Rate units per second. It is not safe for concurrent use; an Account guards its
// buckets with one mutex so that admission is all-or-nothing across them.
//
// Reading the clock costs about 40 ns on the machines we run on, which alone would
// blow the local-decision budget, so a take does not need the current time when the
// level last computed already covers it. Units taken that way are kept in pending
// and, when the clock is next read, are charged as if taken at that moment. That is
// never optimistic: refill can only have raised the level meanwhile, and moving takes
// later can only lose refill that the cap would otherwise have wasted, never create
// it. What it can lose is bounded by the pending units, and an account reads the clock at
// least every fastTakeRefresh admissions, so a bucket that sits near full reads at
// most that many requests' worth lower than exact; a busy bucket runs near empty,
// where it takes the slow path anyway and is exact.
type Bucket struct {
	limited   bool
	perSecond float64 // the rate as set, for exact reports and comparisons
	rate      float64 // units per nanosecond
	burst     float64
	level     float64 // units at time last, before pending; negative is debt
	pending   float64 // taken since last without reading the clock
	last      int64   // clock reading (ns) that level refers to
}

// NewBucket returns a full bucket refilling ratePerSecond units per second up to burst.
func NewBucket(ratePerSecond, burst float64, now int64) Bucket {
	b := Bucket{last: now}
	b.setLimit(ratePerSecond, burst, now)
	b.level = b.burst
	return b
}

// Limited reports whether the bucket limits anything; an unlimited bucket admits all.
func (b *Bucket) Limited() bool { return b.limited }

// RatePerSecond is the refill rate.
func (b *Bucket) RatePerSecond() float64 { return b.perSecond }

// Burst is the capacity.
func (b *Bucket) Burst() float64 { return b.burst }

// advance brings level to now, charging pending.
func (b *Bucket) advance(now int64) {
	if now > b.last {
		b.level = math.Min(b.burst, b.level+b.rate*float64(now-b.last))
		b.last = now
	}
	b.level -= b.pending
	b.pending = 0
}

// Level is the number of units available at now (negative while in debt).
func (b *Bucket) Level(now int64) float64 {
	if !b.limited {
		return math.Inf(1)
	}
	b.advance(now)
	return b.level
}

// hasStale reports whether n units are available without reading the clock.
func (b *Bucket) hasStale(n float64) bool {
	return !b.limited || b.level-b.pending >= n
}

// has reports whether n units are available at now.
func (b *Bucket) has(n float64, now int64) bool {
	if !b.limited {
		return true
	}
	b.advance(now)
	return b.level >= n
}

// take removes n units; callers have checked availability (or mean to go into debt).
func (b *Bucket) take(n float64) {
	if b.limited {
		b.pending += n
	}
}

// takeNow removes n units at now, for takes made with the clock read (exact).
func (b *Bucket) takeNow(n float64, now int64) {
	if b.limited {
		b.advance(now)
		b.level -= n
	}
}

// give returns n units (a refund), never above the capacity.
func (b *Bucket) give(n float64, now int64) {
	if !b.limited {
		return
	}
	b.advance(now)
	b.level = math.Min(b.burst, b.level+n)
}

// lowerTo caps the level at v (provider ground truth: it has fewer units than we think).
func (b *Bucket) lowerTo(v float64, now int64) {
	if !b.limited {
		return
	}
	b.advance(now)
	if v < b.level {
		b.level = v
	}
}

// waitFor is how long until n units are available at the current rate; +Inf when the
// bucket can never hold n units or does not refill.
func (b *Bucket) waitFor(n float64, now int64) float64 {
	if !b.limited {
		return 0
	}
	b.advance(now)
	if b.level >= n {
		return 0
	}
	if n > b.burst || b.rate <= 0 {
		return math.Inf(1)
	}
	return (n - b.level) / b.rate
}

// SetLimit changes rate and capacity at now without losing state: refill up to now
// accrues at the old rate, the level is kept (capped at a smaller capacity, never
// raised to fill a larger one, so a raise admits no burst), and debt is kept.
// A negative or NaN argument is treated as zero; zero rate means no refill.
func (b *Bucket) SetLimit(ratePerSecond, burst float64, now int64) {
	if b.limited {
		b.advance(now)
	} else {
		// An unlimited bucket that becomes limited starts full: it had no state to keep.
		b.level = math.Inf(1)
		b.pending = 0
		b.last = now
	}
	b.setLimit(ratePerSecond, burst, now)
	b.level = math.Min(b.level, b.burst)
}

func (b *Bucket) setLimit(ratePerSecond, burst float64, now int64) {
	if !(ratePerSecond > 0) || math.IsInf(ratePerSecond, 0) {
		ratePerSecond = 0
	}
	if !(burst > 0) || math.IsInf(burst, 0) {
		burst = 0
	}
	b.limited = true
	b.perSecond = ratePerSecond
	b.rate = ratePerSecond / 1e9
	b.burst = burst
	b.last = now
}

// Unlimit makes the bucket admit everything.
func (b *Bucket) Unlimit() { *b = Bucket{} }
