package limiter

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// Kind names one per-minute limit of an account.
type Kind uint8

// The per-minute limits, in the order they are checked and reported.
const (
	KindRequests Kind = iota
	KindTokens
	KindInputTokens
	KindOutputTokens
	numKinds
)

// Kinds lists every Kind, for iteration by callers.
var Kinds = [numKinds]Kind{KindRequests, KindTokens, KindInputTokens, KindOutputTokens}

// String is the config field name, which is also what error messages and state show.
func (k Kind) String() string {
	switch k {
	case KindRequests:
		return "requestsPerMinute"
	case KindTokens:
		return "tokensPerMinute"
	case KindInputTokens:
		return "inputTokensPerMinute"
	case KindOutputTokens:
		return "outputTokensPerMinute"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Limit names used in rejections for limits that are not buckets.
const (
	LimitConcurrency    = "maxConcurrency"
	LimitRequestsPerDay = "requestsPerDay"
	LimitTokensPerDay   = "tokensPerDay"
	LimitUpstreamHold   = "upstreamRetryAfter"
)

// Demand is what one request reserves. Every request costs one request unit.
type Demand struct {
	// InputTokens is the prompt estimate; OutputTokens the most the response may use.
	InputTokens, OutputTokens int64
}

func (d Demand) amount(k Kind) float64 {
	switch k {
	case KindRequests:
		return 1
	case KindTokens:
		return float64(d.InputTokens + d.OutputTokens)
	case KindInputTokens:
		return float64(d.InputTokens)
	case KindOutputTokens:
		return float64(d.OutputTokens)
	}
	return 0
}

// Usage is what a response actually consumed.
type Usage struct {
	InputTokens, OutputTokens int64
}

// Window is one provider-reported limit, as read from rate-limit headers.
type Window struct {
	Limit, Remaining       int64
	HasLimit, HasRemaining bool
}

// Observation is what one upstream response said about an account's limits, indexed by
// Kind. Callers map provider headers onto it.
type Observation struct {
	Windows [numKinds]Window
}

// throttle bounds how far upstream 429s lower an account's rate, and how fast the
// evidence lets it recover: a step per quiet second once the provider's headers show
// capacity left since the last 429 (the floor is then five seconds from the full
// limit, and the headers' remaining counts keep the buckets honest meanwhile), a step
// per ten seconds of successes from providers that send no such headers.
const (
	throttleStep         = 0.1
	throttleFloor        = 0.5
	throttleRecoverSeen  = time.Second
	throttleRecoverBlind = 10 * time.Second
)

// daily is a fixed UTC-day counter.
type daily struct {
	limit int64 // configured; 0 = none
	used  int64 // by this sidecar
	// others is what the manager says the pool used today beyond used (other
	// sidecars, this pod's earlier boots): it counts against the configured limit
	// only, as a lease already accounts for it.
	others int64
	day    int64
	// lease, when leased, is a ceiling on used granted by the manager's allocator.
	lease  int64
	leased bool
}

func (c *daily) bounded() bool { return c.limit > 0 || c.leased }

// fits reports whether n more fit today; unsure (the day's use so far is not known
// yet) fails closed.
func (c *daily) fits(n int64, unsure bool) bool {
	if !c.bounded() {
		return true
	}
	return !unsure && (c.limit == 0 || c.others+c.used+n <= c.limit) && (!c.leased || c.used+n <= c.lease)
}

func (c *daily) roll(day int64) {
	if day != c.day {
		c.day, c.used, c.others = day, 0, 0
	}
}

// Account is one account (key) on one pool of one provider: its buckets, daily
// caps and concurrency semaphore. All its limits are checked and taken under one
// mutex, so admission is all-or-nothing; nothing global is locked.
type Account struct {
	Provider, Key, Pool string

	pool  *Pool
	clock Clock

	mu      sync.Mutex
	buckets [numKinds]Bucket
	// Per-minute limit layers; the effective limit is the least of those set.
	configured [numKinds]int64
	learned    [numKinds]int64
	external   [numKinds]externalLimit
	// ceiling is each per-minute bucket's burst without a lease or throttling
	// (+Inf when only a lease limits it): a demand above the bucket's burst but
	// within its ceiling may fit after the next lease, so it waits, not fails.
	ceiling    [numKinds]float64
	margin     float64 // fraction taken off configured and learned limits
	throttle   float64 // 1, lowered by upstream 429s
	throttleAt int64   // the last change of throttle
	last429    int64   // the last upstream 429
	fastTakes  int
	holdUntil  int64 // no admission before this reading (upstream Retry-After)
	dayReqs    daily
	dayTokens  daily
	maxConc    int64
	// leaseConc, when leaseConcSet, is the allocator's grant of concurrency slots.
	leaseConc    int64
	leaseConcSet bool
	lastSeen     headerSample

	// In flight = admitted - released. Admission counts under mu with a plain add;
	// release needs no lock, so the pair costs one atomic instead of two.
	admitted int64
	released atomic.Int64
	counters accountCounters
}

type externalLimit struct {
	set           bool
	ratePerSecond float64
	burst         float64
}

type headerSample struct {
	at  int64
	obs Observation
	ok  bool
}

type accountCounters struct {
	attempts, inputTokens, outputTokens, upstream429, upstream5xx, upstreamOther atomic.Int64
	unanswered                                                                   atomic.Int64
	retries, reservedTokens, refundedTokens, overrunTokens                       atomic.Int64
}

func newAccount(provider, key, poolName string, pool *Pool, clock Clock) *Account {
	return &Account{Provider: provider, Key: key, Pool: poolName, pool: pool, clock: clock, throttle: 1}
}

// configure applies configured limits, keeping bucket state (SetLimit) for kinds
// whose effective limit changes.
func (p *Account) configure(l limiterconfig.Limits, marginPercent int32) {
	p.mu.Lock()
	now := p.clock.Now()
	p.configured = [numKinds]int64{l.RequestsPerMinute, l.TokensPerMinute, l.InputTokensPerMinute, l.OutputTokensPerMinute}
	p.margin = float64(marginPercent) / 100
	p.maxConc = l.MaxConcurrency
	p.dayReqs.limit = l.RequestsPerDay
	p.dayTokens.limit = l.TokensPerDay
	p.rollDaysLocked(now)
	p.applyLimitsLocked(now)
	p.mu.Unlock()
	p.pool.wake()
}

// applyLimitsLocked recomputes every bucket's effective limit from its layers.
func (p *Account) applyLimitsLocked(now int64) {
	for k := range numKinds {
		perMinute := float64(p.configured[k])
		if l := float64(p.learned[k]); l > 0 && (perMinute == 0 || l < perMinute) {
			perMinute = l
		}
		p.ceiling[k] = perMinute * (1 - p.margin)
		if perMinute == 0 {
			p.ceiling[k] = math.Inf(1)
		}
		perMinute *= (1 - p.margin) * p.throttle
		rate, burst := perMinute/60, perMinute
		if e := p.external[k]; e.set {
			if perMinute == 0 || e.ratePerSecond < rate {
				rate = e.ratePerSecond
			}
			if perMinute == 0 || e.burst < burst {
				burst = e.burst
			}
		} else if perMinute == 0 {
			if p.buckets[k].Limited() {
				p.buckets[k].Unlimit()
			}
			continue
		}
		b := &p.buckets[k]
		if !b.Limited() || b.RatePerSecond() != rate || b.Burst() != burst {
			b.SetLimit(rate, burst, now)
		}
	}
	p.fastTakes = 0
}

// SetLimit caps a per-minute limit of this account at rate units per second with the
// given burst capacity, on top of the configured and learned limits (the least
// wins). It keeps the bucket's level and debt and never adds a burst; waiters are
// woken if the change makes room. It is the seam for leases of a shared global quota.
func (p *Account) SetLimit(k Kind, ratePerSecond, burst float64) {
	if k >= numKinds {
		return
	}
	p.mu.Lock()
	p.external[k] = externalLimit{set: true, ratePerSecond: max(ratePerSecond, 0), burst: max(burst, 0)}
	p.applyLimitsLocked(p.clock.Now())
	p.mu.Unlock()
	p.pool.wake()
}

// SetConcurrencyLease caps in-flight requests at slots (0 admits none) on top of
// the configured maxConcurrency; slots < 0 removes the cap. Requests in flight are
// not cut short: a lower cap takes effect as they finish.
func (p *Account) SetConcurrencyLease(slots int64) {
	p.mu.Lock()
	p.leaseConc, p.leaseConcSet = max(slots, 0), slots >= 0
	p.mu.Unlock()
	p.pool.wake()
}

// SetDailyLease caps today's requests and tokens at the given ceilings on this
// account's own day counters (0 admits no more); a ceiling < 0 removes that cap.
func (p *Account) SetDailyLease(requests, tokens int64) {
	p.mu.Lock()
	p.dayReqs.lease, p.dayReqs.leased = max(requests, 0), requests >= 0
	p.dayTokens.lease, p.dayTokens.leased = max(tokens, 0), tokens >= 0
	p.mu.Unlock()
	p.pool.wake()
}

// RestoreToday takes what the manager says the account's pool used today across
// its sidecars (a restarted sidecar's own counters start at zero) as counting
// against the configured daily limits; the counters this sidecar reports stay its
// own, so that the manager's allocator does not count them twice.
func (p *Account) RestoreToday(requests, tokens int64) {
	p.mu.Lock()
	p.rollDaysLocked(p.clock.Now())
	p.dayReqs.others = max(p.dayReqs.others, requests-p.dayReqs.used)
	p.dayTokens.others = max(p.dayTokens.others, tokens-p.dayTokens.used)
	p.mu.Unlock()
}

// concLimitLocked is the binding concurrency cap and whether there is one.
func (p *Account) concLimitLocked() (int64, bool) {
	switch {
	case p.leaseConcSet && p.maxConc > 0:
		return min(p.leaseConc, p.maxConc), true
	case p.leaseConcSet:
		return p.leaseConc, true
	}
	return p.maxConc, p.maxConc > 0
}

func (p *Account) concFullLocked() bool {
	limit, ok := p.concLimitLocked()
	return ok && p.inFlightLocked() >= limit
}

func (p *Account) dayUnsure() bool {
	return p.pool != nil && p.pool.engine != nil && p.pool.engine.dayUnsure.Load()
}

// ClearLimit removes a SetLimit cap.
func (p *Account) ClearLimit(k Kind) {
	if k >= numKinds {
		return
	}
	p.mu.Lock()
	p.external[k] = externalLimit{}
	p.applyLimitsLocked(p.clock.Now())
	p.mu.Unlock()
	p.pool.wake()
}

// tryAdmit takes d from every limit of the account, or nothing.
func (p *Account) tryAdmit(d *Demand) (Reservation, bool) {
	p.mu.Lock()
	if p.concFullLocked() {
		p.mu.Unlock()
		return Reservation{}, false
	}
	now := int64(-1) // not read: the fast path charges pending units instead
	if p.fastTakes < fastTakeRefresh && p.holdUntil == 0 && p.fitsStaleLocked(d) {
		p.fastTakes++
	} else {
		p.fastTakes = 0
		now = p.clock.Now()
		if !p.fitsLocked(d, now) {
			p.mu.Unlock()
			return Reservation{}, false
		}
	}
	r := p.takeLocked(d, now)
	p.admitted++
	p.mu.Unlock()
	return r, true
}

func (p *Account) fitsStaleLocked(d *Demand) bool {
	tokens := d.InputTokens + d.OutputTokens
	return p.buckets[KindRequests].hasStale(1) &&
		p.buckets[KindTokens].hasStale(float64(tokens)) &&
		p.buckets[KindInputTokens].hasStale(float64(d.InputTokens)) &&
		p.buckets[KindOutputTokens].hasStale(float64(d.OutputTokens)) &&
		p.dailyFitsLocked(tokens)
}

func (p *Account) fitsLocked(d *Demand, now int64) bool {
	if p.holdUntil != 0 {
		if now < p.holdUntil {
			return false
		}
		p.holdUntil = 0
	}
	if p.dayReqs.bounded() || p.dayTokens.bounded() {
		p.rollDaysLocked(now)
	}
	for k := range numKinds {
		if !p.buckets[k].has(d.amount(k), now) {
			return false
		}
	}
	return p.dailyFitsLocked(d.InputTokens + d.OutputTokens)
}

func (p *Account) dailyFitsLocked(tokens int64) bool {
	if !p.dayReqs.bounded() && !p.dayTokens.bounded() {
		return true
	}
	unsure := p.dayUnsure()
	return p.dayReqs.fits(1, unsure) && p.dayTokens.fits(tokens, unsure)
}

func (p *Account) rollDaysLocked(now int64) {
	day := utcDay(p.clock.Wall(now))
	p.dayReqs.roll(day)
	p.dayTokens.roll(day)
}

// takeLocked charges d; now < 0 means the clock was not read.
func (p *Account) takeLocked(d *Demand, now int64) Reservation {
	b := &p.buckets
	in, out := float64(d.InputTokens), float64(d.OutputTokens)
	if now < 0 {
		b[KindRequests].take(1)
		b[KindTokens].take(in + out)
		b[KindInputTokens].take(in)
		b[KindOutputTokens].take(out)
	} else {
		b[KindRequests].takeNow(1, now)
		b[KindTokens].takeNow(in+out, now)
		b[KindInputTokens].takeNow(in, now)
		b[KindOutputTokens].takeNow(out, now)
	}
	tokens := d.InputTokens + d.OutputTokens
	p.dayReqs.used++
	p.dayTokens.used += tokens
	return Reservation{account: p, input: d.InputTokens, output: d.OutputTokens, day: p.dayTokens.day}
}

// blockers explains why d does not fit now: the limit that binds longest and how long
// until it may fit (+Inf when only a release or a config change can make room, or
// when d can never fit; never reports 0).
func (p *Account) blockers(d *Demand) (limit string, wait float64, never bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	p.rollDaysLocked(now)
	wait = 0
	for k := range numKinds {
		n := d.amount(k)
		b := &p.buckets[k]
		if b.Limited() && n > b.Burst() {
			if n > p.ceiling[k] {
				return k.String(), math.Inf(1), true
			}
			// Only a lease or throttling holds the burst under n: the next lease
			// (asked for within a second while requests wait) may make room.
			if w := float64(time.Second); w > wait {
				limit, wait = k.String(), w
			}
			continue
		}
		if w := b.waitFor(n, now); w > wait {
			limit, wait = k.String(), w
		}
	}
	if p.holdUntil > now {
		if w := float64(p.holdUntil - now); w > wait {
			limit, wait = LimitUpstreamHold, w
		}
	}
	tokens := d.InputTokens + d.OutputTokens
	unsure := p.dayUnsure()
	switch {
	case (p.dayReqs.bounded() || p.dayTokens.bounded()) && unsure:
		// Until the manager says what the account used today; the first answer
		// usually comes within a report's round trip.
		if w := float64(time.Second); w > wait {
			limit, wait = LimitRequestsPerDay, w
		}
	case !p.dayReqs.fits(1, false) || !p.dayTokens.fits(tokens, false):
		name := LimitRequestsPerDay
		if p.dayTokens.limit > 0 && tokens > p.dayTokens.limit {
			return LimitTokensPerDay, math.Inf(1), true
		}
		if !p.dayTokens.fits(tokens, false) {
			name = LimitTokensPerDay
		}
		wait2 := float64(untilNextUTCDay(p.clock.Wall(now)))
		if p.dayReqs.leased || p.dayTokens.leased {
			// A leased ceiling may grow with the next lease.
			wait2 = float64(time.Second)
		}
		if wait2 > wait {
			limit, wait = name, wait2
		}
	}
	if p.concFullLocked() && wait == 0 {
		return LimitConcurrency, math.Inf(1), false
	}
	if wait == 0 {
		// Fits now: a racing admission will take it; retry promptly.
		return "", 1, false
	}
	return limit, wait, false
}

// headroom is the smallest fraction of capacity left across the account's limits,
// used to spread load over keys.
func (p *Account) headroom() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	h := 1.0
	for k := range numKinds {
		b := &p.buckets[k]
		if b.Limited() && b.Burst() > 0 {
			h = min(h, b.Level(now)/b.Burst())
		}
	}
	if limit, ok := p.concLimitLocked(); ok {
		if limit == 0 {
			return 0
		}
		h = min(h, 1-float64(p.inFlightLocked())/float64(limit))
	}
	return h
}

// Reservation is what an admission took from an account. The zero value does nothing.
type Reservation struct {
	account       *Account
	input, output int64
	day           int64
}

// Account is the account the reservation was taken from (nil for the zero value).
func (r Reservation) Account() *Account { return r.account }

// Reserved is the reserved demand.
func (r Reservation) Reserved() Demand {
	return Demand{InputTokens: r.input, OutputTokens: r.output}
}

// End settles the reservation with what its attempt did and gives the concurrency
// slot back. It is the one way to finish an admission that reached the provider
// (Cancel is the one for an admission that did not), and it empties r, so a second
// End or Cancel on the same variable does nothing: a caller that defers End cannot
// settle or release twice.
func (r *Reservation) End(a Attempt) {
	if r.account == nil {
		return
	}
	held := *r
	*r = Reservation{}
	held.settle(a)
	held.release()
}

// release gives the concurrency slot back.
func (r Reservation) release() {
	if r.account == nil {
		return
	}
	r.account.released.Add(1)
	r.account.pool.wake()
}

// Cancel undoes an admission whose request never reached the provider: every unit,
// the request included, goes back, and the concurrency slot is released. Like End it
// empties r, so it is harmless after End or a first Cancel.
func (r *Reservation) Cancel() {
	p := r.account
	if p == nil {
		return
	}
	held := *r
	*r = Reservation{}
	p.mu.Lock()
	now := p.clock.Now()
	p.fastTakes = 0
	d := held.Reserved()
	for k := range numKinds {
		p.buckets[k].give(d.amount(k), now)
	}
	p.rollDaysLocked(now)
	if p.dayReqs.day == held.day {
		p.dayReqs.used = max(0, p.dayReqs.used-1)
		p.dayTokens.used = max(0, p.dayTokens.used-held.input-held.output)
	}
	p.mu.Unlock()
	held.release()
}

// Attempt is what happened to one upstream call made under a reservation.
type Attempt struct {
	// Status is the upstream HTTP status; 0 when there was no response.
	Status int
	// Usage is what the response reported, when UsageKnown.
	Usage      Usage
	UsageKnown bool
	// Retried means another attempt follows this one.
	Retried bool
	// Canceled means the app left during the attempt: what the upstream did then says
	// nothing about its health, so the attempt counts in no failure counter.
	Canceled bool
}

// settle reconciles the reserved tokens with what the attempt used: the difference is
// refunded, or owed as debt when usage exceeded the reservation. Without reported
// usage a successful call keeps the whole reservation (the estimate stands) and a
// failed one is refunded in full, since the provider served nothing. The request unit
// is never refunded: an attempt costs a request.
func (r Reservation) settle(a Attempt) {
	p := r.account
	if p == nil {
		return
	}
	c := &p.counters
	c.attempts.Add(1)
	switch {
	case a.Canceled:
	case a.Status == 0:
		c.unanswered.Add(1)
	case a.Status == 429:
		c.upstream429.Add(1)
	case a.Status >= 500:
		c.upstream5xx.Add(1)
	case a.Status < 200 || a.Status > 299:
		c.upstreamOther.Add(1)
	}
	if a.Retried {
		c.retries.Add(1)
	}
	reserved := Usage{InputTokens: r.input, OutputTokens: r.output}
	used := reserved
	switch {
	case a.UsageKnown:
		used = a.Usage
	case a.Status < 200 || a.Status > 299:
		used = Usage{}
	}
	c.reservedTokens.Add(r.input + r.output)
	c.inputTokens.Add(used.InputTokens)
	c.outputTokens.Add(used.OutputTokens)

	p.mu.Lock()
	now := p.clock.Now()
	p.fastTakes = 0
	refunded := p.reconcileLocked(KindTokens, reserved.InputTokens+reserved.OutputTokens, used.InputTokens+used.OutputTokens, now)
	p.reconcileLocked(KindInputTokens, reserved.InputTokens, used.InputTokens, now)
	p.reconcileLocked(KindOutputTokens, reserved.OutputTokens, used.OutputTokens, now)
	p.rollDaysLocked(now)
	if p.dayTokens.day == r.day {
		p.dayTokens.used = max(0, p.dayTokens.used+used.InputTokens+used.OutputTokens-reserved.InputTokens-reserved.OutputTokens)
	}
	if a.Status >= 200 && a.Status <= 299 {
		p.recoverLocked(now)
	}
	p.mu.Unlock()
	diff := used.InputTokens + used.OutputTokens - reserved.InputTokens - reserved.OutputTokens
	if diff > 0 {
		c.overrunTokens.Add(diff)
	} else {
		c.refundedTokens.Add(-diff)
	}
	if refunded {
		p.pool.wake()
	}
}

// reconcileLocked settles one bucket; it reports whether units were given back.
func (p *Account) reconcileLocked(k Kind, reserved, used int64, now int64) bool {
	b := &p.buckets[k]
	switch {
	case used < reserved:
		b.give(float64(reserved-used), now)
		return b.Limited()
	case used > reserved:
		b.takeNow(float64(used-reserved), now)
	}
	return false
}

// Observe applies a provider's rate-limit report: a reported limit is recorded as
// learned (the effective limit is the least of configured and learned), and a
// reported remaining below the local level lowers the local level.
func (p *Account) Observe(o Observation) {
	p.mu.Lock()
	now := p.clock.Now()
	p.lastSeen = headerSample{at: now, obs: o, ok: true}
	changed := false
	for k := range numKinds {
		w := o.Windows[k]
		if w.HasLimit && w.Limit > 0 && w.Limit != p.learned[k] {
			p.learned[k] = w.Limit
			changed = true
		}
	}
	if changed {
		p.applyLimitsLocked(now)
	}
	for k := range numKinds {
		if w := o.Windows[k]; w.HasRemaining && w.Remaining >= 0 {
			p.buckets[k].lowerTo(float64(w.Remaining), now)
		}
	}
	p.fastTakes = 0
	p.mu.Unlock()
	if changed {
		p.pool.wake()
	}
}

// Throttle reacts to a retryable 429 from the provider: no admission from this account
// until retryAfter has passed (when the provider said), and the account's rates drop by
// a step (to at most half), recovering a step per minute of successes.
func (p *Account) Throttle(retryAfter time.Duration) {
	p.mu.Lock()
	now := p.clock.Now()
	if retryAfter > 0 {
		p.holdUntil = max(p.holdUntil, now+int64(retryAfter))
	}
	if p.throttle > throttleFloor {
		p.throttle = max(throttleFloor, p.throttle-throttleStep)
		p.applyLimitsLocked(now)
	}
	p.throttleAt, p.last429 = now, now
	p.fastTakes = 0
	p.mu.Unlock()
	if retryAfter > 0 {
		// Waiters must learn the new wake-up time.
		p.pool.wake()
	}
}

// recoverLocked raises a throttled rate by a step after a success, as often as the
// evidence allows (see throttleRecoverSeen).
func (p *Account) recoverLocked(now int64) {
	if p.throttle >= 1 {
		return
	}
	every := throttleRecoverBlind
	if p.capacitySeenLocked() {
		every = throttleRecoverSeen
	}
	if now-p.throttleAt < int64(every) {
		return
	}
	p.throttle = min(1, p.throttle+throttleStep)
	p.throttleAt = now
	p.applyLimitsLocked(now)
}

// capacitySeenLocked reports whether headers read after the last 429 showed every
// reported window with something remaining.
func (p *Account) capacitySeenLocked() bool {
	if !p.lastSeen.ok || p.lastSeen.at <= p.last429 {
		return false
	}
	seen := false
	for _, w := range p.lastSeen.obs.Windows {
		if !w.HasRemaining {
			continue
		}
		if w.Remaining <= 0 {
			return false
		}
		seen = true
	}
	return seen
}

// InFlight is the number of admitted, unreleased requests.
func (p *Account) InFlight() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inFlightLocked()
}

func (p *Account) inFlightLocked() int64 { return p.admitted - p.released.Load() }
