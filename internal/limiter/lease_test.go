package limiter

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/testkit"
)

func admitN(p *Account, n int) int {
	admitted := 0
	for range n {
		if _, ok := p.tryAdmit(&Demand{InputTokens: 1}); ok {
			admitted++
		}
	}
	return admitted
}

func TestLeasesCapBelowTheConfiguredLimits(t *testing.T) {
	conc := limiterconfig.Limits{MaxConcurrency: 5}
	day := limiterconfig.Limits{RequestsPerDay: 10}
	tests := []struct {
		name   string
		limits limiterconfig.Limits
		lease  func(*Account)
		want   int
	}{
		{"no lease: the configured cap", conc, func(*Account) {}, 5},
		{"two slots", conc, func(p *Account) { p.SetConcurrencyLease(2) }, 2},
		{"zero slots admit none", conc, func(p *Account) { p.SetConcurrencyLease(0) }, 0},
		{"a lease above the configured cap does not raise it", conc, func(p *Account) { p.SetConcurrencyLease(50) }, 5},
		{"removed", conc, func(p *Account) { p.SetConcurrencyLease(1); p.SetConcurrencyLease(-1) }, 5},
		{"daily ceiling", day, func(p *Account) { p.SetDailyLease(3, -1) }, 3},
		{"daily ceiling zero", day, func(p *Account) { p.SetDailyLease(0, -1) }, 0},
		{"restored use counts against the day", day, func(p *Account) { p.RestoreToday(8, 0) }, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Admissions are never released here, so concurrency and the day both count.
			p, _ := testAccount(t, tc.limits, 0)
			tc.lease(p)
			if got := admitN(p, 20); got != tc.want {
				t.Errorf("admitted %d, want %d", got, tc.want)
			}
		})
	}
}

func TestDailyCapsFailClosedUntilTheManagerAnswers(t *testing.T) {
	cfg := testConfig([]string{"k1"}, limiterconfig.Limits{RequestsPerDay: 10}, limiterconfig.Queue{})
	cfg.Control = &limiterconfig.Control{URL: "https://manager.example:8443/v1/report", TokenFile: "/var/run/token", ReportInterval: limiterconfig.Duration(time.Second)}
	e, _ := testEngine(t, cfg)
	pool := mustPool(t, e, "gpt-x")
	if _, ok := pool.TryAdmit(Demand{}); ok {
		t.Fatal("admitted on a daily cap before the manager said what the account used today")
	}
	acct, _ := e.Account("openai", "k1", pool.Name)
	acct.RestoreToday(9, 0)
	e.DayKnown()
	if _, ok := pool.TryAdmit(Demand{}); !ok {
		t.Fatal("refused the one request left today")
	}
	if _, ok := pool.TryAdmit(Demand{}); ok {
		t.Fatal("admitted past the daily cap restored from the manager")
	}
}

func TestSnapshotNamesTheMostUrgentWaiter(t *testing.T) {
	e, _ := testEngine(t, testConfig([]string{"k1"}, limiterconfig.Limits{MaxConcurrency: 1}, limiterconfig.Queue{MaxDepth: 10, MaxWait: limiterconfig.Duration(time.Hour)}))
	pool := mustPool(t, e, "gpt-x")
	held, ok := pool.TryAdmit(Demand{})
	if !ok {
		t.Fatal("refused the first request")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, prio := range []int{7, 3, 5} {
		go func() { _, _ = pool.Admit(ctx, Demand{}, prio, time.Hour) }()
	}
	testkit.Eventually(t, 60*time.Second, "three waiters, the most urgent at 3", testkit.Stated(func() (bool, string) {
		q := e.Snapshot().Queues[0]
		return q.Depth == 3 && q.UrgentPriority == 3, fmt.Sprintf("%+v", q)
	}))
	held.Cancel()
}
