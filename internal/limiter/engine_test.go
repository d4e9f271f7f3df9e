package limiter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

func TestReloadKeepsStateAndAppliesChangedLimits(t *testing.T) {
	cfg := testConfig([]string{"k1", "k2"}, limitsRT(600, 0), limiterconfig.Queue{})
	cfg.Providers[0].Models = []limiterconfig.ModelPool{{Names: []string{"fam", "fam-mini"}, Limits: &limiterconfig.Limits{RequestsPerMinute: 60}}}
	e, _ := testEngine(t, cfg)
	fam := mustPool(t, e, "fam-mini")
	other := mustPool(t, e, "gpt-x")
	if fam.Name != "fam" || other.Name != limiterconfig.UnlistedPool {
		t.Fatalf("pools %q %q, want fam and %s", fam.Name, other.Name, limiterconfig.UnlistedPool)
	}
	for range 50 {
		if _, ok := fam.TryAdmit(Demand{}); !ok {
			t.Fatal("refused")
		}
	}
	for range 100 {
		other.TryAdmit(Demand{})
	}
	famK1, _ := e.Account("openai", "k1", "fam")

	// Reload: the family's RPM doubles, the other pool is unchanged, key k2 goes away.
	next := testConfig([]string{"k1"}, limitsRT(600, 0), limiterconfig.Queue{})
	next.Providers[0].Models = []limiterconfig.ModelPool{{Names: []string{"fam", "fam-mini"}, Limits: &limiterconfig.Limits{RequestsPerMinute: 120}}}
	e.Apply(next)

	if got := mustPool(t, e, "fam"); got != fam {
		t.Error("reload replaced an unchanged pool")
	}
	if p, _ := e.Account("openai", "k1", "fam"); p != famK1 {
		t.Error("reload replaced a kept account")
	}
	if _, ok := e.Account("openai", "k2", "fam"); ok {
		t.Error("account of a removed key still present")
	}
	type lim struct {
		Key         string
		Rate, Level float64
	}
	var got []lim
	for _, p := range e.Snapshot().Accounts {
		got = append(got, lim{p.Pool + "/" + p.Key, p.Limits[0].RatePerMinute, p.Limits[0].Level})
	}
	// k1 took 25 of 60 on fam (load spread over two keys), 50 of 600 on gpt-x's pool.
	want := []lim{{limiterconfig.UnlistedPool + "/k1", 600, 550}, {"fam/k1", 120, 35}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("accounts after reload (-want +got):\n%s", diff)
	}
}

// waiterBehindFullSlot is an engine whose one account on gpt-x has its one
// concurrency slot taken and one request waiting for it, whose outcome arrives on out.
func waiterBehindFullSlot(t *testing.T) (e *Engine, out <-chan admitted) {
	cfg := testConfig([]string{"k"}, limiterconfig.Limits{MaxConcurrency: 1}, limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Hour), MaxDepth: 5})
	e, _ = testEngine(t, cfg)
	pool := mustPool(t, e, "gpt-x")
	pool.TryAdmit(Demand{})
	ch := make(chan admitted, 1)
	admitAsync(t, pool, "w", Demand{}, 5, time.Hour, ch)
	return e, ch
}

func TestReloadRejectsWaitersOfRemovedPools(t *testing.T) {
	e, out := waiterBehindFullSlot(t)

	next := testConfig([]string{"k"}, limiterconfig.Limits{MaxConcurrency: 1}, limiterconfig.Queue{})
	next.Providers[0].Name = "renamed"
	e.Apply(next)
	a := <-out
	var rej *RejectError
	if !errors.As(a.err, &rej) || rej.Reason != ReasonPoolRemoved {
		t.Fatalf("waiter err = %v, want pool_removed", a.err)
	}
	if _, err := e.Pool("openai", "gpt-x"); !errors.Is(err, ErrUnknownProvider) {
		t.Errorf("old provider lookup err = %v, want ErrUnknownProvider", err)
	}
}

func TestReloadRaisingALimitWakesWaiters(t *testing.T) {
	e, out := waiterBehindFullSlot(t)
	e.Apply(testConfig([]string{"k"}, limiterconfig.Limits{MaxConcurrency: 2}, limiterconfig.Queue{}))
	if a := <-out; a.err != nil {
		t.Fatalf("waiter err = %v, want admitted after the raise", a.err)
	}
}

func TestUnlistedModelsAreBounded(t *testing.T) {
	clock := newFakeClock(day0)
	e := New(Options{Clock: clock, MaxModelsPerProvider: 2})
	e.Apply(testConfig([]string{"k"}, limitsRT(10, 0), limiterconfig.Queue{}))
	for _, m := range []string{"a", "b"} {
		if _, err := e.Pool("openai", m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Pool("openai", "a"); err != nil {
		t.Errorf("existing unlisted model refused: %v", err)
	}
	if _, err := e.Pool("openai", "c"); !errors.Is(err, ErrTooManyModels) {
		t.Errorf("third unlisted model: err = %v, want ErrTooManyModels", err)
	}
}

// TestUnlistedModelsShareOnePool: made-up model names draw on one pool, so they
// cannot multiply the account's daily cap; with reject they get no pool at all.
func TestUnlistedModelsShareOnePool(t *testing.T) {
	cfg := testConfig([]string{"k"}, limiterconfig.Limits{RequestsPerDay: 3}, limiterconfig.Queue{})
	cfg.Providers[0].Models = []limiterconfig.ModelPool{{Names: []string{"listed"}}}
	e, _ := testEngine(t, cfg)
	admitted := 0
	for i := range 10 {
		pool := mustPool(t, e, fmt.Sprintf("made-up-%d", i))
		if pool.Name != limiterconfig.UnlistedPool {
			t.Errorf("pool of an unlisted model is %q, want %q", pool.Name, limiterconfig.UnlistedPool)
		}
		if res, ok := pool.TryAdmit(Demand{}); ok {
			admitted++
			res.End(Attempt{})
		}
	}
	if admitted != 3 {
		t.Errorf("admitted %d requests for 10 unlisted names, want the daily cap of 3", admitted)
	}
	if _, ok := mustPool(t, e, "listed").TryAdmit(Demand{}); !ok {
		t.Error("the listed model's own pool was drawn on by unlisted ones")
	}

	cfg.Providers[0].UnlistedModels = limiterconfig.UnlistedReject
	e.Apply(cfg)
	if _, err := e.Pool("openai", "made-up-0"); !errors.Is(err, ErrUnlistedModel) {
		t.Errorf("unlisted model with reject: err = %v, want ErrUnlistedModel", err)
	}
	if _, err := e.Pool("openai", "listed"); err != nil {
		t.Errorf("listed model with reject: %v", err)
	}
}

func TestBreakerPolicyFollowsChainEntry(t *testing.T) {
	cfg := testConfig([]string{"k"}, limitsRT(10, 0), limiterconfig.Queue{})
	strict := testPolicy()
	strict.Name = "strict"
	strict.FailureThreshold = 1
	cfg.Policies = []limiterconfig.Policy{strict}
	cfg.Chain = &limiterconfig.Chain{Entries: []limiterconfig.ChainEntry{{Provider: "openai", Model: "gpt-x", Policy: "strict"}}}
	e, _ := testEngine(t, cfg)
	strictB, _ := e.Breaker("openai", "gpt-x")
	lenient, _ := e.Breaker("openai", "gpt-y")
	record(t, strictB, limiterconfig.FailureServerError)
	record(t, lenient, limiterconfig.FailureServerError)
	if strictB.Snapshot().State != BreakerOpen || lenient.Snapshot().State != BreakerClosed {
		t.Errorf("states %v %v, want open (threshold 1) and closed (default 5)", strictB.Snapshot().State, lenient.Snapshot().State)
	}
}

func TestSnapshotReportsEverything(t *testing.T) {
	cfg := testConfig([]string{"k"}, limiterconfig.Limits{RequestsPerMinute: 60, MaxConcurrency: 4, RequestsPerDay: 100}, limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Minute), MaxDepth: 5})
	e, clock := testEngine(t, cfg)
	pool := mustPool(t, e, "gpt-x")
	r, err := pool.Admit(context.Background(), Demand{InputTokens: 10, OutputTokens: 5}, 5, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r.Account().Observe(Observation{Windows: [numKinds]Window{KindRequests: {Limit: 60, Remaining: 40, HasLimit: true, HasRemaining: true}}})
	r.settle(Attempt{Status: 429, Retried: true})
	b, _ := e.Breaker("openai", "gpt-x")
	record(t, b, "")
	clock.Advance(time.Second)

	e.NoteFailover(0, 1, limiterconfig.FailureUnavailable)
	e.NoteFailover(0, 1, limiterconfig.FailureUnavailable)
	s := e.Snapshot()
	b1, _ := json.Marshal(s)
	var generic map[string]any
	if err := json.Unmarshal(b1, &generic); err != nil {
		t.Fatal(err)
	}
	want := Snapshot{
		At: day0.Add(time.Second),
		Accounts: []AccountSnapshot{{
			Provider: "openai", Key: "k", Pool: limiterconfig.UnlistedPool,
			Limits:         []LimitSnapshot{{Kind: "requestsPerMinute", Configured: 60, Learned: 60, RatePerMinute: 60, Burst: 60, Level: 41, Utilisation: 19.0 / 60}},
			InFlight:       1,
			MaxConcurrency: 4, RequestsToday: 1, RequestsPerDay: 100,
			Throttle: 1,
			Counters: AccountCounters{Attempts: 1, Retries: 1, Upstream429: 1, ReservedTokens: 15, RefundedTokens: 15},
			LastHeaders: &HeaderSample{At: day0, Windows: map[string]WindowSample{
				"requestsPerMinute": {Limit: ptr(int64(60)), Remaining: ptr(int64(40))},
			}},
		}},
		Queues:       []QueueSnapshot{{Provider: "openai", Pool: limiterconfig.UnlistedPool, Admitted: 1}},
		Breakers:     []BreakerSnapshot{{Provider: "openai", Model: "gpt-x", State: BreakerClosed}},
		Failovers:    []FailoverSnapshot{{From: 0, To: 1, Reason: limiterconfig.FailureUnavailable, Count: 2, At: day0.Add(time.Second)}},
		LastFailover: &FailoverSnapshot{From: 0, To: 1, Reason: limiterconfig.FailureUnavailable, Count: 2, At: day0.Add(time.Second)},
	}
	if diff := cmp.Diff(want, s, approx); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
}

func ptr[T any](v T) *T { return &v }

// leasable is an engine with one key under limits and a queue of ten waiting up to
// a minute, its pool for gpt-x, and the account that pool draws on, whose lease a
// test sets.
func leasable(t *testing.T, limits limiterconfig.Limits) (*fakeClock, *Pool, *Account) {
	t.Helper()
	e, clock := testEngine(t, testConfig([]string{"k"}, limits, limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Minute), MaxDepth: 10}))
	pool := mustPool(t, e, "gpt-x")
	account, ok := e.Account("openai", "k", limiterconfig.UnlistedPool)
	if !ok {
		t.Fatal("account not found")
	}
	return clock, pool, account
}

// TestSetLimitReschedulesWaiters is the lease seam: a lease caps the configured
// limit, and a raised lease wakes waiters at the new refill time without handing
// out a burst.
func TestSetLimitReschedulesWaiters(t *testing.T) {
	clock, pool, account := leasable(t, limitsRT(600, 0))
	account.SetLimit(KindRequests, 1, 60) // a lease of 60 per minute
	for range 60 {
		if _, ok := pool.TryAdmit(Demand{}); !ok {
			t.Fatal("refused within the lease")
		}
	}
	if _, ok := pool.TryAdmit(Demand{}); ok {
		t.Fatal("admitted beyond the lease")
	}
	out := make(chan admitted, 2)
	admitAsync(t, pool, "a", Demand{}, 5, time.Minute, out)
	admitAsync(t, pool, "b", Demand{}, 5, time.Minute, out)
	// The lease grows to 10/s: the two waiters needed 1s and 2s; now 100ms and 200ms.
	account.SetLimit(KindRequests, 10, 60)
	clock.Advance(99 * time.Millisecond)
	select {
	case a := <-out:
		t.Fatalf("%s admitted before a request refilled: SetLimit added a burst", a.name)
	default:
	}
	clock.Advance(2 * time.Millisecond)
	if a := <-out; a.name != "a" || a.err != nil {
		t.Fatalf("first waiter: %+v", a)
	}
	clock.Advance(100 * time.Millisecond)
	if a := <-out; a.name != "b" || a.err != nil {
		t.Fatalf("second waiter: %+v", a)
	}
}

// TestALeaseBelowTheRequestWaitsForTheNextLease: a new sidecar's first lease may be
// smaller than one request; the request waits for a larger lease instead of being
// refused as one that can never fit, which only the account's own limit decides.
func TestALeaseBelowTheRequestWaitsForTheNextLease(t *testing.T) {
	clock, pool, account := leasable(t, limitsRT(0, 6000))
	account.SetLimit(KindTokens, 1, 60) // a probation lease of 60 tokens a minute
	_, err := pool.Admit(context.Background(), Demand{InputTokens: 6001}, 5, time.Minute)
	if rej := (*RejectError)(nil); !errors.As(err, &rej) || rej.Reason != ReasonTooLarge {
		t.Fatalf("above the account's own limit: err = %v, want request_too_large", err)
	}
	out := make(chan admitted, 1)
	admitAsync(t, pool, "big", Demand{InputTokens: 100}, 5, time.Minute, out)
	account.SetLimit(KindTokens, 100, 6000) // the next lease: 100 tokens a second
	clock.Advance(time.Second)
	if a := <-out; a.err != nil {
		t.Fatalf("after the larger lease: %v", a.err)
	}
}

// TestRestoredUseCountsForAccountsCreatedLater: what the manager says a pool used
// today also binds an account created after the answer (the pool of unlisted
// models, at its first request), and counts against the configured cap only: the
// sidecar's own count, which it reports, stays its own.
func TestRestoredUseCountsForAccountsCreatedLater(t *testing.T) {
	e, clock := testEngine(t, testConfig([]string{"k"}, limiterconfig.Limits{RequestsPerDay: 5}, limiterconfig.Queue{}))
	today := clock.Wall(clock.Now()).UTC().Format(time.DateOnly)
	e.RestoreToday("openai", limiterconfig.UnlistedPool, "1999-01-01", 5, 0) // another day: ignored
	e.RestoreToday("openai", limiterconfig.UnlistedPool, today, 3, 0)
	pool := mustPool(t, e, "made-up-model")
	admitted := 0
	for range 5 {
		if r, ok := pool.TryAdmit(Demand{}); ok {
			r.End(Attempt{Status: 200})
			admitted++
		}
	}
	if admitted != 2 {
		t.Errorf("%d admitted after 3 of 5 were used today elsewhere, want 2", admitted)
	}
	for _, a := range e.Snapshot().Accounts {
		if a.RequestsToday != 2 {
			t.Errorf("the account reports %d requests today, want its own 2", a.RequestsToday)
		}
	}
}
