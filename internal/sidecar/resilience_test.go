package sidecar

import (
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

// faultEnv is one account with faults, behind one provider that learns from the
// rate-limit headers and whose policy the test shapes.
func faultEnv(t *testing.T, persona, typ, key string, faults simulator.Faults, policy func(*limiterconfig.Policy)) *env {
	t.Helper()
	return upstreamEnv(t, 6, simUpstream{persona: persona, typ: typ, key: key, faults: faults, policy: policy,
		limits: limiterconfig.Limits{RequestsPerMinute: 1000}, queueWait: 10 * time.Second, learn: true})
}

func bodyFor(persona string) (string, string) {
	switch persona {
	case "anthropic":
		return "/v1/messages", `{"model":"claude-sonnet-4","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`
	case "deepseek":
		return "/chat/completions", `{"model":"deepseek-chat","messages":[{"role":"user","content":"hi"}]}`
	}
	return "/v1/chat/completions", chatBody
}

func TestRetriesFollowTheErrorTable(t *testing.T) {
	cases := []struct {
		name, persona, typ, key string
		fault                   string
		wantStatus              int
		wantAttempts            int64 // upstream requests the simulator saw
	}{
		{"500 is retried", "openai", limiterconfig.ProviderOpenAI, simOpenAIKey, "500", 500, 3},
		{"502 is retried", "openai", limiterconfig.ProviderOpenAI, simOpenAIKey, "502", 502, 3},
		{"503 is retried", "openai", limiterconfig.ProviderOpenAI, simOpenAIKey, "503", 503, 3},
		{"anthropic 529 is retried", "anthropic", limiterconfig.ProviderAnthropic, simAnthropicKey, "529", 529, 3},
		{"retryable 429 is retried", "openai", limiterconfig.ProviderOpenAI, simOpenAIKey, "429", 429, 3},
		{"openai insufficient_quota is not", "openai", limiterconfig.ProviderOpenAI, simOpenAIKey, "quota", 429, 1},
		{"deepseek 402 is not", "deepseek", limiterconfig.ProviderDeepSeek, simDeepSeekKey, "quota", 402, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := faultEnv(t, c.persona, c.typ, c.key, simulator.Faults{ErrorRates: map[string]float64{c.fault: 1}}, func(p *limiterconfig.Policy) {
				p.FailureThreshold = 100 // keep the breaker out of it
			})
			path, body := bodyFor(c.persona)
			resp, out := e.post(path, nil, body)
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("status %d (%s), want the provider's %d passed through", resp.StatusCode, out, c.wantStatus)
			}
			var sent int64
			for _, a := range e.sim.Stats().Accounts {
				sent += a.Requests
			}
			if sent != c.wantAttempts {
				t.Errorf("simulator saw %d requests, want %d", sent, c.wantAttempts)
			}
		})
	}
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	e := faultEnv(t, "openai", limiterconfig.ProviderOpenAI, simOpenAIKey, simulator.Faults{}, nil)
	// A key the simulator does not know: 401, returned as is, once.
	if err := writeFile(e.srv.live.Load().cfg.Providers[0].Keys[0].File, "sk-wrong-key"); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	resp, body := e.post("/v1/chat/completions", nil, chatBody)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "invalid_api_key") && !strings.Contains(body, "Incorrect API key") {
		t.Errorf("status %d body %s, want the provider's 401", resp.StatusCode, body)
	}
	if strings.Contains(body, "sk-wrong-key") {
		t.Errorf("the key appears in the body returned to the app")
	}
	if n := e.sim.Stats().Accounts[0].Requests; n > 1 {
		t.Errorf("simulator saw %d authenticated requests, want at most 1", n)
	}
	if c := e.state().Engine.Accounts[0].Counters; c.Attempts != 1 || c.Retries != 0 {
		t.Errorf("counters %+v, want one attempt and no retry", c)
	}
}

func TestRetryable429LowersLocalRateAndHonoursRetryAfter(t *testing.T) {
	e := faultEnv(t, "openai", limiterconfig.ProviderOpenAI, simOpenAIKey, simulator.Faults{ErrorRates: map[string]float64{"429": 1}}, func(p *limiterconfig.Policy) {
		p.Retry.MaxRetries = 1
		p.Retry.MaxTotal = limiterconfig.Duration(30 * time.Second)
	})
	start := time.Now()
	resp, _ := e.post("/v1/chat/completions", nil, chatBody)
	elapsed := time.Since(start)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429 after the retry", resp.StatusCode)
	}
	ra, ok := (&http.Response{Header: resp.Header}).Header["Retry-After"]
	if !ok || len(ra) == 0 {
		t.Fatalf("the provider's Retry-After did not reach the app")
	}
	// The simulator's Retry-After (>= 1s) was honoured before the retry, not the
	// policy's 5ms base delay.
	if elapsed < time.Second {
		t.Errorf("retried after %v; the provider asked for at least a second", elapsed)
	}
	p := e.state().Engine.Accounts[0]
	if p.Throttle >= 1 || p.Counters.Upstream429 != 2 {
		t.Errorf("throttle %v, 429s %d: want the rate lowered after two upstream 429s", p.Throttle, p.Counters.Upstream429)
	}
}

func TestNoRetryOnceStreamBytesReachedTheApp(t *testing.T) {
	e := faultEnv(t, "openai", limiterconfig.ProviderOpenAI, simOpenAIKey, simulator.Faults{MidStreamErrorRate: 1}, nil)
	req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	status, lines := streamLines(t, req)
	if status != http.StatusOK || len(lines) < 2 || !strings.Contains(strings.Join(lines, "\n"), `"error"`) {
		t.Fatalf("status %d lines %v: want chunks then the error event", status, lines)
	}
	if n := e.sim.Stats().Accounts[0].Requests; n != 1 {
		t.Errorf("simulator saw %d requests, want 1: nothing is retried after bytes reached the app", n)
	}
}

func TestCircuitBreakerOpensRejectsAndRecovers(t *testing.T) {
	e := faultEnv(t, "openai", limiterconfig.ProviderOpenAI, simOpenAIKey,
		simulator.Faults{Outages: []simulator.Outage{{Start: 0, End: simulator.Duration(time.Hour)}}},
		func(p *limiterconfig.Policy) {
			p.FailureThreshold = 3
			p.Retry.MaxRetries = 0
			p.RecoveryTimeout = limiterconfig.Duration(500 * time.Millisecond)
			p.HalfOpenMaxCalls = 1
		})
	for i := range 3 {
		if resp, _ := e.post("/v1/chat/completions", nil, chatBody); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("request %d: status %d, want the outage's 503", i, resp.StatusCode)
		}
	}
	resp, body := e.post("/v1/chat/completions", nil, chatBody)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"circuit_open"`) || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("open breaker: status %d Retry-After %q body %s, want 503 circuit_open with the remaining open time", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if n := e.sim.Stats().Accounts[0].Requests; n != 3 {
		t.Errorf("simulator saw %d requests, want 3: an open breaker rejects locally", n)
	}
	// The provider recovers; after the recovery timeout one probe closes the breaker.
	if err := e.sim.SetFaults(simOpenAIKey, simulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "breaker half-open", testkit.True(func() bool {
		bs := e.state().Engine.Breakers
		return len(bs) == 1 && bs[0].State == limiter.BreakerHalfOpen
	}))
	if resp, body := e.post("/v1/chat/completions", nil, chatBody); resp.StatusCode != http.StatusOK {
		t.Fatalf("probe: %d %s", resp.StatusCode, body)
	}
	b := e.state().Engine.Breakers[0]
	var path []string
	for _, tr := range b.Transitions {
		path = append(path, tr.From.String()+">"+tr.To.String())
	}
	if b.State != limiter.BreakerClosed || strings.Join(path, " ") != "closed>open open>halfOpen halfOpen>closed" {
		t.Errorf("breaker %v transitions %v", b.State, path)
	}
}

func TestHeaderLearningLowersToTheRealTier(t *testing.T) {
	for _, learn := range []bool{true, false} {
		acct := simAccount(simOpenAIKey, "openai", simulator.Limits{RequestsPerMinute: 50, TokensPerMinute: 40000})
		e := newEnv(t, simulator.Config{Seed: 7, Accounts: []simulator.Account{acct}}, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
			c := openAIConfig(simURL, keyFile(simOpenAIKey), limiterconfig.Limits{RequestsPerMinute: 500, TokensPerMinute: 100000})
			c.Providers[0].LearnFromHeaders = learn
			return c
		})
		// Another consumer of the same key has used 30 of the account's 50 requests.
		for range 30 {
			req, _ := http.NewRequest(http.MethodPost, e.simURL+"/v1/chat/completions", strings.NewReader(chatBody))
			req.Header.Set("Authorization", "Bearer "+simOpenAIKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("direct request: %v %v", err, resp)
			}
			resp.Body.Close()
		}
		if resp, body := e.post("/v1/chat/completions", nil, chatBody); resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		p := e.state().Engine.Accounts[0]
		type lim struct{ Learned, Rate float64 }
		got := map[string]lim{}
		for _, l := range p.Limits {
			got[l.Kind] = lim{float64(l.Learned), l.RatePerMinute}
		}
		want := map[string]lim{"requestsPerMinute": {0, 500}, "tokensPerMinute": {0, 100000}}
		if learn {
			want = map[string]lim{"requestsPerMinute": {50, 50}, "tokensPerMinute": {40000, 40000}}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("learn=%v: learned and effective limits (-want +got):\n%s", learn, diff)
		}
		// The provider said 19 requests remain, below the local level: the local
		// level follows (a little refill aside), and only when learning is on.
		req := p.Limits[0]
		if learn && (req.Level > 19.5 || p.LastHeaders == nil) {
			t.Errorf("request level %.2f, want the provider's remaining 19 applied", req.Level)
		}
		if !learn && (req.Level < 498 || p.LastHeaders != nil) {
			t.Errorf("learning off: request level %.2f headers %v, want local state untouched", req.Level, p.LastHeaders)
		}
	}
}

func TestPriorityHeaderOrdersTheQueue(t *testing.T) {
	acct := simAccount(simOpenAIKey, "openai", simulator.Limits{RequestsPerMinute: 1000})
	acct.Latency.TimeToFirstToken = simulator.Duration(300 * time.Millisecond)
	e := newEnv(t, simulator.Config{Seed: 8, Accounts: []simulator.Account{acct}}, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
		return openAIConfig(simURL, keyFile(simOpenAIKey), limiterconfig.Limits{MaxConcurrency: 1})
	})
	done := make(chan string, 3)
	send := func(name, prio string) {
		go func() {
			resp, _ := e.post("/v1/chat/completions", http.Header{PriorityHeader: {prio}}, chatBody)
			done <- name + ":" + resp.Status
		}()
	}
	send("first", "5")
	testkit.Eventually(t, 30*time.Second, "first in flight", testkit.True(func() bool { p := e.state().Engine.Accounts; return len(p) == 1 && p[0].InFlight == 1 }))
	send("batch", "9")
	testkit.Eventually(t, 30*time.Second, "batch queued", testkit.True(func() bool { return e.state().Engine.Queues[0].Depth == 1 }))
	send("interactive", "1")
	testkit.Eventually(t, 30*time.Second, "interactive queued", testkit.True(func() bool { return e.state().Engine.Queues[0].Depth == 2 }))
	var order []string
	for range 3 {
		order = append(order, <-done)
	}
	want := "first:200 OK interactive:200 OK batch:200 OK"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("completion order %q, want %q", got, want)
	}
}
