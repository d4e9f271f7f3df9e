package sidecar

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testkit"
)

// cancelEnv is an OpenAI account whose answers take long enough for the app to
// leave in the middle, behind a breaker that opens after five counted failures.
func cancelEnv(t *testing.T, latency simulator.Latency) *env {
	t.Helper()
	acct := simAccount(simOpenAIKey, "openai", simulator.Limits{RequestsPerMinute: 10000})
	acct.Latency = latency
	return newEnv(t, simulator.Config{Seed: 4, Accounts: []simulator.Account{acct}}, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
		p := fastPolicy("p")
		p.FailureThreshold = 5
		p.RecoveryTimeout = limiterconfig.Duration(time.Minute)
		p.RequestTimeout = limiterconfig.Duration(time.Minute)
		return &limiterconfig.Config{
			SchemaVersion: limiterconfig.SchemaVersion,
			Providers: []limiterconfig.Provider{{Name: "up", Type: limiterconfig.ProviderOpenAI, Endpoint: simURL, Policy: "p",
				Keys: []limiterconfig.Key{{ID: "up/key", File: keyFile(simOpenAIKey)}}, Limits: limiterconfig.Limits{RequestsPerMinute: 1000}}},
			Policies: []limiterconfig.Policy{p},
			Queue:    &limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Minute), MaxDepth: 100},
		}
	})
}

// leaveMidStream starts a stream and leaves once its first event arrived.
func (e *env) leaveMidStream(body string) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.proxy.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		e.t.Fatalf("no first event: %v", err)
	}
}

func TestAnAppThatLeavesIsNotAFailure(t *testing.T) {
	const leavers = 6 // more than the breaker's threshold of 5
	longStream := `{"model":"gpt-4o","stream":true,"max_tokens":2000,"messages":[{"role":"user","content":"Tell a long story"}]}`
	cases := []struct {
		name    string
		latency simulator.Latency
		leave   func(e *env, n int)
	}{
		{name: "during a stream", latency: simulator.Latency{OutputTokens: 2000, TokensPerSecond: 50},
			leave: func(e *env, _ int) { e.leaveMidStream(longStream) }},
		{name: "waiting for the answer", latency: simulator.Latency{TimeToFirstToken: simulator.Duration(time.Minute)},
			leave: func(e *env, n int) {
				e.leaveBeforeHeaders(chatBody, func() {
					testkit.Eventually(e.t, 30*time.Second, "the call to reach the provider", testkit.True(func() bool { return e.sim.Stats().Accounts[0].Requests >= int64(n) }))
				})
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := cancelEnv(t, c.latency)
			for n := 1; n <= leavers; n++ {
				c.leave(e, n)
			}
			testkit.Eventually(t, 30*time.Second, "every request to end", testkit.True(func() bool {
				var n float64
				for _, v := range outcomes(t, e.srv) {
					n += v
				}
				return n == leavers
			}))
			st := e.state()
			if got := st.Engine.Breakers[0].State; got != limiter.BreakerClosed {
				t.Errorf("breaker %s after %d apps left, want closed", got, leavers)
			}
			if diff := cmp.Diff(map[string]float64{outcomeCanceled: leavers}, outcomes(t, e.srv)); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
			if c := st.Engine.Accounts[0].Counters; c.Unanswered != 0 || c.Retries != 0 {
				t.Errorf("account counters %+v: a cancellation counted as unanswered or retried", c)
			}
			if _, metrics := e.get(e.admin.URL + "/metrics"); strings.Contains(metrics, `code="0"`) || strings.Contains(metrics, prefix+"retries_total{") {
				t.Errorf("a cancellation shows in the failure metrics:\n%s", grepLines(metrics, "code=\"0\""))
			}
			if sent := e.sim.Stats().Accounts[0].Requests; sent != leavers {
				t.Errorf("simulator saw %d calls, want %d: a cancellation was retried", sent, leavers)
			}
			e.assertSettled()
		})
	}
}

// leaveBeforeHeaders sends body and cancels once inTheMiddle returns, before any
// response header arrived.
func (e *env) leaveBeforeHeaders(body string, inTheMiddle func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.proxy.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	inTheMiddle()
	cancel()
	<-done
}
