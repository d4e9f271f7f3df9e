package hub

import (
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/aiquota/aiquota/internal/hubapi"
)

// Resource kinds the aggregator writes status to.
const (
	kindQuota  = hubapi.KindProviderQuota
	kindChain  = hubapi.KindFallbackChain
	kindPolicy = "CircuitPolicy"
)

// resourceKey names one resource whose status reports feed.
type resourceKey struct {
	Kind, Namespace, Name string
}

// ErrStale is returned for a report whose sequence number was already folded in.
var ErrStale = errors.New("this report's sequence number was already folded in")

// Window is the "last minute" of every per-minute figure.
const Window = time.Minute

// Aggregator folds sidecar reports into per-resource state. It keeps, per sidecar,
// the recent history of its cumulative counters (enough for the last minute), its
// breakers and failovers; and, per resource, the ledgers that must outlive a
// sidecar: tokens and requests of the UTC day per ProviderQuota, failovers per
// FallbackChain, breaker opens per CircuitPolicy.
//
// Counting rule. A counter increase is added to a ledger once: as the difference to
// the sidecar's previous report. A sidecar seen for the first time adds everything
// it counted if it booted after this aggregator started (nobody else can have
// counted it); one that booted earlier only adds from its first report on, because
// a previous leader may already have counted (and persisted) what came before.
type Aggregator struct {
	now         func() time.Time
	expiryTimes int

	mu        sync.Mutex
	startedAt time.Time
	sidecars  map[string]*sidecar // by pod UID
	// gone keeps the counters of sidecars that left without saying goodbye, so one
	// that comes back with the same boot (a network partition longer than its
	// expiry) continues from them instead of being counted again from zero.
	gone     map[string]*sidecar
	feeds    map[resourceKey]map[string]*sidecar
	quotas   map[resourceKey]*quotaLedger
	chains   map[resourceKey]*chainLedger
	policies map[resourceKey]*policyLedger
	dirty    map[resourceKey]bool
}

// NewAggregator returns an empty aggregator. now is its clock; expiryIntervals is
// how many report intervals of silence make a sidecar gone (default 3).
func NewAggregator(now func() time.Time, expiryIntervals int) *Aggregator {
	if now == nil {
		now = time.Now
	}
	if expiryIntervals <= 0 {
		expiryIntervals = 3
	}
	return &Aggregator{
		now: now, expiryTimes: expiryIntervals, startedAt: now(),
		sidecars: map[string]*sidecar{}, gone: map[string]*sidecar{}, feeds: map[resourceKey]map[string]*sidecar{},
		quotas: map[resourceKey]*quotaLedger{}, chains: map[resourceKey]*chainLedger{}, policies: map[resourceKey]*policyLedger{},
		dirty: map[resourceKey]bool{},
	}
}

// Begin marks the start of this aggregator's term (leadership): sidecars that
// booted before it may have been counted by a previous leader.
func (a *Aggregator) Begin() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.startedAt = a.now()
}

// sidecar is one reporting limiter process.
type sidecar struct {
	pod      hubapi.Pod
	bootID   string
	seq      uint64
	lastSeen time.Time
	interval time.Duration
	config   hubapi.Config
	chain    []hubapi.ChainEntry
	accounts map[accountKey]*accountSeries
	queues   []hubapi.Queue
	breakers map[breakerKey]*breakerSeries
	// failovers are the latest cumulative counts; lastFailover the latest one.
	failovers    map[hubapi.FailoverCount]int64
	lastFailover *failover
	resources    []resourceKey
	podChecked   time.Time
}

type accountKey struct{ provider, pool, key string }
type breakerKey struct{ provider, model string }

type accountSeries struct {
	hist   history
	latest hubapi.Account
}

type breakerSeries struct {
	latest hubapi.Breaker
	// since is latest.Since on the manager's clock, mapped once so that it does not
	// wobble with each report's transit time.
	since       time.Time
	lastFailure *failureSample
	lastOpenAt  time.Time // newest transition to Open already counted
	counted     bool      // latest.Opens is a baseline for the next report
}

type failureSample struct {
	at     time.Time
	kind   string
	status int
}

type failover struct {
	at        time.Time
	from, to  string
	reason    string
	sidecarAt time.Time
}

// quotaLedger is a ProviderQuota's UTC-day ledger. seeded is set once the totals
// persisted in its status have been added in.
type quotaLedger struct {
	day      string
	tokens   int64
	requests int64
	pools    map[string]*dayCount // per model pool, in memory only
	seeded   bool
	// unattributed is what the status held when seeded: use of the day before this
	// term, by pools this ledger cannot tell apart.
	unattributed dayCount
}

type dayCount struct{ requests, tokens int64 }

type chainLedger struct {
	total        int64
	events       minuteRing
	lastFailover *failover
	seeded       bool
}

type policyLedger struct {
	opens map[breakerKey]*minuteRing
}

// utcDay is the ledger day of t.
func utcDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }

func (l *quotaLedger) roll(day string) {
	if l.day != day {
		l.day, l.tokens, l.requests = day, 0, 0
		l.pools = map[string]*dayCount{}
		l.unattributed = dayCount{}
	}
}

func (l *quotaLedger) add(day, pool string, requests, tokens int64) {
	l.roll(day)
	l.tokens += tokens
	l.requests += requests
	dc := l.pools[pool]
	if dc == nil {
		dc = &dayCount{}
		l.pools[pool] = dc
	}
	dc.requests += requests
	dc.tokens += tokens
}

// PoolsToday is what each pool of r's quotas (those its accounts, its chain or its
// config name) used today according to the quotas' ledgers: the pools of r's
// accounts and every other pool counted today, each with this term's count plus
// everything the status held at the term's start (so it errs high, never low). ok
// is false while a ledger has not been seeded from the stored status yet: the
// manager cannot know.
func (a *Aggregator) PoolsToday(r *hubapi.Report) (out []hubapi.PoolToday, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	day := utcDay(a.now())
	pools := map[string]map[string]bool{} // quota -> pools
	add := func(quota, pool string) {
		if pools[quota] == nil {
			pools[quota] = map[string]bool{}
		}
		if pool != "" {
			pools[quota][pool] = true
		}
	}
	if r.Config.Kind == hubapi.KindProviderQuota {
		add(r.Config.Name, "")
	}
	for _, e := range r.Chain {
		add(e.Provider, e.Pool)
	}
	for _, acc := range r.Accounts {
		add(acc.Provider, acc.Pool)
	}
	for _, quota := range slices.Sorted(maps.Keys(pools)) {
		l := a.quotaLedgerLocked(resourceKey{kindQuota, r.Config.Namespace, quota})
		if !l.seeded {
			return nil, false
		}
		l.roll(day)
		for pool := range l.pools {
			pools[quota][pool] = true
		}
		for _, pool := range slices.Sorted(maps.Keys(pools[quota])) {
			t := hubapi.PoolToday{Provider: quota, Pool: pool, Day: day,
				Requests: l.unattributed.requests, Tokens: l.unattributed.tokens}
			if dc := l.pools[pool]; dc != nil {
				t.Requests += dc.requests
				t.Tokens += dc.tokens
			}
			out = append(out, t)
		}
	}
	if len(out) > hubapi.MaxAccounts {
		return nil, false // more than an answer carries: the caps stay closed
	}
	return out, true
}

// Ingest folds in a report that has passed authentication and authorisation.
func (a *Aggregator) Ingest(r *hubapi.Report) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	in, err := a.admitLocked(r)
	if err != nil {
		return err
	}
	a.foldAccountsLocked(in)
	a.foldBreakersLocked(in)
	if r.Config.Kind == kindChain {
		a.foldFailoversLocked(resourceKey{kindChain, r.Config.Namespace, r.Config.Name}, in.s, r, in.fromZero || in.known, in.toManager, in.now)
	}
	a.linkLocked(in.s, resourcesOf(r))
	if r.Final {
		a.removeLocked(in.s, false)
	}
	return nil
}

// arrival is one report on its way into the ledgers, with what the folding steps
// share.
type arrival struct {
	r   *hubapi.Report
	s   *sidecar
	now time.Time
	// known: the report continues the boot the sidecar already reported.
	known bool
	// fromZero: counts before this report are not in any ledger yet.
	fromZero bool
	// prevSeen is when the sidecar's previous report of this boot arrived.
	prevSeen time.Time
	bootAt   time.Time
	// toManager maps a time on the sidecar's clock onto ours, by its distance from
	// SentAt, so clock skew between the two does not matter.
	toManager func(time.Time) time.Time
}

// admitLocked finds or starts the report's sidecar, refuses a stale report, and
// takes over the report's own facts (sequence, interval, config, chain, queues).
func (a *Aggregator) admitLocked(r *hubapi.Report) (*arrival, error) {
	now := a.now()
	s := a.sidecars[r.Pod.UID]
	if g := a.gone[r.Pod.UID]; s == nil && g != nil && g.bootID == r.Boot.ID && g.pod == r.Pod {
		delete(a.gone, r.Pod.UID)
		s = g
		a.sidecars[r.Pod.UID] = s
	}
	if s != nil && s.bootID == r.Boot.ID && r.Seq <= s.seq {
		return nil, ErrStale
	}
	in := &arrival{r: r, now: now, toManager: func(t time.Time) time.Time { return now.Add(-r.SentAt.Sub(t)) }}
	in.known = s != nil && s.bootID == r.Boot.ID
	in.fromZero = in.known || s != nil || !in.toManager(r.Boot.StartedAt).Before(a.startedAt)
	if !in.known {
		if s != nil {
			a.unlinkLocked(s)
		}
		s = &sidecar{
			pod: r.Pod, bootID: r.Boot.ID,
			accounts: map[accountKey]*accountSeries{}, breakers: map[breakerKey]*breakerSeries{},
			failovers: map[hubapi.FailoverCount]int64{},
		}
		a.sidecars[r.Pod.UID] = s
	} else {
		in.prevSeen = s.lastSeen
	}
	in.s = s
	in.bootAt = in.toManager(r.Boot.StartedAt)
	s.seq = r.Seq
	s.lastSeen = now
	s.interval = r.ReportInterval.D()
	s.config = r.Config
	s.chain = slices.Clone(r.Chain)
	s.queues = slices.Clone(r.Queues)
	return in, nil
}

// foldAccountsLocked adds each account's growth since the previous report to its
// quota's daily ledger and keeps the counters' history; accounts the report no
// longer lists are dropped.
func (a *Aggregator) foldAccountsLocked(in *arrival) {
	s, now := in.s, in.now
	ns := in.r.Config.Namespace
	day := utcDay(now)
	live := make(map[accountKey]bool, len(in.r.Accounts))
	for _, p := range in.r.Accounts {
		k := accountKey{p.Provider, p.Pool, p.Key}
		live[k] = true
		cur := countersOf(p.Counters)
		ps := s.accounts[k]
		var delta counters
		if ps == nil {
			ps = &accountSeries{}
			s.accounts[k] = ps
			switch {
			case in.known:
				// An account created since the previous report started at zero then.
				ps.hist.add(sample{at: in.prevSeen})
			case now.Sub(in.bootAt) <= Window:
				ps.hist.add(sample{at: in.bootAt})
			}
			if in.fromZero {
				delta = cur
			}
		} else {
			last, _ := ps.hist.latest()
			if cur.wentDown(last.c) {
				ps.hist.add(sample{at: last.at})
				delta = cur
			} else {
				delta = cur.sub(last.c)
			}
		}
		ps.hist.add(sample{at: now, c: cur})
		ps.latest = p
		if delta[cRequests] > 0 || delta.tokens() > 0 {
			a.quotaLedgerLocked(resourceKey{kindQuota, ns, p.Provider}).add(day, p.Pool, delta[cRequests], delta.tokens())
		}
	}
	for k := range s.accounts {
		if !live[k] {
			delete(s.accounts, k)
		}
	}
}

// foldBreakersLocked keeps each breaker's state on the manager's clock and counts
// its opens in its policy's ledger; breakers the report no longer lists are dropped.
func (a *Aggregator) foldBreakersLocked(in *arrival) {
	s := in.s
	live := make(map[breakerKey]bool, len(in.r.Breakers))
	for _, b := range in.r.Breakers {
		k := breakerKey{b.Provider, b.Model}
		live[k] = true
		bs := s.breakers[k]
		if bs == nil {
			bs = &breakerSeries{}
			s.breakers[k] = bs
		}
		if b.Since == nil {
			bs.since = time.Time{}
		} else if bs.latest.Since == nil || !bs.latest.Since.Equal(*b.Since) {
			bs.since = in.toManager(*b.Since)
		}
		if lf := b.LastFailure; lf != nil && (bs.latest.LastFailure == nil || !bs.latest.LastFailure.At.Equal(lf.At)) {
			bs.lastFailure = &failureSample{at: in.toManager(lf.At), kind: lf.Kind, status: lf.Status}
		}
		if b.Policy != "" {
			a.countOpensLocked(resourceKey{kindPolicy, in.r.Config.Namespace, b.Policy}, k, bs, b, in.toManager, in.now)
		}
		bs.latest = b
	}
	for k := range s.breakers {
		if !live[k] {
			delete(s.breakers, k)
		}
	}
}

// countOpensLocked records a breaker's new transitions to Open in its policy's
// hourly ring, at the times the transitions happened.
func (a *Aggregator) countOpensLocked(pk resourceKey, k breakerKey, bs *breakerSeries, b hubapi.Breaker, toManager func(time.Time) time.Time, now time.Time) {
	pl := a.policies[pk]
	if pl == nil {
		pl = &policyLedger{opens: map[breakerKey]*minuteRing{}}
		a.policies[pk] = pl
	}
	ring := pl.opens[k]
	if ring == nil {
		ring = &minuteRing{}
		pl.opens[k] = ring
	}
	var seen int64
	newest := bs.lastOpenAt
	for _, t := range b.Transitions {
		if t.To != hubapi.BreakerOpen || !t.At.After(bs.lastOpenAt) {
			continue
		}
		ring.add(toManager(t.At), 1)
		seen++
		if t.At.After(newest) {
			newest = t.At
		}
	}
	// More opens than the bounded transition list shows: count the rest now.
	if bs.counted && b.Opens >= bs.latest.Opens {
		if extra := b.Opens - bs.latest.Opens - seen; extra > 0 {
			ring.add(now, extra)
		}
	}
	bs.lastOpenAt = newest
	bs.counted = true
}

func (a *Aggregator) foldFailoversLocked(ck resourceKey, s *sidecar, r *hubapi.Report, fromZero bool, toManager func(time.Time) time.Time, now time.Time) {
	cl := a.chainLedgerLocked(ck)
	entry := func(i int) string {
		if i < 0 || i >= len(r.Chain) {
			return ""
		}
		return r.Chain[i].Provider + "/" + r.Chain[i].Model
	}
	live := make(map[hubapi.FailoverCount]bool, len(r.Failovers))
	for _, fc := range r.Failovers {
		k := hubapi.FailoverCount{From: fc.From, To: fc.To, Reason: fc.Reason}
		live[k] = true
		prev, seen := s.failovers[k]
		var delta int64
		switch {
		case seen && fc.Count >= prev:
			delta = fc.Count - prev
		case seen || fromZero:
			delta = fc.Count
		}
		s.failovers[k] = fc.Count
		if delta > 0 {
			cl.total += delta
			cl.events.add(now, delta)
		}
	}
	for k := range s.failovers {
		if !live[k] {
			delete(s.failovers, k)
		}
	}
	if lf := r.LastFailover; lf != nil && (s.lastFailover == nil || !s.lastFailover.sidecarAt.Equal(lf.At)) {
		f := &failover{at: toManager(lf.At), from: entry(lf.From), to: entry(lf.To), reason: lf.Reason, sidecarAt: lf.At}
		s.lastFailover = f
		if cl.lastFailover == nil || f.at.After(cl.lastFailover.at) {
			cl.lastFailover = f
		}
	}
}

func (a *Aggregator) quotaLedgerLocked(k resourceKey) *quotaLedger {
	l := a.quotas[k]
	if l == nil {
		l = &quotaLedger{pools: map[string]*dayCount{}}
		a.quotas[k] = l
	}
	return l
}

func (a *Aggregator) chainLedgerLocked(k resourceKey) *chainLedger {
	l := a.chains[k]
	if l == nil {
		l = &chainLedger{}
		a.chains[k] = l
	}
	return l
}

// resourcesOf lists the resources a report's numbers belong to: its config source,
// every ProviderQuota it names (providers are ProviderQuota names in the source's
// namespace) and every CircuitPolicy its breakers run under.
func resourcesOf(r *hubapi.Report) []resourceKey {
	ns := r.Config.Namespace
	out := []resourceKey{{r.Config.Kind, ns, r.Config.Name}}
	add := func(k resourceKey) {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	for _, e := range r.Chain {
		add(resourceKey{kindQuota, ns, e.Provider})
	}
	for _, p := range r.Accounts {
		add(resourceKey{kindQuota, ns, p.Provider})
	}
	for _, b := range r.Breakers {
		add(resourceKey{kindQuota, ns, b.Provider})
		if b.Policy != "" {
			add(resourceKey{kindPolicy, ns, b.Policy})
		}
	}
	return out
}

// linkLocked records which resources s feeds and marks them (and any it no longer
// feeds) dirty.
func (a *Aggregator) linkLocked(s *sidecar, resources []resourceKey) {
	for _, k := range s.resources {
		a.dirty[k] = true
		if !slices.Contains(resources, k) {
			delete(a.feeds[k], s.pod.UID)
		}
	}
	for _, k := range resources {
		a.dirty[k] = true
		m := a.feeds[k]
		if m == nil {
			m = map[string]*sidecar{}
			a.feeds[k] = m
		}
		m[s.pod.UID] = s
	}
	s.resources = resources
}

func (a *Aggregator) unlinkLocked(s *sidecar) {
	for _, k := range s.resources {
		a.dirty[k] = true
		if m := a.feeds[k]; m != nil && m[s.pod.UID] == s {
			delete(m, s.pod.UID)
		}
	}
	s.resources = nil
}

// goneTTL and maxGone bound the memory of sidecars that left.
const (
	goneTTL = time.Hour
	maxGone = 20000
)

// removeLocked forgets s as active; keep remembers its counters for a while.
func (a *Aggregator) removeLocked(s *sidecar, keep bool) {
	a.unlinkLocked(s)
	if a.sidecars[s.pod.UID] == s {
		delete(a.sidecars, s.pod.UID)
	}
	if keep {
		if len(a.gone) >= maxGone {
			for uid := range a.gone { // an arbitrary one: the map is bounded, not ordered
				delete(a.gone, uid)
				break
			}
		}
		a.gone[s.pod.UID] = s
	}
}

// expiryOf is how long s may stay silent.
func (a *Aggregator) expiryOf(s *sidecar) time.Duration {
	return max(time.Second, time.Duration(a.expiryTimes)*s.interval)
}

// Expire forgets sidecars silent for longer than their expiry and returns how many.
func (a *Aggregator) Expire() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	n := 0
	for _, s := range a.sidecars {
		if now.Sub(s.lastSeen) > a.expiryOf(s) {
			a.removeLocked(s, true)
			n++
		}
	}
	for uid, s := range a.gone {
		if now.Sub(s.lastSeen) > goneTTL {
			delete(a.gone, uid)
		}
	}
	return n
}

// Silent returns up to limit sidecars that missed a report and whose pod has not
// been looked up within an interval, and marks them looked up: the caller checks
// whether their pods still exist and calls Forget for those that do not.
func (a *Aggregator) Silent(limit int) []hubapi.Pod {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	var out []hubapi.Pod
	for _, s := range a.sidecars {
		if len(out) >= limit {
			break
		}
		if now.Sub(s.lastSeen) > s.interval*3/2 && now.Sub(s.podChecked) > s.interval {
			s.podChecked = now
			out = append(out, s.pod)
		}
	}
	return out
}

// Forget drops the sidecar of the pod with uid, if it still reports as that pod.
func (a *Aggregator) Forget(pod hubapi.Pod) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sidecars[pod.UID]
	if s == nil || s.pod != pod {
		return false
	}
	a.removeLocked(s, false)
	return true
}

// ActiveSidecars is the number of sidecars currently reporting.
func (a *Aggregator) ActiveSidecars() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.sidecars)
}

// Due returns the resources to re-evaluate: those fed by live sidecars (their
// windows move on with time) and those marked dirty since the last call (a sidecar
// left, a day rolled). It also rolls day ledgers, which dirties their quotas.
func (a *Aggregator) Due() []resourceKey {
	a.mu.Lock()
	defer a.mu.Unlock()
	day := utcDay(a.now())
	for k, l := range a.quotas {
		if l.day != "" && l.day != day {
			l.roll(day)
			a.dirty[k] = true
		}
	}
	out := make([]resourceKey, 0, len(a.feeds)+len(a.dirty))
	for k, m := range a.feeds {
		if len(m) > 0 {
			out = append(out, k)
		} else if !a.dirty[k] {
			delete(a.feeds, k)
		}
	}
	for k := range a.dirty {
		if len(a.feeds[k]) == 0 {
			out = append(out, k)
		}
		delete(a.dirty, k)
	}
	return out
}

// MarkDirty asks for k to be evaluated again on the next Due.
func (a *Aggregator) MarkDirty(k resourceKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dirty[k] = true
}

// ForgetResource drops the ledgers of a resource that no longer exists.
func (a *Aggregator) ForgetResource(k resourceKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.quotas, k)
	delete(a.chains, k)
	delete(a.policies, k)
}
