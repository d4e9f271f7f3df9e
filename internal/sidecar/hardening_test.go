package sidecar

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testkit"
)

func TestATricklingBodyGets408AndAClosedConnection(t *testing.T) {
	e := multiEnv(t, func(o *Options) { o.BodyReadTimeout = 300 * time.Millisecond })
	// A body announced as 200 bytes that arrives a byte every 50 ms would take 10 s.
	a := testkit.Trickle(t, e.proxy.URL, "/v1/messages", 200, 50*time.Millisecond, 5*time.Second)
	if a.Status != http.StatusRequestTimeout || !strings.Contains(string(a.Body), `"type":"error"`) {
		t.Errorf("status %d body %s, want 408 in the Anthropic dialect", a.Status, a.Body)
	}
	if !a.Close {
		t.Error("the connection stays open after a body whose framing was lost")
	}
	if got := outcomes(t, e.srv); got[outcomeBodyTimeout] != 1 {
		t.Errorf("outcomes %v, want one %s", got, outcomeBodyTimeout)
	}
}

func TestDotModelNamesNeverReachTheProvider(t *testing.T) {
	e := multiEnv(t)
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1beta/models/.."},
		{http.MethodGet, "/v1beta/models/."},
		{http.MethodPost, "/v1beta/models/..:generateContent"},
		{http.MethodPost, "/v1/models/..:streamGenerateContent"},
		{http.MethodGet, "/v1/models/.."},
		{http.MethodPost, "/v1beta/models/:generateContent"},
	} {
		req, _ := http.NewRequest(c.method, e.proxy.URL+c.path, strings.NewReader(`{"contents":[{"parts":[{"text":"hi"}]}]}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: status %d, want 404", c.method, c.path, resp.StatusCode)
		}
	}
	for _, a := range e.sim.Stats().Accounts {
		if a.Requests != 0 {
			t.Errorf("the %s account saw %d requests, want none", a.Provider, a.Requests)
		}
	}
}

func TestHopByHopHeadersStayOnTheirHop(t *testing.T) {
	var mu sync.Mutex
	var got http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Connection", "X-Upstream-Hop")
		w.Header().Set("X-Upstream-Hop", "hop")
		w.Header().Set("X-Upstream-End", "end")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"c","object":"chat.completion","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	}))
	t.Cleanup(up.Close)
	e := newEnv(t, simulator.Config{Seed: 1, Accounts: []simulator.Account{simAccount(simOpenAIKey, "openai", simulator.Limits{})}}, func(_ string, keyFile func(string) string) *limiterconfig.Config {
		return openAIConfig(up.URL, keyFile(simOpenAIKey), limiterconfig.Limits{RequestsPerMinute: 100})
	})
	resp, body := e.post("/v1/chat/completions", http.Header{
		"Connection":    {"X-App-Hop, Keep-Alive"},
		"Keep-Alive":    {"timeout=5"},
		"X-App-Hop":     {"hop"},
		"X-App-End":     {"end"},
		"Authorization": {"Bearer sk-app-placeholder"},
	}, chatBody)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	mu.Lock()
	sent := map[string]string{}
	for _, k := range []string{"X-App-Hop", "X-App-End", "Keep-Alive", "Connection"} {
		sent[k] = got.Get(k)
	}
	mu.Unlock()
	if diff := cmp.Diff(map[string]string{"X-App-Hop": "", "X-App-End": "end", "Keep-Alive": "", "Connection": ""}, sent); diff != "" {
		t.Errorf("headers the provider received (-want +got):\n%s", diff)
	}
	returned := map[string]string{"X-Upstream-Hop": resp.Header.Get("X-Upstream-Hop"), "X-Upstream-End": resp.Header.Get("X-Upstream-End")}
	if diff := cmp.Diff(map[string]string{"X-Upstream-Hop": "", "X-Upstream-End": "end"}, returned); diff != "" {
		t.Errorf("headers the app received (-want +got):\n%s", diff)
	}
}

func TestBodiesWaitForMemoryThenGet503(t *testing.T) {
	acct := simAccount(simOpenAIKey, "openai", simulator.Limits{RequestsPerMinute: 10000})
	acct.Latency.TimeToFirstToken = simulator.Duration(time.Minute)
	e := newEnv(t, simulator.Config{Seed: 3, Accounts: []simulator.Account{acct}}, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
		return openAIConfig(simURL, keyFile(simOpenAIKey), limiterconfig.Limits{RequestsPerMinute: 1000})
	}, func(o *Options) {
		o.MaxBodyBytes, o.BodyMemoryBytes, o.BodyMemoryWait = 96<<10, 128<<10, 200*time.Millisecond
	})
	big := `{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"` + strings.Repeat("ab ", 25<<10) + `"}]}`
	// The first request holds its 75 KiB body while the provider thinks.
	holder := make(chan struct{})
	go func() {
		defer close(holder)
		req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+"/v1/chat/completions", strings.NewReader(big))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	testkit.Eventually(t, 30*time.Second, "the first request to reach the provider", testkit.True(func() bool { return e.sim.Stats().Accounts[0].Requests == 1 }))
	resp, body := e.post("/v1/chat/completions", nil, big)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"code":"overloaded"`) {
		t.Errorf("status %d, Retry-After %q, body %s: want 503 overloaded with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if got := outcomes(t, e.srv)[outcomeOverloaded]; got != 1 {
		t.Errorf("%v overloaded outcomes, want 1", got)
	}
	if peak := e.srv.bytes.peak.Load(); peak > 128<<10 {
		t.Errorf("bodies held %d bytes at the peak, above the 128 KiB budget", peak)
	}
	e.proxy.CloseClientConnections()
	<-holder
}

func TestBodiesOfUnknownLengthGrowWithinTheLimitAndGiveTheirBytesBack(t *testing.T) {
	e := newEnv(t, simulator.Config{Seed: 5, Accounts: []simulator.Account{simAccount(simOpenAIKey, "openai", simulator.Limits{RequestsPerMinute: 1000})}},
		func(simURL string, keyFile func(string) string) *limiterconfig.Config {
			return openAIConfig(simURL, keyFile(simOpenAIKey), limiterconfig.Limits{RequestsPerMinute: 1000})
		}, func(o *Options) { o.MaxBodyBytes, o.BodyMemoryBytes = 96<<10, 1<<20 })
	chunked := func(body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+"/v1/chat/completions", io.MultiReader(strings.NewReader(body)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	fits := `{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"` + strings.Repeat("ab ", 15<<10) + `"}]}`
	if status, body := chunked(fits); status != http.StatusOK {
		t.Errorf("a 45 KiB chunked body: status %d %s", status, body)
	}
	tooBig := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("ab ", 40<<10) + `"}]}`
	if status, body := chunked(tooBig); status != http.StatusRequestEntityTooLarge {
		t.Errorf("a 120 KiB chunked body over a 96 KiB limit: status %d %s", status, body)
	}
	testkit.Eventually(t, 30*time.Second, "every request to end", testkit.True(func() bool {
		var n float64
		for _, v := range outcomes(t, e.srv) {
			n += v
		}
		return n == 2
	}))
	// Doubling from 32 KiB stops at the limit (plus the byte that proves it exceeded).
	if peak := e.srv.bytes.peak.Load(); peak > 96<<10+1+(64<<10) {
		t.Errorf("bodies held %d bytes at the peak", peak)
	}
	if held := e.srv.bytes.held.Load(); held != 0 {
		t.Errorf("%d bytes still held after every request ended", held)
	}
}
