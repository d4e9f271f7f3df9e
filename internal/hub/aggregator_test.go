package hub

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
)

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time                  { return c.t }
func (c *fakeClock) advance(d time.Duration)         { c.t = c.t.Add(d) }
func newFakeClock(t time.Time) *fakeClock            { return &fakeClock{t: t} }
func chainKey(ns, name string) resourceKey           { return resourceKey{kindChain, ns, name} }
func policyKey(ns, name string) resourceKey          { return resourceKey{kindPolicy, ns, name} }
func ptr[T any](v T) *T                              { return &v }
func emptyQuota() *quotav1alpha1.ProviderQuotaStatus { return &quotav1alpha1.ProviderQuotaStatus{} }

// sim is one simulated sidecar producing reports with cumulative counters.
type sim struct {
	pod      hubapi.Pod
	boot     hubapi.Boot
	seq      uint64
	interval time.Duration
	config   hubapi.Config
	chain    []hubapi.ChainEntry
	accounts map[accountKey]*hubapi.Account
	breakers map[breakerKey]*hubapi.Breaker
	fails    []hubapi.FailoverCount
	lastFail *hubapi.Failover
}

func newSim(name string, bootAt time.Time) *sim {
	return &sim{
		pod:      hubapi.Pod{Namespace: "ns", Name: name, UID: "uid-" + name},
		boot:     hubapi.Boot{ID: "boot-" + name, StartedAt: bootAt},
		interval: 10 * time.Second,
		config:   hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: "ns", Name: "openai"},
		accounts: map[accountKey]*hubapi.Account{},
		breakers: map[breakerKey]*hubapi.Breaker{},
	}
}

func (s *sim) account(provider, pool, key string) *hubapi.Account {
	k := accountKey{provider, pool, key}
	p := s.accounts[k]
	if p == nil {
		p = &hubapi.Account{Provider: provider, Pool: pool, Key: key, Throttle: 1}
		s.accounts[k] = p
	}
	return p
}

// use adds requests and tokens to the counters of the pool's account k/1.
func (s *sim) use(provider, pool string, requests, in, out int64) {
	p := s.account(provider, pool, "k/1")
	p.Counters.Requests += requests
	p.Counters.InputTokens += in
	p.Counters.OutputTokens += out
}

func (s *sim) report(at time.Time) *hubapi.Report {
	s.seq++
	r := &hubapi.Report{
		SchemaVersion: hubapi.SchemaVersion, Pod: s.pod, Boot: s.boot, Seq: s.seq, SentAt: at,
		ReportInterval: hubapi.Duration(s.interval), Config: s.config, Chain: s.chain,
		Failovers: s.fails, LastFailover: s.lastFail,
	}
	for _, p := range s.accounts {
		r.Accounts = append(r.Accounts, *p)
	}
	for _, b := range s.breakers {
		r.Breakers = append(r.Breakers, *b)
	}
	if err := r.Validate(); err != nil {
		panic(err)
	}
	return r
}

func mustIngest(t *testing.T, a *Aggregator, r *hubapi.Report) {
	t.Helper()
	if err := a.Ingest(r); err != nil {
		t.Fatalf("Ingest: %v", err)
	}
}

func modelNamed(st quotaOwned, name string) *quotav1alpha1.ModelUtilization {
	for i := range st.Models {
		if st.Models[i].Name == name {
			return &st.Models[i]
		}
	}
	return nil
}

var t0 = time.Date(2030, 5, 6, 12, 0, 0, 0, time.UTC)

// openaiQuota is the ProviderQuota the simulated sidecars use.
var openaiQuota = resourceKey{kindQuota, "ns", "openai"}

func TestLastMinuteWindow(t *testing.T) {
	clk := newFakeClock(t0)
	a := NewAggregator(clk.now, 3)
	s := newSim("a", t0)
	s.account("openai", "gpt-4o", "k/1").Limits = hubapi.Limits{RequestsPerMinute: 100, TokensPerMinute: 10000}
	// 10 requests every 10 s for two minutes.
	for range 12 {
		clk.advance(10 * time.Second)
		s.use("openai", "gpt-4o", 10, 300, 100)
		mustIngest(t, a, s.report(clk.t))
	}
	v := a.quotaView(openaiQuota, emptyQuota())
	m := modelNamed(v.status, "gpt-4o")
	if m == nil {
		t.Fatalf("no gpt-4o in %+v", v.status.Models)
	}
	want := quotav1alpha1.ModelUtilization{
		Name:              "gpt-4o",
		RequestsPerMinute: &quotav1alpha1.Usage{Used: 60, Limit: 100, Percent: 60},
		TokensPerMinute:   &quotav1alpha1.Usage{Used: 2400, Limit: 10000, Percent: 24},
	}
	if d := cmp.Diff(want, *m); d != "" {
		t.Errorf("last minute (-want +got):\n%s", d)
	}
	if got := (quotav1alpha1.UtilizationSummary{RequestsPercent: 60, TokensPercent: 24}); *v.status.Utilization != got {
		t.Errorf("utilization %+v, want %+v", *v.status.Utilization, got)
	}
	// The day ledger has everything since boot: 120 requests, 4800 tokens.
	if v.status.RequestsToday != 120 || v.status.TokensToday != 4800 || v.status.Day != "2030-05-06" {
		t.Errorf("day ledger %d requests, %d tokens, day %s; want 120, 4800, 2030-05-06", v.status.RequestsToday, v.status.TokensToday, v.status.Day)
	}
	// Silence: a minute later the window is empty, and the pool drops out of models.
	clk.advance(2 * time.Minute)
	v = a.quotaView(openaiQuota, emptyQuota())
	if len(v.status.Models) != 0 {
		t.Errorf("models after a silent minute: %+v", v.status.Models)
	}
}

func TestCountingAcrossBootsLostReportsAndResets(t *testing.T) {
	clk := newFakeClock(t0)
	a := NewAggregator(clk.now, 3)
	k := openaiQuota
	// wantLedger checks the day's requests and tokens after what happened.
	wantLedger := func(after string, requests, tokens int64) {
		t.Helper()
		v := a.quotaView(k, emptyQuota())
		if r, tk := v.status.RequestsToday, v.status.TokensToday; r != requests || tk != tokens {
			t.Fatalf("after %s: %d requests, %d tokens; want %d, %d", after, r, tk, requests, tokens)
		}
	}

	// A sidecar that booted long before this aggregator: what it counted before its
	// first report may be in a previous leader's ledger already, so only growth
	// from its first report on counts.
	old := newSim("old", t0.Add(-time.Hour))
	old.use("openai", "gpt-4o", 500, 5000, 0)
	mustIngest(t, a, old.report(clk.t))
	wantLedger("the first report of an old sidecar", 0, 0)
	clk.advance(10 * time.Second)
	old.use("openai", "gpt-4o", 5, 50, 0)
	mustIngest(t, a, old.report(clk.t))
	wantLedger("growth", 5, 50)

	// A lost report loses nothing: the next carries the totals.
	clk.advance(10 * time.Second)
	old.use("openai", "gpt-4o", 7, 70, 0)
	old.report(clk.t) // never arrives
	clk.advance(10 * time.Second)
	old.use("openai", "gpt-4o", 1, 10, 0)
	mustIngest(t, a, old.report(clk.t))
	wantLedger("a lost report", 13, 130)

	// A restart (new boot ID) counts from zero: everything the new process counted.
	clk.advance(10 * time.Second)
	old.boot = hubapi.Boot{ID: "boot-2", StartedAt: clk.t.Add(-5 * time.Second)}
	old.seq = 0
	old.accounts = map[accountKey]*hubapi.Account{}
	old.use("openai", "gpt-4o", 3, 30, 0)
	mustIngest(t, a, old.report(clk.t))
	wantLedger("a restart", 16, 160)

	// A pool recreated within a boot (counters went down) counts from zero.
	clk.advance(10 * time.Second)
	p := old.account("openai", "gpt-4o", "k/1")
	p.Counters = hubapi.Counters{Requests: 2, InputTokens: 20}
	mustIngest(t, a, old.report(clk.t))
	wantLedger("a pool reset", 18, 180)

	// A sidecar that booted after this aggregator started counts from zero.
	fresh := newSim("fresh", clk.t.Add(-2*time.Second))
	fresh.use("openai", "gpt-4o", 4, 40, 0)
	mustIngest(t, a, fresh.report(clk.t))
	wantLedger("a fresh sidecar", 22, 220)

	// A repeated sequence number changes nothing.
	stale := fresh.report(clk.t)
	stale.Seq = 1
	if err := a.Ingest(stale); !errors.Is(err, ErrStale) {
		t.Fatalf("stale report: %v, want ErrStale", err)
	}
	wantLedger("a stale report", 22, 220)
}

func TestLedgerSeedsFromStatusAndRollsAtMidnight(t *testing.T) {
	clk := newFakeClock(time.Date(2030, 5, 6, 23, 59, 30, 0, time.UTC))
	a := NewAggregator(clk.now, 3)
	k := openaiQuota
	s := newSim("a", clk.t)
	s.use("openai", "gpt-4o", 2, 200, 0)
	mustIngest(t, a, s.report(clk.t))
	persisted := &quotav1alpha1.ProviderQuotaStatus{Day: "2030-05-06", TokensToday: 1000, RequestsToday: 10}
	v := a.quotaView(k, persisted)
	if v.status.TokensToday != 1200 || v.status.RequestsToday != 12 {
		t.Fatalf("seeded ledger %d tokens %d requests, want 1200, 12", v.status.TokensToday, v.status.RequestsToday)
	}
	// Seeding happens once per term: the same status read again adds nothing.
	if v = a.quotaView(k, persisted); v.status.TokensToday != 1200 {
		t.Fatalf("seeded twice: %d", v.status.TokensToday)
	}
	clk.advance(time.Minute) // 00:00:30 the next day
	if due := a.Due(); !containsKey(due, k) {
		t.Fatalf("the day roll did not make the quota due: %v", due)
	}
	v = a.quotaView(k, persisted)
	if v.status.Day != "2030-05-07" || v.status.TokensToday != 0 || v.status.RequestsToday != 0 {
		t.Fatalf("after midnight: day %s, %d tokens, %d requests; want 2030-05-07, 0, 0", v.status.Day, v.status.TokensToday, v.status.RequestsToday)
	}
	s.use("openai", "gpt-4o", 1, 50, 0)
	mustIngest(t, a, s.report(clk.t))
	if v = a.quotaView(k, persisted); v.status.TokensToday != 50 {
		t.Fatalf("new day: %d tokens, want 50", v.status.TokensToday)
	}
	// A new term on the new day does not add yesterday's persisted totals.
	b := NewAggregator(clk.now, 3)
	if v = b.quotaView(k, persisted); v.status.TokensToday != 0 || v.status.Day != "2030-05-07" {
		t.Fatalf("new term seeded from yesterday: %+v", v.status)
	}
}

func containsKey(keys []resourceKey, k resourceKey) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

func TestLimitsAcrossKeysLearnedAndDaily(t *testing.T) {
	clk := newFakeClock(t0)
	a := NewAggregator(clk.now, 3)
	s := newSim("a", t0)
	for _, key := range []string{"k/1", "k/2"} {
		p := s.account("openai", "gpt-4o", key)
		p.Limits = hubapi.Limits{RequestsPerMinute: 100, TokensPerMinute: 1000, MaxConcurrency: 10, RequestsPerDay: 1000}
		p.InFlight = 5
		p.Counters.Requests = 50
		p.RequestsToday = 50
	}
	// The provider says key 2's RPM is really 60.
	s.account("openai", "gpt-4o", "k/2").Learned = hubapi.Limits{RequestsPerMinute: 60}
	clk.advance(time.Second)
	mustIngest(t, a, s.report(clk.t))
	v := a.quotaView(openaiQuota, emptyQuota())
	m := modelNamed(v.status, "gpt-4o")
	if m == nil {
		t.Fatal("no model")
	}
	if d := cmp.Diff(&quotav1alpha1.Usage{Used: 100, Limit: 160, Percent: 62}, m.RequestsPerMinute); d != "" {
		t.Errorf("RPM over two keys, one learned lower (-want +got):\n%s", d)
	}
	if d := cmp.Diff(&quotav1alpha1.Usage{Used: 10, Limit: 20, Percent: 50}, m.Concurrency); d != "" {
		t.Errorf("concurrency (-want +got):\n%s", d)
	}
	if d := cmp.Diff(&quotav1alpha1.QuotaLimits{RequestsPerMinute: 60}, v.status.LearnedLimits); d != "" {
		t.Errorf("learned limits (-want +got):\n%s", d)
	}
	want := quotav1alpha1.UtilizationSummary{RequestsPercent: 62, ConcurrencyPercent: 50, DailyPercent: 5}
	if d := cmp.Diff(want, *v.status.Utilization); d != "" {
		t.Errorf("summary (-want +got):\n%s", d)
	}
	if v.status.ActiveSidecars != 1 {
		t.Errorf("active sidecars %d", v.status.ActiveSidecars)
	}
}

func TestBreakersWorstStateAndOpens(t *testing.T) {
	clk := newFakeClock(t0)
	a := NewAggregator(clk.now, 3)
	x, y := newSim("x", t0), newSim("y", t0)
	openedX := t0.Add(-10 * time.Minute)
	openedY := t0.Add(-5 * time.Minute)
	x.breakers[breakerKey{"openai", "gpt-4o"}] = &hubapi.Breaker{
		Provider: "openai", Model: "gpt-4o", Policy: "standard", State: hubapi.BreakerOpen, Since: &openedX, Opens: 2,
		Transitions: []hubapi.Transition{
			{At: t0.Add(-2 * time.Hour), From: hubapi.BreakerClosed, To: hubapi.BreakerOpen}, // outside the hour
			{At: t0.Add(-2*time.Hour + time.Minute), From: hubapi.BreakerOpen, To: hubapi.BreakerClosed},
			{At: openedX, From: hubapi.BreakerClosed, To: hubapi.BreakerOpen},
		},
		LastFailure: &hubapi.FailureSample{At: openedX, Kind: "serverError", Status: 502},
	}
	y.breakers[breakerKey{"openai", "gpt-4o"}] = &hubapi.Breaker{
		Provider: "openai", Model: "gpt-4o", Policy: "standard", State: hubapi.BreakerOpen, Since: &openedY, Opens: 1,
		Transitions: []hubapi.Transition{{At: openedY, From: hubapi.BreakerClosed, To: hubapi.BreakerOpen}},
		LastFailure: &hubapi.FailureSample{At: openedY, Kind: "timeout"},
	}
	y.breakers[breakerKey{"openai", "gpt-4o-mini"}] = &hubapi.Breaker{Provider: "openai", Model: "gpt-4o-mini", Policy: "standard", State: hubapi.BreakerClosed}
	mustIngest(t, a, x.report(clk.t))
	mustIngest(t, a, y.report(clk.t))
	got := a.policyView(policyKey("ns", "standard"))
	since := metaTime(openedX)
	want := policyOwned{
		OpenBreakers: 1,
		Breakers: []quotav1alpha1.BreakerStatus{
			{ProviderQuota: "openai", Model: "gpt-4o", State: quotav1alpha1.BreakerOpen, Since: &since, OpensLastHour: 2, LastFailure: "timeout"},
			{ProviderQuota: "openai", Model: "gpt-4o-mini", State: quotav1alpha1.BreakerClosed},
		},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("policy view (-want +got):\n%s", d)
	}

	// x recovers; y is half-open: the worst state is now HalfOpen. The same
	// transitions repeated in later reports are not counted again.
	clk.advance(10 * time.Second)
	closedX := clk.t.Add(-time.Second)
	bx := x.breakers[breakerKey{"openai", "gpt-4o"}]
	bx.State, bx.Since = hubapi.BreakerClosed, &closedX
	bx.Transitions = append(bx.Transitions, hubapi.Transition{At: closedX, From: hubapi.BreakerOpen, To: hubapi.BreakerClosed})
	by := y.breakers[breakerKey{"openai", "gpt-4o"}]
	halfY := clk.t.Add(-2 * time.Second)
	by.State, by.Since = hubapi.BreakerHalfOpen, &halfY
	by.Transitions = append(by.Transitions, hubapi.Transition{At: halfY, From: hubapi.BreakerOpen, To: hubapi.BreakerHalfOpen})
	mustIngest(t, a, x.report(clk.t))
	mustIngest(t, a, y.report(clk.t))
	got = a.policyView(policyKey("ns", "standard"))
	if b := got.Breakers[0]; b.State != quotav1alpha1.BreakerHalfOpen || b.OpensLastHour != 2 || got.OpenBreakers != 1 {
		t.Errorf("after recovery: %+v, open %d; want HalfOpen, 2 opens in the last hour, 1 open", b, got.OpenBreakers)
	}
	// An hour on, the opens have aged out.
	clk.advance(time.Hour)
	mustIngest(t, a, x.report(clk.t))
	mustIngest(t, a, y.report(clk.t))
	if b := a.policyView(policyKey("ns", "standard")).Breakers[0]; b.OpensLastHour != 0 {
		t.Errorf("an hour later: %d opens in the last hour", b.OpensLastHour)
	}
	// Breakers feed the quota's metrics view too.
	qv := a.quotaView(openaiQuota, emptyQuota())
	if d := cmp.Diff([]modelBreaker{{"gpt-4o", hubapi.BreakerHalfOpen}}, onlyModel(qv.breakers, "gpt-4o"), cmp.AllowUnexported(modelBreaker{})); d != "" {
		t.Errorf("quota breakers (-want +got):\n%s", d)
	}
}

func onlyModel(bs []modelBreaker, model string) []modelBreaker {
	var out []modelBreaker
	for _, b := range bs {
		if b.model == model {
			out = append(out, b)
		}
	}
	return out
}

func TestChainActiveEntryAndFailovers(t *testing.T) {
	clk := newFakeClock(t0)
	a := NewAggregator(clk.now, 3)
	s := newSim("a", t0)
	s.config = hubapi.Config{Kind: hubapi.KindFallbackChain, Namespace: "ns", Name: "chat"}
	s.chain = []hubapi.ChainEntry{
		{Provider: "openai", Model: "gpt-4o", Pool: "gpt-4o"},
		{Provider: "anthropic", Model: "claude", Pool: "claude"},
	}
	s.use("openai", "gpt-4o", 10, 0, 0)
	s.use("anthropic", "claude", 3, 0, 0)
	clk.advance(time.Second)
	mustIngest(t, a, s.report(clk.t))
	persisted := &quotav1alpha1.FallbackChainStatus{Failovers: quotav1alpha1.FailoverCounts{Total: 100, LastHour: 7}}
	v := a.chainView(chainKey("ns", "chat"), persisted)
	if v.status.ActiveEntry == nil || *v.status.ActiveEntry != 0 || v.status.ActiveModel != "gpt-4o" {
		t.Fatalf("active entry %v %q, want 0 gpt-4o", v.status.ActiveEntry, v.status.ActiveModel)
	}
	if v.status.Failovers.Total != 100 || v.status.Failovers.LastHour != 0 {
		t.Errorf("failovers %+v, want the persisted total and no last-hour count of this term", v.status.Failovers)
	}

	// The primary fails; traffic moves to claude and failovers are counted.
	clk.advance(10 * time.Second)
	s.use("anthropic", "claude", 40, 0, 0)
	at := clk.t.Add(-time.Second)
	s.fails = []hubapi.FailoverCount{{From: 0, To: 1, Reason: "serverError", Count: 40}}
	s.lastFail = &hubapi.Failover{At: at, From: 0, To: 1, Reason: "serverError"}
	mustIngest(t, a, s.report(clk.t))
	v = a.chainView(chainKey("ns", "chat"), persisted)
	want := chainOwned{
		ActiveEntry: ptr(int32(1)), ActiveModel: "claude",
		Failovers:    quotav1alpha1.FailoverCounts{Total: 140, LastHour: 40},
		LastFailover: &quotav1alpha1.Failover{Time: metaTime(at), From: "openai/gpt-4o", To: "anthropic/claude", Reason: "serverError"},
	}
	if d := cmp.Diff(want, v.status); d != "" {
		t.Errorf("after failovers (-want +got):\n%s", d)
	}
	// Repeated totals add nothing; a restarted sidecar's counts add in full.
	clk.advance(10 * time.Second)
	mustIngest(t, a, s.report(clk.t))
	s.boot = hubapi.Boot{ID: "boot-2", StartedAt: clk.t}
	s.seq = 0
	s.fails = []hubapi.FailoverCount{{From: 0, To: 1, Reason: "timeout", Count: 2}}
	clk.advance(time.Second)
	mustIngest(t, a, s.report(clk.t))
	if v = a.chainView(chainKey("ns", "chat"), persisted); v.status.Failovers.Total != 142 || v.status.Failovers.LastHour != 42 {
		t.Errorf("failovers %+v, want total 142, last hour 42", v.status.Failovers)
	}
}

func TestExpiryFinalAndForget(t *testing.T) {
	clk := newFakeClock(t0)
	a := NewAggregator(clk.now, 3)
	x, y, z := newSim("x", t0), newSim("y", t0), newSim("z", t0)
	for _, s := range []*sim{x, y, z} {
		s.use("openai", "gpt-4o", 1, 1, 1)
		mustIngest(t, a, s.report(clk.t))
	}
	if n := a.ActiveSidecars(); n != 3 {
		t.Fatalf("%d active", n)
	}
	// y says goodbye.
	final := y.report(clk.t)
	final.Final = true
	mustIngest(t, a, final)
	if n := a.ActiveSidecars(); n != 2 {
		t.Fatalf("after a final report: %d active, want 2", n)
	}
	// x keeps reporting, z goes silent: after 3 intervals it expires.
	for range 4 {
		clk.advance(10 * time.Second)
		mustIngest(t, a, x.report(clk.t))
	}
	if n := a.Expire(); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	if v := a.quotaView(openaiQuota, emptyQuota()); v.status.ActiveSidecars != 1 {
		t.Fatalf("active sidecars %d, want 1", v.status.ActiveSidecars)
	}
	// x misses a report: it is offered for a pod check once per interval.
	clk.advance(16 * time.Second)
	if got := a.Silent(10); len(got) != 1 || got[0] != x.pod {
		t.Fatalf("silent %v, want x", got)
	}
	if got := a.Silent(10); len(got) != 0 {
		t.Fatalf("silent twice within an interval: %v", got)
	}
	if !a.Forget(x.pod) || a.ActiveSidecars() != 0 {
		t.Fatalf("Forget did not drop x")
	}
	// The quota is due once more, to write activeSidecars 0, then no longer.
	if due := a.Due(); !containsKey(due, openaiQuota) {
		t.Fatalf("not due after the last sidecar left: %v", due)
	}
	if due := a.Due(); containsKey(due, openaiQuota) {
		t.Fatalf("still due with no sidecars and nothing changed: %v", due)
	}
}

func TestMinuteRing(t *testing.T) {
	var r minuteRing
	r.add(t0, 2)
	r.add(t0.Add(30*time.Minute), 3)
	r.add(t0.Add(-3*time.Hour), 100) // an old event never evicts a current one
	if n := r.lastHour(t0.Add(30 * time.Minute)); n != 5 {
		t.Errorf("lastHour = %d, want 5", n)
	}
	if n := r.lastHour(t0.Add(61 * time.Minute)); n != 3 {
		t.Errorf("lastHour an hour on = %d, want 3", n)
	}
}

func TestExpiredSidecarThatReturnsIsNotCountedTwice(t *testing.T) {
	clk := newFakeClock(t0)
	a := NewAggregator(clk.now, 3)
	s := newSim("a", t0)
	s.use("openai", "gpt-4o", 10, 1000, 0)
	clk.advance(time.Second)
	mustIngest(t, a, s.report(clk.t))
	// A partition longer than the expiry.
	clk.advance(time.Minute)
	if n := a.Expire(); n != 1 {
		t.Fatalf("expired %d", n)
	}
	s.use("openai", "gpt-4o", 1, 100, 0)
	mustIngest(t, a, s.report(clk.t))
	v := a.quotaView(openaiQuota, emptyQuota())
	if v.status.TokensToday != 1100 || v.status.RequestsToday != 11 || v.status.ActiveSidecars != 1 {
		t.Errorf("after the sidecar came back: %d tokens, %d requests, %d active; want 1100, 11, 1", v.status.TokensToday, v.status.RequestsToday, v.status.ActiveSidecars)
	}
}
