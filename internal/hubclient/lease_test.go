package hubclient

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/testkit"
)

// requestsLease is the requestsPerMinute lease in force on the test account, per
// minute; 0 when none.
func requestsLease(e *limiter.Engine) float64 {
	for _, a := range e.Snapshot().Accounts {
		for _, l := range a.Limits {
			if l.Kind == hubapi.LimitRequestsPerMinute && l.Lease != nil {
				return l.Lease.RatePerSecond * 60
			}
		}
	}
	return 0
}

// TestLeaseLapsesToAStaticShare: the manager's lease is applied; when the manager
// stops answering, the lease lapses at its expiry to limit / holders, and reports
// carry demand and the lease in force.
func TestLeaseLapsesToAStaticShare(t *testing.T) {
	s := newSidecar(t, "token\n", 100*time.Millisecond)
	m, live, engine := s.m, s.live, s.engine
	pool, err := engine.Pool("openai-tier3", "gpt-5.5")
	if err != nil {
		t.Fatal(err)
	}
	m.leases.Store(&[]hubapi.Lease{{
		Provider: "openai-tier3", Pool: pool.Name, Key: "openai/api-key", TTL: hubapi.Duration(time.Second), Holders: 3,
		Grants: hubapi.Grants{hubapi.LimitRequestsPerMinute: 60, hubapi.LimitTokensPerMinute: 5000, hubapi.LimitMaxConcurrency: 2, hubapi.LimitTokensPerDay: 900},
	}})
	r := New(Options{Config: live.get, Snapshot: engine.Snapshot, Leases: engine, Pod: testPod, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	testkit.Eventually(t, 60*time.Second, "the lease applied", testkit.Stated(func() (bool, string) {
		got := requestsLease(engine)
		return got == 60, fmt.Sprintf("requestsPerMinute lease %v", got)
	}))
	testkit.Eventually(t, 60*time.Second, "a report carrying the lease and demand", testkit.True(func() bool {
		reps, _ := m.received()
		a := reps[len(reps)-1].Accounts
		return len(a) == 1 && a[0].Lease[hubapi.LimitRequestsPerMinute] == 60 && a[0].Demand != nil
	}))
	m.refuse.Store(&[2]string{"", "serverError"})
	// 600 rpm over 3 holders, no margin.
	testkit.Eventually(t, 60*time.Second, "the static share after the lease lapsed", testkit.Stated(func() (bool, string) {
		got := requestsLease(engine)
		return got == 200, fmt.Sprintf("requestsPerMinute lease %v", got)
	}))
	// Daily caps admit nothing more while the manager cannot be asked.
	if _, ok := pool.TryAdmit(limiter.Demand{InputTokens: 1}); ok {
		t.Error("admitted on a lapsed daily lease")
	}
}

// TestRefusedRequestsAskForTheirTokens: an account that admitted nothing (its daily
// token lease is zero) still asks for tokens: the refused requests' reservations
// are its token demand, else the manager would never grant it any.
func TestRefusedRequestsAskForTheirTokens(t *testing.T) {
	l := newLeases(nil)
	report := func(rejected, in, out int64) *hubapi.Demand {
		r := &hubapi.Report{Accounts: []hubapi.Account{{Provider: "deepseek", Pool: "p", Key: "k"}}}
		snap := limiter.Snapshot{Queues: []limiter.QueueSnapshot{{Provider: "deepseek", Pool: "p",
			Rejected: rejected, RejectedInputTokens: in, RejectedOutputTokens: out}}}
		l.annotate(r, snap, time.Unix(0, 0).Add(time.Duration(rejected)*time.Minute/10))
		return r.Accounts[0].Demand
	}
	report(0, 0, 0)
	got := report(10, 5000, 20000) // ten refusals in a minute
	if got.RequestsPerMinute != 10 || got.InputTokensPerMinute != 5000 || got.OutputTokensPerMinute != 20000 {
		t.Errorf("demand %+v, want 10 requests, 5000 input and 20000 output tokens a minute", *got)
	}
}
