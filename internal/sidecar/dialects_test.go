package sidecar

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testkit"
)

// multiEnv has one provider of every type at the simulator.
func multiEnv(t *testing.T, opts ...func(*Options)) *env {
	t.Helper()
	simCfg := simulator.Config{Seed: 2, Accounts: []simulator.Account{
		simAccount(simOpenAIKey, "openai", simulator.Limits{RequestsPerMinute: 1000}),
		simAccount(simAnthropicKey, "anthropic", simulator.Limits{RequestsPerMinute: 1000, InputTokensPerMinute: 100000, OutputTokensPerMinute: 20000}),
		simAccount(simGeminiKey, "gemini", simulator.Limits{RequestsPerMinute: 1000}),
		simAccount(simDeepSeekKey, "deepseek", simulator.Limits{RequestsPerMinute: 1000}),
	}}
	return newEnv(t, simCfg, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
		prov := func(name, typ, key string, l limiterconfig.Limits, models ...limiterconfig.ModelPool) limiterconfig.Provider {
			return limiterconfig.Provider{Name: name, Type: typ, Endpoint: simURL, Policy: "fast", LearnFromHeaders: true,
				Keys: []limiterconfig.Key{{ID: name + "/key", File: keyFile(key)}}, Limits: l, Models: models}
		}
		return &limiterconfig.Config{
			SchemaVersion: limiterconfig.SchemaVersion,
			Providers: []limiterconfig.Provider{
				prov("openai", limiterconfig.ProviderOpenAI, simOpenAIKey, limiterconfig.Limits{RequestsPerMinute: 500},
					limiterconfig.ModelPool{Names: []string{"gpt-4o"}, ContextWindow: 1000}),
				prov("claude", limiterconfig.ProviderAnthropic, simAnthropicKey, limiterconfig.Limits{RequestsPerMinute: 500, InputTokensPerMinute: 50000, OutputTokensPerMinute: 10000},
					limiterconfig.ModelPool{Names: []string{"claude-sonnet-4", "claude-sonnet-4-5"}}),
				prov("gemini", limiterconfig.ProviderGemini, simGeminiKey, limiterconfig.Limits{RequestsPerMinute: 500}),
			},
			Policies: []limiterconfig.Policy{fastPolicy("fast")},
		}
	}, opts...)
}

func TestAnthropicMessagesSettleInputAndOutputBuckets(t *testing.T) {
	e := multiEnv(t)
	h := http.Header{"X-Api-Key": {"sk-ant-app-placeholder"}, "Anthropic-Version": {"2023-06-01"}}
	resp, body := e.post("/v1/messages", h, `{"model":"claude-sonnet-4-5","max_tokens":200,"messages":[{"role":"user","content":"Hello there"}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var msg struct {
		Type  string
		Usage struct {
			InputTokens  int64 `json:"input_tokens"`
			OutputTokens int64 `json:"output_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(body), &msg); err != nil || msg.Type != "message" {
		t.Fatalf("body %s: %v", body, err)
	}
	var p *struct{ in, out, reserved int64 }
	for _, ps := range e.state().Engine.Accounts {
		if ps.Provider == "claude" {
			p = &struct{ in, out, reserved int64 }{ps.Counters.InputTokens, ps.Counters.OutputTokens, ps.Counters.ReservedTokens}
			if ps.Pool != "claude-sonnet-4" {
				t.Errorf("pool %q, want the family pool claude-sonnet-4", ps.Pool)
			}
			levels := map[string]float64{}
			for _, l := range ps.Limits {
				levels[l.Kind] = l.Burst - l.Level
			}
			// Settled: the buckets hold exactly what the response used (give or take refill).
			if used := levels["outputTokensPerMinute"]; used > float64(msg.Usage.OutputTokens)+1 || used < float64(msg.Usage.OutputTokens)-5 {
				t.Errorf("OTPM use %.1f, want about %d after settlement", used, msg.Usage.OutputTokens)
			}
		}
	}
	if p == nil || p.in != msg.Usage.InputTokens || p.out != msg.Usage.OutputTokens || p.reserved <= p.in+p.out {
		t.Errorf("claude counters %+v, want the response usage %+v settled from a larger reservation", p, msg.Usage)
	}
}

func TestAnthropicStreamPassesEventsThrough(t *testing.T) {
	e := multiEnv(t)
	req, _ := http.NewRequest(http.MethodPost, e.proxy.URL+"/v1/messages",
		strings.NewReader(`{"model":"claude-sonnet-4","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-ant-app-placeholder") // the 1.x SDKs send Bearer
	status, lines := streamLines(t, req)
	var events []string
	for _, l := range lines {
		if ev, ok := strings.CutPrefix(l, "event: "); ok {
			events = append(events, ev)
		}
	}
	if status != http.StatusOK || len(events) < 4 || events[0] != "message_start" || events[len(events)-1] != "message_stop" {
		t.Fatalf("status %d events %v", status, events)
	}
	st := e.sim.Stats()
	var simOut int64
	for _, a := range st.Accounts {
		if a.Provider == "anthropic" {
			p, _ := a.Pool("claude-sonnet-4")
			simOut = p.OutputTokens
		}
	}
	// Settlement follows the last byte to the app; wait for it.
	testkit.Eventually(t, 30*time.Second, "stream usage settled", testkit.True(func() bool {
		for _, ps := range e.state().Engine.Accounts {
			if ps.Provider == "claude" && ps.Counters.OutputTokens == simOut && simOut > 0 {
				return true
			}
		}
		return false
	}))
}

func TestGeminiRoutesAndQueryKeyIsReplaced(t *testing.T) {
	e := multiEnv(t)
	// The app's key= parameter is removed; the sidecar authenticates by header.
	resp, body := e.post("/v1beta/models/gemini-2.5-flash:generateContent?key=app-bogus-key", nil,
		`{"contents":[{"role":"user","parts":[{"text":"Hello"}]}],"generationConfig":{"maxOutputTokens":64}}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "usageMetadata") {
		t.Fatalf("generateContent: %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get(ServedByHeader); got != "gemini/gemini-2.5-flash" {
		t.Errorf("served-by %q", got)
	}
	resp, body = e.post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", nil,
		`{"contents":[{"role":"user","parts":[{"text":"Hello"}]}]}`)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "data: ") || !strings.Contains(body, "usageMetadata") {
		t.Fatalf("streamGenerateContent: %d %s", resp.StatusCode, body)
	}
}

func TestDeepSeekKeepAliveDoesNotTripTimeouts(t *testing.T) {
	e := upstreamEnv(t, 3, simUpstream{persona: "deepseek", typ: limiterconfig.ProviderDeepSeek, key: simDeepSeekKey,
		faults: simulator.Faults{KeepAlive: simulator.Duration(1500 * time.Millisecond)}, limits: limiterconfig.Limits{RequestsPerMinute: 100},
		policy: func(p *limiterconfig.Policy) {
			// Shorter than the keep-alive spell: only the keep-alive lines keep it alive.
			p.RequestTimeout = limiterconfig.Duration(600 * time.Millisecond)
			p.Retry.MaxRetries = 0
		}})
	for _, stream := range []bool{false, true} {
		body := `{"model":"deepseek-chat","messages":[{"role":"user","content":"hi"}],"stream":` + map[bool]string{false: "false", true: "true"}[stream] + `}`
		resp, out := e.post("/chat/completions", nil, body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream=%v: status %d %s", stream, resp.StatusCode, out)
		}
		if stream && (!strings.Contains(out, ": keep-alive") || !strings.Contains(out, "[DONE]")) {
			t.Errorf("stream: keep-alive comments and [DONE] should pass through, got %q", out)
		}
		if !stream && !strings.Contains(out, `"usage"`) {
			t.Errorf("non-stream body %q", out)
		}
	}
	if p := e.state().Engine.Accounts[0]; p.Counters.OutputTokens == 0 || p.Counters.Upstream5xx != 0 {
		t.Errorf("counters %+v: usage should be read past the keep-alive lines", p.Counters)
	}
}

func TestTimeoutOnSilentUpstream(t *testing.T) {
	e := upstreamEnv(t, 3, simUpstream{persona: "deepseek", typ: limiterconfig.ProviderDeepSeek, key: simDeepSeekKey,
		latency: simulator.Latency{TimeToFirstToken: simulator.Duration(3 * time.Second)},
		policy: func(p *limiterconfig.Policy) {
			p.RequestTimeout = limiterconfig.Duration(300 * time.Millisecond)
			p.Retry.MaxRetries = 1
		}})
	resp, body := e.post("/v1/chat/completions", nil, `{"model":"deepseek-chat","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "upstream_timeout") {
		t.Fatalf("status %d body %s, want 504 upstream_timeout", resp.StatusCode, body)
	}
	if p := e.state().Engine.Accounts[0]; p.Counters.Attempts != 2 || p.Counters.Retries != 1 {
		t.Errorf("counters %+v, want 2 attempts (one retry)", p.Counters)
	}
}

func TestLocalErrorsUseTheCallersDialect(t *testing.T) {
	e := multiEnv(t, func(o *Options) { o.MaxBodyBytes = 4096 })
	big := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("a", 5000) + `"}]}`
	cases := []struct {
		name, path, body string
		status           int
		want             string // a fragment of the dialect's error body
	}{
		{"openai malformed JSON", "/v1/chat/completions", `{"model":`, 400, `"type":"invalid_request_error"`},
		{"openai missing messages", "/v1/chat/completions", `{"model":"gpt-4o"}`, 400, `"param":"messages"`},
		{"anthropic malformed", "/v1/messages", `[1,2`, 400, `"type":"error"`},
		{"gemini malformed", "/v1beta/models/gemini-2.5-flash:generateContent", `{"contents":7}`, 400, `"status":"INVALID_ARGUMENT"`},
		{"body too large", "/v1/chat/completions", big, 413, `"code":"request_too_large"`},
		{"anthropic body too large", "/v1/messages", big, 413, `"type":"request_too_large"`},
		{"unknown route", "/v2/whatever", `{}`, 404, `"error"`},
		{"unknown model at the anthropic provider goes to the only one", "/v1/messages", `{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, 200, `"type":"message"`},
		{"context window exceeded", "/v1/chat/completions", `{"model":"gpt-4o","max_tokens":990,"messages":[{"role":"user","content":"` + strings.Repeat("word ", 40) + `"}]}`, 400, `"code":"context_length_exceeded"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := e.post(c.path, nil, c.body)
			if resp.StatusCode != c.status || !strings.Contains(body, c.want) {
				t.Errorf("status %d body %s, want %d with %s", resp.StatusCode, body, c.status, c.want)
			}
		})
	}
	if n := e.simPool(0, "gpt-4o").Requests; n != 0 {
		t.Errorf("simulator saw %d gpt-4o requests; every one of these should be refused locally", n)
	}
	_, body := e.post("/v1/chat/completions", nil, `{"model":"gpt-4o","max_tokens":990,"messages":[{"role":"user","content":"`+strings.Repeat("word ", 40)+`"}]}`)
	if !strings.Contains(body, "1000") || !strings.Contains(body, "990") {
		t.Errorf("context error should name the window and the output budget: %s", body)
	}
}

func TestChainRoutingRewritesAliases(t *testing.T) {
	simCfg := simulator.Config{Seed: 4, Accounts: []simulator.Account{simAccount(simOpenAIKey, "openai", simulator.Limits{RequestsPerMinute: 100})}}
	e := newEnv(t, simCfg, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
		c := openAIConfig(simURL, keyFile(simOpenAIKey), limiterconfig.Limits{RequestsPerMinute: 100})
		c.Chain = &limiterconfig.Chain{
			Entries:      []limiterconfig.ChainEntry{{Provider: "openai-main", Model: "gpt-5.5"}, {Provider: "openai-main", Model: "gpt-4o-mini"}},
			ModelAliases: []string{"default", "chat"},
		}
		return c
	})
	type res struct {
		Status   int
		ServedBy string
	}
	var got []res
	for _, model := range []string{"chat", "gpt-4o-mini", "gpt-4o"} {
		resp, _ := e.post("/v1/chat/completions", nil, `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`)
		got = append(got, res{resp.StatusCode, resp.Header.Get(ServedByHeader)})
	}
	want := []res{{200, "openai-main/gpt-5.5"}, {200, "openai-main/gpt-4o-mini"}, {404, ""}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("routing (-want +got):\n%s", diff)
	}
	if n := e.simPool(0, "gpt-5.5").Requests; n != 1 {
		t.Errorf("simulator saw %d gpt-5.5 requests, want 1 (the alias rewritten)", n)
	}
}

func TestSeveralKeysSpreadLoad(t *testing.T) {
	simCfg := simulator.Config{Seed: 5, Accounts: []simulator.Account{
		simAccount(simOpenAIKey, "openai", simulator.Limits{RequestsPerMinute: 100}),
		simAccount(simSecondKey, "openai", simulator.Limits{RequestsPerMinute: 100}),
	}}
	e := newEnv(t, simCfg, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
		c := openAIConfig(simURL, keyFile(simOpenAIKey), limiterconfig.Limits{RequestsPerMinute: 10})
		c.Providers[0].Keys = append(c.Providers[0].Keys, limiterconfig.Key{ID: "second/key", File: keyFile(simSecondKey)})
		return c
	})
	for i := range 20 {
		if resp, body := e.post("/v1/chat/completions", nil, chatBody); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	a, b := e.simPool(0, "gpt-4o").Admitted, e.simPool(1, "gpt-4o").Admitted
	if a != 10 || b != 10 {
		t.Errorf("admitted per account %d and %d, want 10 and 10 (two accounts of 10 RPM)", a, b)
	}
}

func TestGeminiChainAliasRewritesThePathAndModelListsRoute(t *testing.T) {
	simCfg := simulator.Config{Seed: 11, Accounts: []simulator.Account{
		simAccount(simGeminiKey, "gemini", simulator.Limits{RequestsPerMinute: 100}),
	}}
	e := newEnv(t, simCfg, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
		return &limiterconfig.Config{
			SchemaVersion: limiterconfig.SchemaVersion,
			Providers: []limiterconfig.Provider{{Name: "gemini", Type: limiterconfig.ProviderGemini, Endpoint: simURL,
				Keys: []limiterconfig.Key{{ID: "g/key", File: keyFile(simGeminiKey)}}}},
			Chain: &limiterconfig.Chain{Entries: []limiterconfig.ChainEntry{{Provider: "gemini", Model: "gemini-2.5-pro"}}, ModelAliases: []string{"chat"}},
		}
	})
	resp, body := e.post("/v1beta/models/chat:generateContent", nil, `{"contents":[{"role":"user","parts":[{"text":"Hello"}]}]}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(ServedByHeader) != "gemini/gemini-2.5-pro" {
		t.Fatalf("alias: %d %q %s", resp.StatusCode, resp.Header.Get(ServedByHeader), body)
	}
	if n := e.simPool(0, "gemini-2.5-pro").Requests; n != 1 {
		t.Errorf("simulator saw %d gemini-2.5-pro requests, want 1", n)
	}
	code, list := e.get(e.proxy.URL + "/v1beta/models")
	if code != 200 || !strings.Contains(list, "models") {
		t.Errorf("model list: %d %s", code, list)
	}
}

func TestOpenAIResponsesAPI(t *testing.T) {
	e := multiEnv(t)
	resp, body := e.post("/v1/responses", nil, `{"model":"gpt-4o","input":"Say hi","max_output_tokens":40}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"usage"`) {
		t.Fatalf("responses: %d %s", resp.StatusCode, body)
	}
	resp, body = e.post("/v1/responses", nil, `{"model":"gpt-4o","input":"Say hi","stream":true}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "response.completed") {
		t.Fatalf("streamed responses: %d %s", resp.StatusCode, body)
	}
	testkit.Eventually(t, 30*time.Second, "both responses settled with usage", testkit.True(func() bool {
		for _, p := range e.state().Engine.Accounts {
			if p.Provider == "openai" && p.Counters.Attempts == 2 && p.Counters.OutputTokens > 0 && p.Counters.RefundedTokens > 0 {
				return true
			}
		}
		return false
	}))
}
