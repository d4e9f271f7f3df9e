package limiter

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/testkit"
)

func testConfig(keys []string, l limiterconfig.Limits, q limiterconfig.Queue) *limiterconfig.Config {
	p := limiterconfig.Provider{Name: "openai", Type: "openai", Endpoint: "http://127.0.0.1:1", Limits: l}
	for _, k := range keys {
		p.Keys = append(p.Keys, limiterconfig.Key{ID: k, File: "/dev/null"})
	}
	return &limiterconfig.Config{SchemaVersion: limiterconfig.SchemaVersion, Providers: []limiterconfig.Provider{p}, Queue: &q}
}

func testEngine(t *testing.T, cfg *limiterconfig.Config) (*Engine, *fakeClock) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock(day0)
	e := New(Options{Clock: clock, AgingStep: time.Second})
	e.Apply(cfg)
	return e, clock
}

// mustPool returns the pool of model at testConfig's provider.
func mustPool(t *testing.T, e *Engine, model string) *Pool {
	t.Helper()
	pool, err := e.Pool("openai", model)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

type admitted struct {
	name string
	res  Reservation
	err  error
}

// admitAsync starts an Admit and waits until it is queued.
func admitAsync(t *testing.T, pool *Pool, name string, d Demand, prio int, maxWait time.Duration, out chan<- admitted) {
	t.Helper()
	before := pool.QueueDepth()
	go func() {
		r, err := pool.Admit(context.Background(), d, prio, maxWait)
		out <- admitted{name, r, err}
	}()
	testkit.Eventually(t, 20*time.Second, name+" to queue", testkit.True(func() bool { return pool.QueueDepth() == before+1 }))
}

func TestWaitersAreWokenByRefillTimerNotPolling(t *testing.T) {
	e, clock := testEngine(t, testConfig([]string{"k"}, limitsRT(60, 0), limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Minute), MaxDepth: 10}))
	pool := mustPool(t, e, "gpt-x")
	for range 60 {
		if _, ok := pool.TryAdmit(Demand{}); !ok {
			t.Fatal("burst refused")
		}
	}
	out := make(chan admitted, 1)
	admitAsync(t, pool, "w", Demand{}, 5, time.Minute, out)
	// One timer for the waiter's deadline, one for the refill of one request (1s).
	if got := clock.pending(); got != 2 {
		t.Fatalf("armed timers = %d, want 2 (deadline + refill wake-up)", got)
	}
	clock.Advance(999 * time.Millisecond)
	select {
	case a := <-out:
		t.Fatalf("admitted before the bucket refilled: %+v", a)
	default:
	}
	clock.Advance(2 * time.Millisecond)
	a := <-out
	if a.err != nil {
		t.Fatalf("waiter failed: %v", a.err)
	}
}

func TestQueueServesByPriorityWithAging(t *testing.T) {
	e, clock := testEngine(t, testConfig([]string{"k"}, limiterconfig.Limits{MaxConcurrency: 1}, limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Hour), MaxDepth: 10}))
	pool := mustPool(t, e, "gpt-x")
	holder, ok := pool.TryAdmit(Demand{})
	if !ok {
		t.Fatal("first request refused")
	}
	out := make(chan admitted, 4)
	admitAsync(t, pool, "batch-old", Demand{}, 9, time.Hour, out)
	clock.Advance(5 * time.Second)
	admitAsync(t, pool, "normal", Demand{}, 5, time.Hour, out)
	admitAsync(t, pool, "interactive", Demand{}, 1, time.Hour, out)
	clock.Advance(5 * time.Second)
	// batch-old has waited 10s (9-10 = -1), interactive 5s (1-5 = -4), normal 5s (5-5 = 0):
	// with a 1s aging step the order is interactive, batch-old, normal.
	admitAsync(t, pool, "batch-new", Demand{}, 9, time.Hour, out)

	var order []string
	r := holder
	for range 4 {
		r.release()
		a := <-out
		if a.err != nil {
			t.Fatalf("%s failed: %v", a.name, a.err)
		}
		order = append(order, a.name)
		r = a.res
	}
	if diff := cmp.Diff([]string{"interactive", "batch-old", "normal", "batch-new"}, order); diff != "" {
		t.Errorf("service order (-want +got):\n%s", diff)
	}
}

func TestQueueTimeoutNamesTheLimitAndWait(t *testing.T) {
	e, clock := testEngine(t, testConfig([]string{"k"}, limitsRT(0, 6000), limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Second), MaxDepth: 10}))
	pool := mustPool(t, e, "gpt-x")
	if _, ok := pool.TryAdmit(Demand{InputTokens: 6000}); !ok {
		t.Fatal("burst refused")
	}
	out := make(chan admitted, 1)
	admitAsync(t, pool, "w", Demand{InputTokens: 1000}, 5, 2*time.Second, out)
	clock.Advance(2 * time.Second)
	a := <-out
	var rej *RejectError
	if !errors.As(a.err, &rej) {
		t.Fatalf("error = %v, want a *RejectError", a.err)
	}
	// 1000 tokens at 100/s, 200 refilled: 8s to go.
	want := RejectError{Reason: ReasonQueueTimeout, Provider: "openai", Pool: limiterconfig.UnlistedPool, Limit: "tokensPerMinute", RetryAfter: 8 * time.Second, Waited: 2 * time.Second}
	if diff := cmp.Diff(want, *rej); diff != "" {
		t.Errorf("rejection (-want +got):\n%s", diff)
	}
	if msg := rej.Error(); msg != "aiquota limiter: tokensPerMinute limit of openai/(unlisted) left no room within the 2s queue wait; retry in about 8s" {
		t.Errorf("message = %q", msg)
	}
}

func TestQueueFullAndTooLargeAreRefusedAtOnce(t *testing.T) {
	e, _ := testEngine(t, testConfig([]string{"k"}, limiterconfig.Limits{TokensPerMinute: 1000, MaxConcurrency: 1}, limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Hour), MaxDepth: 1}))
	pool := mustPool(t, e, "gpt-x")
	_, err := pool.Admit(context.Background(), Demand{InputTokens: 1001}, 5, time.Hour)
	var rej *RejectError
	if !errors.As(err, &rej) || rej.Reason != ReasonTooLarge || rej.Limit != "tokensPerMinute" {
		t.Fatalf("too large: err = %v, want request_too_large on tokensPerMinute", err)
	}
	if _, ok := pool.TryAdmit(Demand{}); !ok {
		t.Fatal("refused")
	}
	out := make(chan admitted, 1)
	admitAsync(t, pool, "w", Demand{}, 5, time.Hour, out)
	_, err = pool.Admit(context.Background(), Demand{}, 1, time.Hour)
	if !errors.As(err, &rej) || rej.Reason != ReasonQueueFull || rej.Limit != LimitConcurrency {
		t.Fatalf("queue full: err = %v, want queue_full on maxConcurrency", err)
	}
}

func TestCanceledWaiterLeavesTheQueue(t *testing.T) {
	e, _ := testEngine(t, testConfig([]string{"k"}, limiterconfig.Limits{MaxConcurrency: 1}, limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Hour), MaxDepth: 10}))
	pool := mustPool(t, e, "gpt-x")
	holder, _ := pool.TryAdmit(Demand{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := pool.Admit(ctx, Demand{}, 5, time.Hour)
		done <- err
	}()
	testkit.Eventually(t, 20*time.Second, "queued", testkit.True(func() bool { return pool.QueueDepth() == 1 }))
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := pool.QueueDepth(); d != 0 {
		t.Errorf("queue depth = %d after cancel, want 0", d)
	}
	holder.release()
	if _, ok := pool.TryAdmit(Demand{}); !ok {
		t.Error("slot not free after the canceled waiter left")
	}
}

func TestKeysSpreadLoadByHeadroom(t *testing.T) {
	e, _ := testEngine(t, testConfig([]string{"a", "b", "c"}, limitsRT(10, 0), limiterconfig.Queue{}))
	pool := mustPool(t, e, "gpt-x")
	counts := map[string]int{}
	for range 30 {
		r, ok := pool.TryAdmit(Demand{})
		if !ok {
			t.Fatal("refused while some key had room")
		}
		counts[r.Account().Key]++
	}
	if diff := cmp.Diff(map[string]int{"a": 10, "b": 10, "c": 10}, counts); diff != "" {
		t.Errorf("admissions per key (-want +got):\n%s", diff)
	}
	if _, ok := pool.TryAdmit(Demand{}); ok {
		t.Error("admitted with every key exhausted")
	}
}

func TestConcurrentAdmitReleaseKeepsInvariants(t *testing.T) {
	// Real clock: many goroutines contend on one pool with a concurrency limit.
	e := New(Options{})
	e.Apply(testConfig([]string{"k"}, limiterconfig.Limits{MaxConcurrency: 3}, limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Minute), MaxDepth: 1000}))
	pool := mustPool(t, e, "gpt-x")
	var mu sync.Mutex
	inside, peak := 0, 0
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			for range 50 {
				r, err := pool.Admit(context.Background(), Demand{}, 5, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				peak = max(peak, inside)
				mu.Unlock()
				mu.Lock()
				inside--
				mu.Unlock()
				r.release()
			}
		})
	}
	wg.Wait()
	if peak > 3 {
		t.Errorf("peak concurrency %d above the limit 3", peak)
	}
	if got := pool.Accounts()[0].InFlight(); got != 0 {
		t.Errorf("in flight after all released = %d", got)
	}
}

// TestASpentDailyCapIsRefusedAtOnce: a daily cap frees up at the next UTC day, so a
// request past it is refused at once, with the wait until then, not after the
// whole queue wait.
func TestASpentDailyCapIsRefusedAtOnce(t *testing.T) {
	e, _ := testEngine(t, testConfig([]string{"k"}, limiterconfig.Limits{RequestsPerDay: 1}, limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Minute), MaxDepth: 10}))
	pool := mustPool(t, e, "gpt-x")
	if r, ok := pool.TryAdmit(Demand{}); !ok {
		t.Fatal("the day's one request was refused")
	} else {
		r.End(Attempt{Status: 200})
	}
	done := make(chan error, 1)
	go func() {
		_, err := pool.Admit(context.Background(), Demand{}, 5, time.Minute)
		done <- err
	}()
	select {
	case err := <-done:
		var rej *RejectError
		if !errors.As(err, &rej) || rej.Limit != LimitRequestsPerDay || rej.RetryAfter <= time.Minute || rej.Waited != 0 {
			t.Fatalf("err = %v, want a requestsPerDay refusal at once with the wait until the next day", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a request past the daily cap waited in the queue")
	}
}

// TestEndWaitsWithinAnswersQueuedRequestsBeforeTheDrainEnds: a draining sidecar's
// queued requests are refused when the drain's wait ends, not after their own
// (longer) queue wait, and a request that arrives later waits only until then.
func TestEndWaitsWithinAnswersQueuedRequestsBeforeTheDrainEnds(t *testing.T) {
	e, clock := testEngine(t, testConfig([]string{"k"}, limiterconfig.Limits{MaxConcurrency: 1}, limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Minute), MaxDepth: 10}))
	pool := mustPool(t, e, "gpt-x")
	held, ok := pool.TryAdmit(Demand{InputTokens: 1})
	if !ok {
		t.Fatal("the one slot was refused")
	}
	defer held.Cancel()
	out := make(chan admitted, 3)
	admitAsync(t, pool, "early", Demand{InputTokens: 1}, 5, 30*time.Second, out)
	admitAsync(t, pool, "short", Demand{InputTokens: 1}, 5, 2*time.Second, out)
	e.EndWaitsWithin(5 * time.Second)
	clock.Advance(time.Second)
	admitAsync(t, pool, "late", Demand{InputTokens: 1}, 5, 30*time.Second, out)

	clock.Advance(4 * time.Second) // the drain's end: 5 s after EndWaitsWithin
	waited := map[string]time.Duration{}
	for range 3 {
		var a admitted
		select {
		case a = <-out:
		case <-time.After(10 * time.Second):
			t.Fatalf("answered only %v by the drain's end", waited)
		}
		var rej *RejectError
		if !errors.As(a.err, &rej) || rej.Reason != ReasonQueueTimeout {
			t.Fatalf("%s: %v, want a queue timeout", a.name, a.err)
		}
		waited[a.name] = rej.Waited
	}
	want := map[string]time.Duration{"short": 2 * time.Second, "early": 5 * time.Second, "late": 4 * time.Second}
	if diff := cmp.Diff(want, waited); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	_, err := pool.Admit(context.Background(), Demand{InputTokens: 1}, 5, time.Minute)
	var rej *RejectError
	if !errors.As(err, &rej) || rej.Reason != ReasonQueueTimeout {
		t.Errorf("a request after the drain's end: %v, want a queue timeout at once", err)
	}
}
