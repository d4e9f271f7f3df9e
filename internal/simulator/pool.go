package simulator

import (
	"maps"
	"math"
	"sync"
	"time"
)

// Rejection reasons, the keys of PoolStats.Rejected and AccountStats.Rejected.
const (
	ReasonRPM           = "rpm"
	ReasonTPM           = "tpm"
	ReasonITPM          = "itpm"
	ReasonOTPM          = "otpm"
	ReasonConcurrency   = "concurrency"
	ReasonDaily         = "daily"
	ReasonContext       = "context"
	ReasonAuth          = "auth"
	ReasonBadRequest    = "bad_request"
	ReasonInjectedFault = "injected_fault"
)

// concurrencyRetryAfter is what a 429 for concurrency advises: a slot frees when some
// response ends, which the simulator cannot foresee.
const concurrencyRetryAfter = time.Second

// maxWait caps computed waits so that a request larger than a bucket (which no wait
// admits) still yields a finite retry-after.
const maxWait = 24 * time.Hour

// bucket is a token bucket with continuous refill: capacity = limit, refilled at
// limit per minute, as OpenAI and Anthropic enforce. Its level may go below zero
// when a settlement charges more than was reserved.
type bucket struct {
	limit float64 // 0: this limit is not configured
	level float64
	last  time.Time
}

func newBucket(limit int64, now time.Time) bucket {
	return bucket{limit: float64(limit), level: float64(limit), last: now}
}

func (b *bucket) on() bool { return b.limit > 0 }

func (b *bucket) refill(now time.Time) {
	// A clock that steps back (a test's fake clock) neither refills nor drains.
	if el := now.Sub(b.last); el > 0 {
		b.level = min(b.limit, b.level+el.Seconds()*b.limit/60)
		b.last = now
	}
}

// wait is how long until the bucket holds n; 0 if it does now.
func (b *bucket) wait(n float64) time.Duration {
	if b.level >= n {
		return 0
	}
	return seconds((n - b.level) * 60 / b.limit)
}

// add returns n to the bucket (a negative n takes), never above its capacity.
func (b *bucket) add(n float64) {
	if b.on() {
		b.level = min(b.limit, b.level+n)
	}
}

func (b *bucket) view() bucketView {
	if !b.on() {
		return bucketView{}
	}
	return bucketView{
		Limit:     int64(b.limit),
		Remaining: max(0, int64(math.Floor(b.level))),
		Reset:     b.wait(b.limit),
	}
}

// seconds converts a wait to the nearest nanosecond (rounding, not ceiling, keeps
// float noise out of the headers), capped at maxWait.
func seconds(s float64) time.Duration {
	ns := math.Round(s * float64(time.Second))
	if ns >= float64(maxWait) {
		return maxWait
	}
	return time.Duration(ns)
}

// bucketView is one bucket as the rate-limit headers show it. Limit 0: not configured.
type bucketView struct {
	Limit     int64
	Remaining int64
	Reset     time.Duration // until the bucket is full again
}

// rateView is a pool's buckets at one instant, for the headers.
type rateView struct {
	Requests, Tokens, InputTokens, OutputTokens bucketView
}

// charge is what a request costs: input tokens and output tokens (at admission the
// output is an estimate; at settlement it is what was generated).
type charge struct{ input, output int64 }

func (c charge) total() int64 { return c.input + c.output }

// verdict is an admission decision. An empty reason admits.
type verdict struct {
	reason string
	// retryAfter is when the binding limit would admit this request, absent other
	// traffic.
	retryAfter time.Duration
	// tooLarge: the request costs more than the bucket can ever hold.
	tooLarge bool
	// limit, used and requested describe the binding limit for the error message.
	limit, used, requested int64
}

// ticket is what admission hands the request, to settle with.
type ticket struct {
	charged charge
	day     int64
}

// pool is one model pool of one account: its buckets, its in-flight count, its daily
// window and its ground-truth counters, under one lock (never held across I/O).
type pool struct {
	name   string
	limits Limits
	window int64

	mu                     sync.Mutex
	rpm, tpm, itpm, otpm   bucket
	inflight               int64
	day                    int64 // UTC day number of the daily counters
	dayRequests, dayTokens int64
	n                      PoolStats
}

func newPool(name string, l Limits, window int64, now time.Time) *pool {
	p := &pool{name: name, limits: l, window: window}
	p.resetLocked(now)
	return p
}

func (p *pool) reset(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resetLocked(now)
}

// resetLocked fills the buckets and zeroes counters. Requests in flight keep their
// concurrency slots: they still end and release them.
func (p *pool) resetLocked(now time.Time) {
	p.rpm = newBucket(p.limits.RequestsPerMinute, now)
	p.tpm = newBucket(p.limits.TokensPerMinute, now)
	p.itpm = newBucket(p.limits.InputTokensPerMinute, now)
	p.otpm = newBucket(p.limits.OutputTokensPerMinute, now)
	p.day = utcDay(now)
	p.dayRequests, p.dayTokens = 0, 0
	p.n = PoolStats{Pool: p.name, MaxConcurrent: p.inflight}
}

func utcDay(t time.Time) int64 {
	return int64(math.Floor(float64(t.Unix()) / 86400))
}

func untilNextUTCDay(now time.Time, day int64) time.Duration {
	return time.Unix((day+1)*86400, 0).Sub(now)
}

func (p *pool) refillLocked(now time.Time) {
	p.rpm.refill(now)
	p.tpm.refill(now)
	p.itpm.refill(now)
	p.otpm.refill(now)
	if d := utcDay(now); d > p.day {
		p.day, p.dayRequests, p.dayTokens = d, 0, 0
	}
}

func (p *pool) viewLocked() rateView {
	return rateView{Requests: p.rpm.view(), Tokens: p.tpm.view(), InputTokens: p.itpm.view(), OutputTokens: p.otpm.view()}
}

// view refills and returns the pool's buckets, for responses that do not admit.
func (p *pool) view(now time.Time) rateView {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refillLocked(now)
	return p.viewLocked()
}

// count records a request that reached the pool and, if reason is set, its refusal.
func (p *pool) count(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n.Requests++
	if reason != "" {
		p.n.reject(reason)
	}
}

// admit takes the request's cost from every configured bucket if all of them have
// room, and otherwise takes nothing and names the binding limit.
func (p *pool) admit(now time.Time, c charge) (verdict, ticket, rateView) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refillLocked(now)
	p.n.Requests++

	var v verdict
	consider := func(reason string, b *bucket, need int64) {
		if !b.on() {
			return
		}
		n := float64(need)
		switch {
		case n > b.limit:
			if !v.tooLarge {
				v = verdict{reason: reason, tooLarge: true, retryAfter: b.wait(b.limit)}
				v.limit, v.used, v.requested = int64(b.limit), int64(b.limit)-max(0, int64(b.level)), need
			}
		case b.level < n && !v.tooLarge:
			if w := b.wait(n); v.reason == "" || w > v.retryAfter {
				v = verdict{reason: reason, retryAfter: w}
				v.limit, v.used, v.requested = int64(b.limit), int64(b.limit)-max(0, int64(b.level)), need
			}
		}
	}
	consider(ReasonRPM, &p.rpm, 1)
	consider(ReasonTPM, &p.tpm, c.total())
	consider(ReasonITPM, &p.itpm, c.input)
	consider(ReasonOTPM, &p.otpm, c.output)
	if !v.tooLarge {
		daily := func(limit, used, need int64) {
			if limit > 0 && used+need > limit {
				if w := untilNextUTCDay(now, p.day); v.reason == "" || w > v.retryAfter {
					v = verdict{reason: ReasonDaily, retryAfter: w, limit: limit, used: used, requested: need, tooLarge: need > limit}
				}
			}
		}
		daily(p.limits.RequestsPerDay, p.dayRequests, 1)
		daily(p.limits.TokensPerDay, p.dayTokens, c.total())
		if l := p.limits.MaxConcurrency; l > 0 && p.inflight >= l && v.reason == "" {
			v = verdict{reason: ReasonConcurrency, retryAfter: concurrencyRetryAfter, limit: l, used: p.inflight, requested: 1}
		}
	}
	if v.reason != "" {
		p.n.reject(v.reason)
		return v, ticket{}, p.viewLocked()
	}

	p.rpm.add(-1)
	p.tpm.add(-float64(c.total()))
	p.itpm.add(-float64(c.input))
	p.otpm.add(-float64(c.output))
	p.dayRequests++
	p.dayTokens += c.total()
	p.inflight++
	p.n.Admitted++
	p.n.MaxConcurrent = max(p.n.MaxConcurrent, p.inflight)
	peak := func(cur *int64, b *bucket) {
		if b.on() {
			*cur = max(*cur, int64(math.Ceil(b.limit-b.level)))
		}
	}
	peak(&p.n.PeakUsage.Requests, &p.rpm)
	peak(&p.n.PeakUsage.Tokens, &p.tpm)
	peak(&p.n.PeakUsage.InputTokens, &p.itpm)
	peak(&p.n.PeakUsage.OutputTokens, &p.otpm)
	return verdict{}, ticket{charged: c, day: p.day}, p.viewLocked()
}

// settle ends an admitted request: it returns to the buckets what was reserved but
// not used, frees the concurrency slot and counts the actual usage.
func (p *pool) settle(now time.Time, t ticket, actual charge, outcome func(*PoolStats)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refillLocked(now)
	p.tpm.add(float64(t.charged.total() - actual.total()))
	p.itpm.add(float64(t.charged.input - actual.input))
	p.otpm.add(float64(t.charged.output - actual.output))
	if t.day == p.day {
		p.dayTokens -= t.charged.total() - actual.total()
	}
	p.inflight--
	p.n.Completed++
	p.n.InputTokens += actual.input
	p.n.OutputTokens += actual.output
	if outcome != nil {
		outcome(&p.n)
	}
}

func (p *pool) stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.n
	s.InFlight = p.inflight
	s.Rejected = maps.Clone(p.n.Rejected)
	return s
}

func (p *pool) countTokensCall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n.Requests++
	p.n.CountTokensCalls++
}
