package adversarial

import (
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/simulator"
)

// In a 429 storm (every call refused, no Retry-After) apps retrying through the
// limiter do not multiply the calls the provider sees: the retry budget keeps them
// near one per app request. ADVERSARIAL_STORM sets how long the storm lasts (2s;
// the figure in docs/benchmarks.md is from 20s).
func TestA429StormReachesTheProviderAboutOncePerAppRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	length := 2 * time.Second
	if v := os.Getenv("ADVERSARIAL_STORM"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("ADVERSARIAL_STORM: %v", err)
		}
		length = d
	}
	const workers = 10
	acct := simulator.Account{Key: simKey, Provider: "openai", Limits: simulator.Limits{RequestsPerMinute: 100000}}
	acct.Faults.ErrorRates = map[string]float64{"429": 1}
	s := startStack(t, acct, nil, nil)
	var requests atomic.Int64
	statuses := sync.Map{}
	stop := time.Now().Add(length)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Now().Before(stop) {
				st := s.chat("gpt-4o")
				requests.Add(1)
				n, _ := statuses.LoadOrStore(st, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		})
	}
	wg.Wait()
	up := s.upstreamRequests()
	ratio := float64(up) / float64(requests.Load())
	byStatus := map[any]int64{}
	statuses.Range(func(k, v any) bool { byStatus[k] = v.(*atomic.Int64).Load(); return true })
	t.Logf("%s storm: %d app requests (statuses %v), %d upstream calls: %.2f per app request", length, requests.Load(), byStatus, up, ratio)
	// A fifth more calls than requests, plus the few retries always allowed.
	if limit := 1 + limiter.RetryBudgetRatio + float64(limiter.RetryBudgetMin)/float64(requests.Load()); ratio > limit {
		t.Errorf("%.2f upstream calls per app request in a 429 storm, want at most %.2f", ratio, limit)
	}
	for st := range byStatus {
		if st != http.StatusTooManyRequests {
			t.Errorf("status %v in a storm of 429s", st)
		}
	}
}
