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
