// Package allocator shares one account's limits among the sidecars that use it, as
// leases: each sidecar (a holder: one pod's one sidecar process) is granted a share
// of each limit (a dimension) for a bounded time, and the shares together never
// exceed the limit less its safety margin.
//
// It is pure: no I/O, no goroutines, no clock of its own. The manager calls Report
// for every report a sidecar sends, with the time, and gets back the lease to answer
// with; Expire drops holders whose lease ran out.
//
// # The invariant
//
// For every account and dimension, at every instant, the sum over holders of what a
// holder may be enforcing (its commitment) stays within limit × (1 − margin); for the
// daily dimensions the sum of the holders' ceilings plus what departed holders used
// today (retired) does. A holder's commitment is the larger of the lease it says it
// applies (reported with every report) and the lease last offered to it, because
// until its next report the allocator cannot know whether the last answer arrived.
// So capacity moves in two steps: a decrease is offered, the holder's next report
// confirms it, and only then is the capacity free to be granted to another holder.
// A holder that stops reporting keeps its commitment until its lease expires (the
// sidecar measures the lease from before it sent its report, so it lets go first).
//
// A new allocator (manager restart, new leader) does not know the leases its
// predecessor granted. For one lease TTL after it starts it only adopts what holders
// report they apply and renews or lowers it; after that every lease it did not hear
// about has expired, and it grants freely.
package allocator

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Dim is one limit of an account.
type Dim uint8

// The dimensions. Per-minute ones are granted as a rate per minute whose burst is
// the same amount; concurrency as whole slots; daily ones as a ceiling on the
// holder's own count for the UTC day.
const (
	RequestsPerMinute Dim = iota
	TokensPerMinute
	InputTokensPerMinute
	OutputTokensPerMinute
	Concurrency
	RequestsPerDay
	TokensPerDay
	NumDims
)

var dimNames = [NumDims]string{
	"requestsPerMinute", "tokensPerMinute", "inputTokensPerMinute", "outputTokensPerMinute",
	"maxConcurrency", "requestsPerDay", "tokensPerDay",
}

// String is the limit's field name, as limiterconfig and hubapi spell it.
func (d Dim) String() string {
	if d < NumDims {
		return dimNames[d]
	}
	return "dim(?)"
}

// PerMinute reports whether d is a rate per minute.
func (d Dim) PerMinute() bool { return d < Concurrency }

// Daily reports whether d counts per UTC day.
func (d Dim) Daily() bool { return d == RequestsPerDay || d == TokensPerDay }

// Amounts holds one value per dimension.
type Amounts [NumDims]float64

// AccountID names an account: a ProviderQuota, a credential key, a model pool.
type AccountID struct {
	Namespace, Quota, Key, Pool string
}

// Config tunes an Allocator.
type Config struct {
	// Margin is the fraction of each limit never granted, 0..1.
	Margin float64
	// TTL is how long a lease lasts without renewal.
	TTL time.Duration
	// Reserve is the fraction of each limit kept back from growing holders, so
	// that a new holder gets a grant at once.
	Reserve float64
}

// Demand is what a holder would use without a lease.
type Demand struct {
	// Want per dimension: per-minute ones in units per minute (arrivals plus what
	// it takes to drain the backlog within a minute); concurrency in slots (in
	// flight plus queued); daily ones in units wanted until the lease's renewal.
	Want Amounts
	// Weight is the holder's priority weight (> 0); shares are max-min fair in
	// proportion to it.
	Weight float64
	// Queued is the number of requests waiting in the holder's queue.
	Queued int64
}

// Report is what the allocator learns from one sidecar report.
type Report struct {
	Account AccountID
	// Holder identifies the sidecar process (pod UID and boot ID).
	Holder string
	// Limits are the account's limits as declared; 0 is "no limit".
	Limits Amounts
	// Learned are limits the provider's rate-limit headers reported to this holder,
	// 0 where none. The account's limits are the declared ones lowered by every
	// holder's learned ones: the provider knows the account, the spec may not.
	Learned Amounts
	// Throttle is the factor upstream 429s put on this holder's per-minute rates,
	// 0..1 (0 is none). The account's per-minute limits are scaled by the least
	// factor of its holders: a 429 on a shared key means the account is over (other
	// users of the key, estimates short of what the provider counts), whichever
	// holder drew it, so the allocator shrinks everyone's grants, not only the
	// holder's that saw it. The sidecars raise the factor again as successes follow.
	Throttle float64
	// Margin is the account's safety margin, 0..1; Config.Margin is the least.
	Margin float64
	Demand Demand
	// Applied is the lease amounts the holder enforces now, nil before its first
	// lease (or after its lease expired on its side).
	Applied *Amounts
	// Used is the holder's own count for the current UTC day (daily dimensions).
	Used Amounts
	// AccountUsedToday is, when known, what the whole account used today (the
	// manager's ledger, which survives restarts through the ProviderQuota status):
	// a floor for what departed holders used.
	AccountUsedToday *Amounts
	// Day is the UTC day (days since the epoch) Used counts.
	Day int64
	// Final is the holder's last report: it gives its lease back.
	Final bool
}

// Lease is a holder's grant: Amounts for every limited dimension (Limited says
// which), valid until Expires on the allocator's clock.
type Lease struct {
	Amounts Amounts
	Limited [NumDims]bool
	Expires time.Time
	// Learning is set while a new allocator adopts leases instead of granting.
	Learning bool
}

type holder struct {
	offered   Amounts // the last lease offered
	applied   Amounts // what the holder last said it enforces
	committed Amounts // max(offered, applied): what it may be enforcing
	used      Amounts
	demand    Demand
	expires   time.Time
	learned   Amounts
	throttle  float64
}

type account struct {
	declared Amounts
	limits   Amounts // declared, lowered by the holders' learned limits and throttle
	margin   float64
	day      int64
	retired  Amounts // daily: used by holders that left today
	floor    Amounts // daily: the account's used-today ledger
	holders  map[string]*holder
	// shares are the holders' targets (Allocator.targets) while stale is false:
	// they change only with what a report or an expiry changes, and recomputing
	// them is most of a report's work (max-min over every holder of the account).
	shares map[string]Amounts
	stale  bool
	// firstExpiry is no later than any holder's expiry: no holder expires before it.
	firstExpiry time.Time
}

// Allocator holds every account's leases.
type Allocator struct {
	cfg        Config
	started    time.Time
	learnUntil time.Time
	// grantUntil, when horizon is set, is the grant horizon on record: the
	// allocator grants nothing new from then on, and no lease outlives it by more
	// than one TTL (see SetHorizon).
	grantUntil time.Time
	horizon    bool
	accounts   map[AccountID]*account
}

// New returns an allocator started at now: it learns for one TTL before granting.
func New(cfg Config, now time.Time) *Allocator {
	return &Allocator{cfg: cfg, started: now, learnUntil: now.Add(cfg.TTL), accounts: map[AccountID]*account{}}
}

// SetHorizon bounds this term's leases by a grant horizon kept on record where the
// next leader reads it: grantUntil is the horizon this term has durably recorded
// (it grants only before it, and every lease it offers expires by grantUntil + TTL),
// and priorUntil the previous term's (zero when there was none), whose leases have
// all expired by priorUntil + TTL. Learning then ends at that point instead of one
// TTL after the start, at once when no earlier term's lease can still be in force.
func (a *Allocator) SetHorizon(priorUntil, grantUntil time.Time) {
	a.learnUntil = minTime(a.started.Add(a.cfg.TTL), priorUntil.Add(a.cfg.TTL))
	a.grantUntil, a.horizon = grantUntil, true
}

// AwaitHorizon makes the allocator offer only leases that end at once until
// SetHorizon: for a term that keeps a grant horizon on record but has not read or
// written it yet.
func (a *Allocator) AwaitHorizon() { a.SetHorizon(a.started, time.Time{}) }

// ExtendHorizon moves this term's recorded grant horizon later (never earlier).
func (a *Allocator) ExtendHorizon(grantUntil time.Time) {
	a.grantUntil = maxTime(a.grantUntil, grantUntil)
}

// Learning reports whether the allocator only adopts, renews or lowers leases at
// now: while an earlier term's leases may be in force, or past its grant horizon.
func (a *Allocator) Learning(now time.Time) bool {
	return now.Before(a.learnUntil) || (a.horizon && !now.Before(a.grantUntil))
}

func maxTime(x, y time.Time) time.Time {
	if y.After(x) {
		return y
	}
	return x
}

func minTime(x, y time.Time) time.Time {
	if y.Before(x) {
		return y
	}
	return x
}

func (a *Allocator) budget(acc *account, d Dim) float64 {
	b := acc.limits[d] * (1 - acc.margin)
	if d == Concurrency || d.Daily() {
		b = math.Floor(b)
	}
	if d.Daily() {
		b -= max(acc.retired[d], acc.floor[d]-acc.liveUsed(d))
	}
	return b
}

func (acc *account) liveUsed(d Dim) float64 {
	var s float64
	for _, h := range acc.holders {
		s += h.used[d]
	}
	return s
}

func (acc *account) committed(d Dim) float64 {
	var s float64
	for _, h := range acc.holders {
		s += h.committed[d]
	}
	return s
}

// Report folds one report in and returns the holder's new lease; after a final
// report the holder is gone and ok is false.
func (a *Allocator) Report(now time.Time, r Report) (lease Lease, ok bool) {
	acc := a.accounts[r.Account]
	if acc == nil {
		acc = &account{holders: map[string]*holder{}, day: r.Day}
		a.accounts[r.Account] = acc
	}
	limits, margin, declared := acc.limits, acc.margin, acc.declared
	acc.declared, acc.margin = r.Limits, min(max(a.cfg.Margin, r.Margin), 1)
	if r.Day > acc.day {
		acc.startDay(r.Day)
	}
	a.expireAccount(r.Account, acc, now)
	h := acc.holders[r.Holder]
	if r.Final {
		// The sidecar admits nothing more before its final report, so what it used
		// is all it will ever have used today.
		for d := range NumDims {
			if d.Daily() && r.Day == acc.day {
				acc.retired[d] += r.Used[d]
			}
		}
		delete(acc.holders, r.Holder)
		acc.stale = true
		return Lease{}, false
	}
	if h == nil {
		h = &holder{}
		acc.holders[r.Holder] = h
		acc.stale = true
	}
	demand := r.Demand
	if demand.Weight <= 0 {
		demand.Weight = 1
	}
	if demand.Want != h.demand.Want || demand.Weight != h.demand.Weight {
		acc.stale = true
	}
	// The limits depend on every holder's evidence: computed again only when the
	// holders, the declared limits or this holder's evidence changed.
	if acc.stale || declared != r.Limits || h.learned != r.Learned || h.throttle != r.Throttle {
		h.learned, h.throttle = r.Learned, r.Throttle
		acc.correctLimits()
	}
	h.demand = demand
	if acc.limits != limits || acc.margin != margin {
		acc.stale = true
	}
	if r.Day == acc.day && h.used != r.Used {
		h.used, acc.stale = r.Used, true
	}
	if r.AccountUsedToday != nil && r.Day == acc.day {
		for d := range NumDims {
			if r.AccountUsedToday[d] > acc.floor[d] {
				acc.floor[d], acc.stale = r.AccountUsedToday[d], true
			}
		}
	}
	if r.Applied != nil {
		h.applied = *r.Applied
	} else {
		h.applied = Amounts{}
	}
	// The answer to the previous report was either applied (and is in Applied) or
	// lost: from here on only Applied and the new offer can be in force.
	h.committed = h.applied
	for d := range NumDims {
		if d.Daily() {
			// A holder without a lease still used what it used.
			h.committed[d] = max(h.committed[d], h.used[d])
		}
	}
	learning := a.Learning(now)
	if acc.stale || acc.shares == nil {
		acc.shares, acc.stale = a.targets(acc), false
	}
	a.offer(acc, h, acc.shares[r.Holder], r.Applied == nil, learning)
	h.expires = now.Add(a.cfg.TTL)
	if a.horizon {
		// Past the horizon the next leader may be granting: nothing offered may
		// outlive the horizon by more than the TTL it counts on.
		h.expires = maxTime(now, minTime(h.expires, a.grantUntil.Add(a.cfg.TTL)))
	}
	lease = Lease{Amounts: h.offered, Expires: h.expires, Learning: learning}
	for d := range NumDims {
		lease.Limited[d] = acc.limits[d] > 0
	}
	return lease, true
}

// startDay begins a new UTC day: yesterday's usage no longer counts. A holder's
// ceiling still does, whole, until its next lease: its counter restarts at zero
// under the ceiling it holds.
func (acc *account) startDay(day int64) {
	acc.stale = true
	acc.day, acc.retired, acc.floor = day, Amounts{}, Amounts{}
	for _, h := range acc.holders {
		for d := range NumDims {
			if d.Daily() {
				h.used[d] = 0
			}
		}
	}
}

// offer sets h's offer in every dimension: at once down to its target, up towards
// it only by what the budget leaves uncommitted (less the reserve for newcomers,
// unless h is one) and not while learning.
func (a *Allocator) offer(acc *account, h *holder, target Amounts, newcomer, learning bool) {
	for d := range NumDims {
		if acc.limits[d] <= 0 {
			h.offered[d], h.committed[d] = 0, 0
			continue
		}
		want := target[d]
		cur := h.committed[d]
		offer := min(want, cur)
		if !learning && want > cur {
			free := a.budget(acc, d) - acc.committed(d)
			if newcomer {
				// A new holder draws on the reserve at once.
				offer = cur + max(0, min(want-cur, free))
			} else {
				offer = cur + max(0, min(want-cur, free-a.reserve(acc, d)))
			}
		}
		if d == Concurrency || d.Daily() {
			offer = math.Floor(offer)
		}
		h.offered[d] = offer
		h.committed[d] = max(h.committed[d], offer)
	}
}

// correctLimits sets the limits grants are made against: the declared ones, each
// lowered to the least learned one, per-minute ones scaled by the least throttle.
// A limit the account does not declare stays unlimited: learning only lowers.
func (acc *account) correctLimits() {
	throttle := 1.0
	acc.limits = acc.declared
	for _, h := range acc.holders {
		if h.throttle > 0 {
			throttle = min(throttle, h.throttle)
		}
		for d := range NumDims {
			if l := h.learned[d]; l > 0 && acc.limits[d] > 0 {
				acc.limits[d] = min(acc.limits[d], l)
			}
		}
	}
	for d := range NumDims {
		if d.PerMinute() {
			acc.limits[d] *= throttle
		}
	}
}

func (a *Allocator) reserve(acc *account, d Dim) float64 {
	r := acc.limits[d] * (1 - acc.margin) * a.cfg.Reserve
	if d == Concurrency || d.Daily() {
		r = math.Floor(r)
	}
	return r
}

// targets computes each holder's fair share per dimension: weighted max-min of the
// budget less the reserve over what holders want, then what nobody wants spread by
// weight so that idle capacity is not stranded. Daily targets are ceilings: the
// holder's own use today plus its share of what remains, up to what it wants.
func (a *Allocator) targets(acc *account) map[string]Amounts {
	out := make(map[string]Amounts, len(acc.holders))
	ids := make([]string, 0, len(acc.holders))
	for id := range acc.holders {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for d := range NumDims {
		dim := d
		if acc.limits[d] <= 0 {
			continue
		}
		avail := a.budget(acc, dim) - a.reserve(acc, dim)
		if dim.Daily() {
			avail -= acc.liveUsed(dim)
		}
		wants := make([]float64, len(ids))
		weights := make([]float64, len(ids))
		for i, id := range ids {
			wants[i] = max(0, acc.holders[id].demand.Want[d])
			weights[i] = acc.holders[id].demand.Weight
		}
		// Daily allowance is granted in chunks of what holders want, not spread:
		// a holder that vanishes burns its whole ceiling for the day.
		shares := waterFill(max(0, avail), wants, weights, !dim.Daily())
		if dim == Concurrency || dim.Daily() {
			roundShares(shares, math.Floor(max(0, avail)))
		}
		for i, id := range ids {
			t := out[id]
			t[d] = shares[i]
			if dim.Daily() {
				t[d] += acc.holders[id].used[d]
			}
			out[id] = t
		}
	}
	return out
}

// waterFill is weighted max-min fairness: no holder gets more than it wants, and
// capacity a holder does not want goes to the others in proportion to weight;
// what is left when every want is met is spread by weight as headroom, when spread.
func waterFill(capacity float64, wants, weights []float64, spread bool) []float64 {
	n := len(wants)
	shares := make([]float64, n)
	if n == 0 {
		return shares
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(x, y int) int { return cmp.Compare(wants[x]/weights[x], wants[y]/weights[y]) })
	left, wsum := capacity, 0.0
	for _, i := range order {
		wsum += weights[i]
	}
	for _, i := range order {
		fair := left * weights[i] / wsum
		shares[i] = min(wants[i], fair)
		left -= shares[i]
		wsum -= weights[i]
	}
	if left > 0 && spread {
		total := 0.0
		for _, w := range weights {
			total += w
		}
		for i := range shares {
			shares[i] += left * weights[i] / total
		}
	}
	return shares
}

// Holders is the number of holders of an account's leases.
func (a *Allocator) Holders(id AccountID) int {
	if acc := a.accounts[id]; acc != nil {
		return len(acc.holders)
	}
	return 0
}

// Committed is what the holders of account id may be enforcing of d together. An
// allocator that holds a lease of its own on the account from a parent (a
// cluster's share of an account shared by several clusters,
// docs/quota-federation.md) reports the larger of this and its lease as what it
// applies, so that the parent counts a decrease only once its holders confirmed it.
func (a *Allocator) Committed(id AccountID, d Dim) float64 {
	if acc := a.accounts[id]; acc != nil {
		return acc.committed(d)
	}
	return 0
}

// roundShares makes shares whole without stranding capacity: each is rounded
// down, and the units that frees go, one each, to the largest fractions (the
// first holders in order on ties), up to total.
func roundShares(shares []float64, total float64) {
	type frac struct {
		i int
		f float64
	}
	fracs := make([]frac, 0, len(shares))
	sum := 0.0
	for i, x := range shares {
		fl := math.Floor(x + 1e-9)
		fracs = append(fracs, frac{i, x - fl})
		shares[i] = fl
		sum += fl
	}
	slices.SortStableFunc(fracs, func(a, b frac) int { return cmp.Compare(b.f, a.f) })
	for _, f := range fracs {
		if sum+1 > total || f.f <= 1e-9 {
			break
		}
		shares[f.i]++
		sum++
	}
}

// Expire drops holders whose lease ran out by now, in every account; Report does
// so for the account it touches.
func (a *Allocator) Expire(now time.Time) {
	for id, acc := range a.accounts {
		a.expireAccount(id, acc, now)
	}
}

// expireAccount drops acc's expired holders. A vanished holder's daily ceiling
// counts as used: it may have used all of it. An account nobody holds is forgotten
// at the day's end (its retired usage matters until then).
func (a *Allocator) expireAccount(id AccountID, acc *account, now time.Time) {
	if len(acc.holders) > 0 && now.Before(acc.firstExpiry) {
		return
	}
	// Every lease lasts one TTL from its last renewal, so a renewal or a newcomer
	// never expires before the holders already there: the earliest expiry found
	// here stays a lower bound until the next sweep. (A clock stepping back only
	// delays an expiry: the holder's commitment counts a little longer.)
	acc.firstExpiry = time.Time{}
	for hid, h := range acc.holders {
		if now.Before(h.expires) {
			if acc.firstExpiry.IsZero() || h.expires.Before(acc.firstExpiry) {
				acc.firstExpiry = h.expires
			}
			continue
		}
		for d := range NumDims {
			if d.Daily() {
				acc.retired[d] += max(h.committed[d], h.used[d])
			}
		}
		delete(acc.holders, hid)
		acc.stale = true
	}
	if len(acc.holders) == 0 && utcDay(now) > acc.day {
		delete(a.accounts, id)
	}
}

// utcDay is the UTC day of t, in days since the epoch.
func utcDay(t time.Time) int64 { return t.UTC().Unix() / 86400 }
