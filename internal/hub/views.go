package hub

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
)

// Bounds on what one status carries, so that a sidecar fleet with many on-demand
// models cannot grow an object without limit.
const (
	maxStatusModels   = 64
	maxStatusBreakers = 256 // the CRD's MaxItems
)

// quotaView is the aggregator-owned part of a ProviderQuota's status, plus what only
// metrics show.
type quotaView struct {
	status   quotaOwned
	breakers []modelBreaker // worst state per model, for metrics
	queues   map[string]int64
	// demandExceeds: requests wait although the leases grant the whole account
	// (less its margin and the reserve for new pods); the DemandExceedsQuota
	// condition says so.
	demandExceeds bool
}

// quotaOwned are the ProviderQuota status fields the aggregator owns, except
// lastUpdated, which is stamped only when one of these changes.
type quotaOwned struct {
	Utilization    *quotav1alpha1.UtilizationSummary
	Models         []quotav1alpha1.ModelUtilization
	TokensToday    int64
	RequestsToday  int64
	Day            string
	ActiveSidecars int32
	LearnedLimits  *quotav1alpha1.QuotaLimits
	Sharing        *quotav1alpha1.AccountSharing
}

type modelBreaker struct {
	model string
	state string
}

type poolAgg struct {
	win      counters
	inFlight int64
	keys     map[string]*keyLimits
	today    dayCount // sum of the sidecars' own day counters
}

type keyLimits struct {
	configured hubapi.Limits
	learned    hubapi.Limits
	learnedAt  time.Time
}

// effective is a key's per-minute limit of kind: the configured one, lowered by a
// learned one, as the limiter applies them (without its safety margin: status
// shows use against the account's real limit).
func (k *keyLimits) effective(kind string) int64 {
	c, l := k.configured.PerMinute(kind), k.learned.PerMinute(kind)
	if l > 0 && (c == 0 || l < c) {
		return l
	}
	return c
}

// sumKeys adds up a limit over an account's keys (each key carries the full
// limits); one unlimited key makes the pool unlimited.
func (p *poolAgg) sumKeys(limit func(*keyLimits) int64) int64 {
	var sum int64
	for _, k := range p.keys {
		v := limit(k)
		if v <= 0 {
			return 0
		}
		sum += v
	}
	return sum
}

// quotaView computes a ProviderQuota's view. cur is its status as stored: on the
// first call of a term, the day's totals persisted there are added to the ledger.
func (a *Aggregator) quotaView(k resourceKey, cur *quotav1alpha1.ProviderQuotaStatus) quotaView {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	l := a.quotaLedgerLocked(k)
	l.roll(utcDay(now))
	if !l.seeded {
		if cur.Day == l.day {
			l.tokens += cur.TokensToday
			l.requests += cur.RequestsToday
			l.unattributed = dayCount{requests: cur.RequestsToday, tokens: cur.TokensToday}
		}
		l.seeded = true
	}
	v := quotaView{queues: map[string]int64{}}
	v.status.Day, v.status.TokensToday, v.status.RequestsToday = l.day, l.tokens, l.requests
	pools := a.gatherQuotaLocked(k, now, &v)
	if v.status.ActiveSidecars == 0 {
		return v
	}
	v.status.Sharing, v.demandExceeds = a.sharingLocked(k, now, &v)

	sum := &quotav1alpha1.UtilizationSummary{}
	var learned quotav1alpha1.QuotaLimits
	for name, pa := range pools {
		mu := pa.utilization(name)
		summarize(sum, &mu)
		sum.DailyPercent = max(sum.DailyPercent, pa.dailyPercent(l.pools[name]))
		for _, kl := range pa.keys {
			lowerLearned(&learned.RequestsPerMinute, kl, hubapi.LimitRequestsPerMinute)
			lowerLearned(&learned.TokensPerMinute, kl, hubapi.LimitTokensPerMinute)
			lowerLearned(&learned.InputTokensPerMinute, kl, hubapi.LimitInputTokensPerMinute)
			lowerLearned(&learned.OutputTokensPerMinute, kl, hubapi.LimitOutputTokensPerMinute)
		}
		if pa.win != (counters{}) || pa.inFlight > 0 {
			v.status.Models = append(v.status.Models, mu)
		}
	}
	v.status.Utilization = sum
	if learned != (quotav1alpha1.QuotaLimits{}) {
		v.status.LearnedLimits = &learned
	}
	if len(v.status.Models) > maxStatusModels {
		slices.SortFunc(v.status.Models, func(x, y quotav1alpha1.ModelUtilization) int {
			return cmp.Compare(y.RequestsPerMinute.Used, x.RequestsPerMinute.Used)
		})
		v.status.Models = v.status.Models[:maxStatusModels]
	}
	slices.SortFunc(v.status.Models, func(x, y quotav1alpha1.ModelUtilization) int { return cmp.Compare(x.Name, y.Name) })
	return v
}

// gatherQuotaLocked sums, over the sidecars that report on quota k, its accounts per
// pool (window, in-flight, day counters, each key's limits), the worst breaker state
// per model and the queue depth per pool; it counts the sidecars into v.
func (a *Aggregator) gatherQuotaLocked(k resourceKey, now time.Time, v *quotaView) map[string]*poolAgg {
	pools := map[string]*poolAgg{}
	worst := map[string]string{}
	for _, s := range a.feeds[k] {
		v.status.ActiveSidecars++
		for pk, ps := range s.accounts {
			if pk.provider != k.Name {
				continue
			}
			pa := pools[pk.pool]
			if pa == nil {
				pa = &poolAgg{keys: map[string]*keyLimits{}}
				pools[pk.pool] = pa
			}
			pa.add(ps, pk.key, s.lastSeen, now)
		}
		for bk, bs := range s.breakers {
			if bk.provider == k.Name && stateRank(bs.latest.State) >= stateRank(worst[bk.model]) {
				worst[bk.model] = bs.latest.State
			}
		}
		for _, q := range s.queues {
			if q.Provider == k.Name {
				v.queues[q.Pool] += q.Depth
			}
		}
	}
	for m, st := range worst {
		v.breakers = append(v.breakers, modelBreaker{model: m, state: st})
	}
	return pools
}

// add folds one sidecar's account of key into the pool; the latest learned limits
// of a key win.
func (p *poolAgg) add(ps *accountSeries, key string, seen, now time.Time) {
	w := ps.hist.inWindow(now, Window)
	for i := range w {
		p.win[i] += w[i]
	}
	p.inFlight += ps.latest.InFlight
	p.today.requests += ps.latest.RequestsToday
	p.today.tokens += ps.latest.TokensToday
	kl := p.keys[key]
	if kl == nil {
		kl = &keyLimits{}
		p.keys[key] = kl
	}
	kl.configured = maxLimits(kl.configured, ps.latest.Limits)
	if ps.latest.Learned != (hubapi.Limits{}) && !seen.Before(kl.learnedAt) {
		kl.learned, kl.learnedAt = ps.latest.Learned, seen
	}
}

// utilization is the pool's use of its per-minute limits and concurrency in the window.
func (p *poolAgg) utilization(name string) quotav1alpha1.ModelUtilization {
	mu := quotav1alpha1.ModelUtilization{Name: name, RateLimited: p.win[cRateLimited], ServerErrors: p.win[cServerErrors]}
	limitOf := func(kind string) int64 { return p.sumKeys(func(k *keyLimits) int64 { return k.effective(kind) }) }
	mu.RequestsPerMinute = usage(p.win[cRequests], limitOf(hubapi.LimitRequestsPerMinute))
	mu.TokensPerMinute = usage(p.win.tokens(), limitOf(hubapi.LimitTokensPerMinute))
	if lim := limitOf(hubapi.LimitInputTokensPerMinute); lim > 0 {
		mu.InputTokensPerMinute = usage(p.win[cInputTokens], lim)
	}
	if lim := limitOf(hubapi.LimitOutputTokensPerMinute); lim > 0 {
		mu.OutputTokensPerMinute = usage(p.win[cOutputTokens], lim)
	}
	if lim := p.sumKeys(func(k *keyLimits) int64 { return k.configured.MaxConcurrency }); lim > 0 || p.inFlight > 0 {
		mu.Concurrency = usage(p.inFlight, lim)
	}
	return mu
}

// summarize raises the quota's summary to a pool's highest percentages.
func summarize(sum *quotav1alpha1.UtilizationSummary, mu *quotav1alpha1.ModelUtilization) {
	sum.RequestsPercent = max(sum.RequestsPercent, mu.RequestsPerMinute.Percent)
	for _, u := range []*quotav1alpha1.Usage{mu.TokensPerMinute, mu.InputTokensPerMinute, mu.OutputTokensPerMinute} {
		if u != nil {
			sum.TokensPercent = max(sum.TokensPercent, u.Percent)
		}
	}
	if mu.Concurrency != nil {
		sum.ConcurrencyPercent = max(sum.ConcurrencyPercent, mu.Concurrency.Percent)
	}
}

// dailyPercent is the pool's highest use of its daily limits: the manager's ledger
// or the sidecars' own day counters, whichever is higher (a restarted manager's
// ledger starts late).
func (p *poolAgg) dailyPercent(ledger *dayCount) int32 {
	used := dayCount{}
	if ledger != nil {
		used = *ledger
	}
	used.requests = max(used.requests, p.today.requests)
	used.tokens = max(used.tokens, p.today.tokens)
	var pct int32
	if lim := p.sumKeys(func(k *keyLimits) int64 { return k.configured.RequestsPerDay }); lim > 0 {
		pct = max(pct, percent(used.requests, lim))
	}
	if lim := p.sumKeys(func(k *keyLimits) int64 { return k.configured.TokensPerDay }); lim > 0 {
		pct = max(pct, percent(used.tokens, lim))
	}
	return pct
}

// lowerLearned keeps the lowest learned limit that differs from the declared one.
func lowerLearned(dst *int64, kl *keyLimits, kind string) {
	l := kl.learned.PerMinute(kind)
	if l <= 0 || l == kl.configured.PerMinute(kind) {
		return
	}
	if *dst == 0 || l < *dst {
		*dst = l
	}
}

func maxLimits(a, b hubapi.Limits) hubapi.Limits {
	return hubapi.Limits{
		RequestsPerMinute:     max(a.RequestsPerMinute, b.RequestsPerMinute),
		TokensPerMinute:       max(a.TokensPerMinute, b.TokensPerMinute),
		InputTokensPerMinute:  max(a.InputTokensPerMinute, b.InputTokensPerMinute),
		OutputTokensPerMinute: max(a.OutputTokensPerMinute, b.OutputTokensPerMinute),
		MaxConcurrency:        max(a.MaxConcurrency, b.MaxConcurrency),
		RequestsPerDay:        max(a.RequestsPerDay, b.RequestsPerDay),
		TokensPerDay:          max(a.TokensPerDay, b.TokensPerDay),
	}
}

func usage(used, limit int64) *quotav1alpha1.Usage {
	u := &quotav1alpha1.Usage{Used: used}
	if limit > 0 {
		u.Limit = limit
		u.Percent = percent(used, limit)
	}
	return u
}

// percent is used/limit*100 rounded down, within int32.
func percent(used, limit int64) int32 {
	if limit <= 0 || used <= 0 {
		return 0
	}
	return int32(min(math.Floor(float64(used)*100/float64(limit)), math.MaxInt32))
}

func stateRank(s string) int {
	switch s {
	case hubapi.BreakerOpen:
		return 3
	case hubapi.BreakerHalfOpen:
		return 2
	case hubapi.BreakerClosed:
		return 1
	}
	return 0
}

// chainOwned are the FallbackChain status fields the aggregator owns, but lastUpdated.
type chainOwned struct {
	ActiveEntry  *int32
	ActiveModel  string
	Failovers    quotav1alpha1.FailoverCounts
	LastFailover *quotav1alpha1.Failover
}

type chainView struct {
	status         chainOwned
	activeSidecars int
}

// chainView computes a FallbackChain's view; cur seeds the failover ledger once.
func (a *Aggregator) chainView(k resourceKey, cur *quotav1alpha1.FallbackChainStatus) chainView {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	cl := a.chainLedgerLocked(k)
	if !cl.seeded {
		cl.total += cur.Failovers.Total
		if lf := cur.LastFailover; lf != nil && (cl.lastFailover == nil || lf.Time.After(cl.lastFailover.at)) {
			cl.lastFailover = &failover{at: lf.Time.Time, from: lf.From, to: lf.To, reason: string(lf.Reason)}
		}
		cl.seeded = true
	}
	type entryKey struct {
		index           int
		provider, model string
	}
	requests := map[entryKey]int64{}
	v := chainView{}
	for _, s := range a.feeds[k] {
		if s.config.Kind != kindChain || s.config.Name != k.Name {
			continue
		}
		v.activeSidecars++
		for i, e := range s.chain {
			var n int64
			for pk, ps := range s.accounts {
				if pk.provider == e.Provider && pk.pool == e.Pool {
					n += ps.hist.inWindow(now, Window)[cRequests]
				}
			}
			requests[entryKey{i, e.Provider, e.Model}] += n
		}
	}
	var best entryKey
	var bestN int64
	for ek, n := range requests {
		if n > bestN || (n == bestN && n > 0 && ek.index < best.index) {
			best, bestN = ek, n
		}
	}
	if bestN > 0 {
		i := int32(best.index)
		v.status.ActiveEntry, v.status.ActiveModel = &i, best.model
	}
	v.status.Failovers = quotav1alpha1.FailoverCounts{Total: cl.total, LastHour: cl.events.lastHour(now)}
	if lf := cl.lastFailover; lf != nil {
		v.status.LastFailover = &quotav1alpha1.Failover{
			Time: metaTime(lf.at), From: lf.from, To: lf.to, Reason: quotav1alpha1.FailureKind(lf.reason),
		}
	}
	return v
}

// policyOwned are the CircuitPolicy status fields the aggregator owns, but lastUpdated.
type policyOwned struct {
	Breakers     []quotav1alpha1.BreakerStatus
	OpenBreakers int32
}

// policyView computes a CircuitPolicy's breakers: per provider model, the worst
// state any sidecar reports, since when the longest-standing sidecar in that state
// has been in it, opens in the last hour across sidecars, and the latest failure.
func (a *Aggregator) policyView(k resourceKey) policyOwned {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	type agg struct {
		state       string
		since       time.Time
		lastFailure *failureSample
	}
	byKey := map[breakerKey]*agg{}
	for _, s := range a.feeds[k] {
		for bk, bs := range s.breakers {
			if bs.latest.Policy != k.Name {
				continue
			}
			g := byKey[bk]
			if g == nil {
				g = &agg{}
				byKey[bk] = g
			}
			switch r, gr := stateRank(bs.latest.State), stateRank(g.state); {
			case r > gr:
				g.state, g.since = bs.latest.State, bs.since
			case r == gr && !bs.since.IsZero() && (g.since.IsZero() || bs.since.Before(g.since)):
				g.since = bs.since
			}
			if lf := bs.lastFailure; lf != nil && (g.lastFailure == nil || lf.at.After(g.lastFailure.at)) {
				g.lastFailure = lf
			}
		}
	}
	var out policyOwned
	pl := a.policies[k]
	for bk, g := range byKey {
		b := quotav1alpha1.BreakerStatus{ProviderQuota: bk.provider, Model: bk.model, State: quotav1alpha1.BreakerState(g.state)}
		if !g.since.IsZero() {
			t := metaTime(g.since)
			b.Since = &t
		}
		if pl != nil {
			if ring := pl.opens[bk]; ring != nil {
				b.OpensLastHour = int32(min(ring.lastHour(now), math.MaxInt32))
			}
		}
		if lf := g.lastFailure; lf != nil {
			b.LastFailure = lf.kind
			if lf.status != 0 {
				b.LastFailure = fmt.Sprintf("%s (HTTP %d)", lf.kind, lf.status)
			}
		}
		if g.state != hubapi.BreakerClosed {
			out.OpenBreakers++
		}
		out.Breakers = append(out.Breakers, b)
	}
	// Open breakers first, so that the bound never hides one.
	slices.SortFunc(out.Breakers, func(x, y quotav1alpha1.BreakerStatus) int {
		return cmp.Or(-cmp.Compare(stateRank(string(x.State)), stateRank(string(y.State))),
			cmp.Compare(x.ProviderQuota, y.ProviderQuota), cmp.Compare(x.Model, y.Model))
	})
	if len(out.Breakers) > maxStatusBreakers {
		out.Breakers = out.Breakers[:maxStatusBreakers]
	}
	return out
}

// metaTime is t at the second precision status times are stored with, so that a
// value read back compares equal to the one computed.
func metaTime(t time.Time) metav1.Time { return metav1.NewTime(t.UTC().Truncate(time.Second)) }

// maxSharingPods bounds status.sharing.pods (the CRD's MaxItems).
const maxSharingPods = 16

// sharingLocked is how quota k's accounts are shared by leases, from the leases the
// sidecars report they enforce; nil when none holds one.
func (a *Aggregator) sharingLocked(k resourceKey, now time.Time, v *quotaView) (*quotav1alpha1.AccountSharing, bool) {
	sh := &quotav1alpha1.AccountSharing{}
	granted := map[accountKey]hubapi.Grants{}
	limits := map[accountKey]hubapi.Limits{}
	margin := int32(0)
	for _, s := range a.feeds[k] {
		holds := false
		for ak, ps := range s.accounts {
			if ak.provider != k.Name || ps.latest.Lease == nil {
				continue
			}
			holds = true
			g := granted[ak]
			if g == nil {
				g = hubapi.Grants{}
				granted[ak] = g
			}
			for kind, x := range ps.latest.Lease {
				g[kind] += x
			}
			limits[ak] = ps.latest.Limits
			margin = max(margin, ps.latest.SafetyMarginPercent)
			sh.Pods = append(sh.Pods, quotav1alpha1.PodShare{
				Pod: s.pod.Name, Pool: ak.pool,
				RequestsPerMinuteGranted: int64(ps.latest.Lease[hubapi.LimitRequestsPerMinute]),
				RequestsPerMinuteUsed:    ps.hist.inWindow(now, Window)[cRequests],
				ConcurrencyGranted:       int64(ps.latest.Lease[hubapi.LimitMaxConcurrency]),
				InFlight:                 ps.latest.InFlight,
			})
		}
		if holds {
			sh.LeaseHolders++
		}
	}
	if sh.LeaseHolders == 0 {
		return nil, false
	}
	for ak, g := range granted {
		l := limits[ak]
		for _, kind := range hubapi.LeaseKinds {
			if lim := limitOfKind(l, kind); lim > 0 {
				sh.GrantedPercent = max(sh.GrantedPercent, percent(int64(g[kind]), lim))
			}
		}
	}
	for _, q := range v.queues {
		sh.Queued += q
	}
	// The allocator keeps a reserve of 5% of the budget for new pods.
	exceeds := sh.Queued > 0 && sh.GrantedPercent >= (100-margin)*90/100
	slices.SortFunc(sh.Pods, func(x, y quotav1alpha1.PodShare) int {
		return cmp.Or(cmp.Compare(y.RequestsPerMinuteGranted, x.RequestsPerMinuteGranted), cmp.Compare(y.ConcurrencyGranted, x.ConcurrencyGranted),
			cmp.Compare(x.Pod, y.Pod), cmp.Compare(x.Pool, y.Pool))
	})
	sh.Pods = sh.Pods[:min(len(sh.Pods), maxSharingPods)]
	return sh, exceeds
}

func limitOfKind(l hubapi.Limits, kind string) int64 {
	switch kind {
	case hubapi.LimitMaxConcurrency:
		return l.MaxConcurrency
	case hubapi.LimitRequestsPerDay:
		return l.RequestsPerDay
	case hubapi.LimitTokensPerDay:
		return l.TokensPerDay
	}
	return l.PerMinute(kind)
}
