package sidecar

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
)

func TestA429StormIsNotAmplifiedByRetries(t *testing.T) {
	const appRequests, workers = 100, 10
	// The provider answers every call with a retryable 429 and no Retry-After, so
	// only the policy's backoff and the retry budget stand between the storm and
	// 1+maxRetries calls per app request.
	var calls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
	}))
	t.Cleanup(up.Close)
	e := newEnv(t, simulator.Config{Seed: 1, Accounts: []simulator.Account{simAccount(simOpenAIKey, "openai", simulator.Limits{})}}, func(_ string, keyFile func(string) string) *limiterconfig.Config {
		c := openAIConfig(up.URL, keyFile(simOpenAIKey), limiterconfig.Limits{RequestsPerMinute: 1000000})
		p := &c.Policies[0]
		p.Retry = limiterconfig.DefaultPolicy().Retry
		p.Retry.BaseDelay = limiterconfig.Duration(time.Millisecond)
		p.Retry.MaxDelay = limiterconfig.Duration(5 * time.Millisecond)
		return c
	})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range appRequests / workers {
				req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+"/v1/chat/completions", strings.NewReader(chatBody))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusTooManyRequests {
					t.Errorf("status %d, want the provider's 429", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	ratio := float64(calls.Load()) / appRequests
	t.Logf("%d upstream calls for %d app requests: %.2f per request", calls.Load(), appRequests, ratio)
	// A fifth more calls than requests within the window, plus the minimum of three.
	if limit := 1 + limiter.RetryBudgetRatio + float64(limiter.RetryBudgetMin)/appRequests; ratio > limit {
		t.Errorf("%.2f upstream calls per app request in a 429 storm, want at most %.2f", ratio, limit)
	}
	refused := e.state().Engine.Queues[0].RetriesRefused
	_, metrics := e.get(e.admin.URL + "/metrics")
	if refused == 0 || !strings.Contains(metrics, prefix+"retries_refused_total{") {
		t.Errorf("refused retries %d, metric:\n%s", refused, grepLines(metrics, "retries_refused"))
	}
}
