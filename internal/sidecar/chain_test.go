package sidecar

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"google.golang.org/genai"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testkit"
)

// chainAccount is one chain entry: a simulator account and the provider and model
// the chain names for it.
type chainAccount struct {
	acct     simulator.Account
	provider string // the limiterconfig provider name
	typ      string // its limiterconfig provider type
	model    string
}

// openAIEntry and anthropicEntry are the two dialects the chain tests walk between.
func openAIEntry() chainAccount {
	return chainAccount{acct: simAccount(simOpenAIKey, "openai", simulator.Limits{RequestsPerMinute: 10000}),
		provider: "openai", typ: limiterconfig.ProviderOpenAI, model: "gpt-4o"}
}

func anthropicEntry() chainAccount {
	return chainAccount{acct: simAccount(simAnthropicKey, "anthropic", simulator.Limits{RequestsPerMinute: 10000}),
		provider: "claude", typ: limiterconfig.ProviderAnthropic, model: "claude-sonnet-4"}
}

// chainEnv is a FallbackChain "team-a/chat" (alias "chat") over the entries, in
// order, each at its own simulator account, all under one fast policy; shape, when
// set, changes the config (its policy is Policies[0]).
func chainEnv(t *testing.T, shape func(*limiterconfig.Config), entries ...chainAccount) *env {
	t.Helper()
	simCfg := simulator.Config{Seed: 9}
	for _, c := range entries {
		c.acct.Latency.OutputTokens = max(c.acct.Latency.OutputTokens, 8)
		simCfg.Accounts = append(simCfg.Accounts, c.acct)
	}
	return newEnv(t, simCfg, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
		cfg := &limiterconfig.Config{
			SchemaVersion: limiterconfig.SchemaVersion,
			Source:        limiterconfig.Source{Kind: "FallbackChain", Namespace: "team-a", Name: "chat"},
			Policies:      []limiterconfig.Policy{fastPolicy("p")},
			Queue:         &limiterconfig.Queue{MaxWait: limiterconfig.Duration(10 * time.Second), MaxDepth: 100},
			// Interactive by default, so a primary out of capacity is left at once.
			Chain: &limiterconfig.Chain{ModelAliases: []string{"chat"}, DefaultPriority: 1, WaitInteractive: limiterconfig.Duration(50 * time.Millisecond), FallbackOn: []string{
				limiterconfig.FailureRateLimited, limiterconfig.FailureServerError, limiterconfig.FailureUnavailable, limiterconfig.FailureTimeout,
				limiterconfig.FailureConnection, limiterconfig.FailureCircuitOpen, limiterconfig.FailureContextLengthExceeded,
			}},
		}
		for _, c := range entries {
			cfg.Providers = append(cfg.Providers, limiterconfig.Provider{Name: c.provider, Type: c.typ, Endpoint: simURL, Policy: "p",
				Keys: []limiterconfig.Key{{ID: c.provider + "/key", File: keyFile(c.acct.Key)}}, Limits: limiterconfig.Limits{RequestsPerMinute: 5000}})
			cfg.Chain.Entries = append(cfg.Chain.Entries, limiterconfig.ChainEntry{Provider: c.provider, Model: c.model})
		}
		if shape != nil {
			shape(cfg)
		}
		return cfg
	})
}

// chatReply is what the chain tests read of an OpenAI chat completion.
type chatReply struct {
	Object  string `json:"object"`
	Choices []struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
}

// postChat sends an OpenAI chat request for the alias and checks the app got a
// complete answer in its own dialect; it returns the served-by and fallbacks
// headers.
func (e *env) postChat(prompt string) (servedBy, fallbacks string) {
	e.t.Helper()
	resp, body := e.post("/v1/chat/completions", nil, `{"model":"chat","messages":[{"role":"user","content":"`+prompt+`"}],"max_tokens":50}`)
	var c chatReply
	if err := json.Unmarshal([]byte(body), &c); resp.StatusCode != http.StatusOK || err != nil || c.Object != "chat.completion" ||
		len(c.Choices) != 1 || c.Choices[0].Message.Content == "" {
		e.t.Fatalf("status %d (fallbacks %q): %s, want a complete chat.completion", resp.StatusCode, resp.Header.Get(FallbacksHeader), body)
	}
	return resp.Header.Get(ServedByHeader), resp.Header.Get(FallbacksHeader)
}

// TestChainFallsOverOnEachFailure: an OpenAI-dialect primary failing in each way
// fallbackOn names; every app request is answered, in the OpenAI dialect, by the
// Anthropic-dialect entry, and the first says why it moved.
func TestChainFallsOverOnEachFailure(t *testing.T) {
	long := strings.Repeat("word ", 200)
	for _, tc := range []struct {
		name   string
		fault  func(*simulator.Account)
		shape  func(*limiterconfig.Config)
		prompt string
		reason string
		// skipped: the limiter skips the primary without calling it.
		skipped bool
	}{
		{name: "429 storm", fault: func(a *simulator.Account) { a.Faults.ErrorRates = map[string]float64{"429": 1} }, reason: limiterconfig.FailureRateLimited},
		{name: "503 outage", fault: func(a *simulator.Account) {
			a.Faults.Outages = []simulator.Outage{{End: simulator.Duration(time.Hour)}}
		}, reason: limiterconfig.FailureUnavailable},
		{name: "connection resets", fault: func(a *simulator.Account) { a.Faults.ResetRate = 1 }, reason: limiterconfig.FailureConnection},
		{name: "timeouts", fault: func(a *simulator.Account) { a.Latency.TimeToFirstToken = simulator.Duration(3 * time.Second) },
			shape: func(c *limiterconfig.Config) {
				c.Policies[0].RequestTimeout = limiterconfig.Duration(200 * time.Millisecond)
			}, reason: limiterconfig.FailureTimeout},
		{name: "context length", fault: func(a *simulator.Account) {
			a.Models = []simulator.Model{{Names: []string{"gpt-4o"}, ContextWindow: 100}}
		}, prompt: long, reason: limiterconfig.FailureContextLengthExceeded},
		{name: "context window known to the limiter", fault: func(*simulator.Account) {}, shape: func(c *limiterconfig.Config) {
			c.Providers[0].Models = []limiterconfig.ModelPool{{Names: []string{"gpt-4o"}, ContextWindow: 100}}
		}, prompt: long, reason: limiterconfig.FailureContextLengthExceeded, skipped: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			primary := openAIEntry()
			tc.fault(&primary.acct)
			e := chainEnv(t, tc.shape, primary, anthropicEntry())
			prompt := tc.prompt
			if prompt == "" {
				prompt = "hi"
			}
			for i := range 4 {
				served, fallbacks := e.postChat(prompt)
				if served != "claude/claude-sonnet-4" {
					t.Fatalf("request %d served by %q (fallbacks %q), want the second entry", i, served, fallbacks)
				}
				if i == 0 && fallbacks != "openai/gpt-4o ("+tc.reason+")" {
					t.Errorf("first request's fallbacks %q, want the primary's %s", fallbacks, tc.reason)
				}
			}
			st := e.state().Engine
			for _, a := range st.Accounts {
				if a.Provider == "openai" && (a.InFlight != 0 || (!tc.skipped && a.Counters.ReservedTokens == 0)) {
					t.Errorf("primary account %+v: want its reservations made and released by the moves", a)
				}
			}
			if !slices.ContainsFunc(st.Failovers, func(f limiter.FailoverSnapshot) bool { return f.From == 0 && f.To == 1 && f.Reason == tc.reason }) {
				t.Errorf("failover ledger %+v, want 0->1 for %s", st.Failovers, tc.reason)
			}
			if n := e.sim.Stats().Accounts[0].Requests; (n == 0) != tc.skipped {
				t.Errorf("the primary's account saw %d requests; skipped by the limiter: %v", n, tc.skipped)
			}
			_, metrics := e.get(e.admin.URL + "/metrics")
			if want := `aiquota_limiter_chain_failovers_total{chain="team-a/chat",from="openai/gpt-4o",reason="` + tc.reason + `",to="claude/claude-sonnet-4"}`; !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %s", want)
			}
		})
	}
}

// TestChainReturnsToThePrimary: once the primary recovers and its breaker closes
// after a half-open probe, new requests go back to it.
func TestChainReturnsToThePrimary(t *testing.T) {
	primary := openAIEntry()
	primary.acct.Faults.Outages = []simulator.Outage{{End: simulator.Duration(time.Hour)}}
	e := chainEnv(t, func(c *limiterconfig.Config) { c.Policies[0].FailureThreshold, c.Policies[0].Retry.MaxRetries = 2, 0 }, primary, anthropicEntry())
	var reasons []string
	for range 4 {
		_, fallbacks := e.postChat("hi")
		reasons = append(reasons, fallbacks)
	}
	want := []string{"openai/gpt-4o (unavailable)", "openai/gpt-4o (unavailable)", "openai/gpt-4o (circuitOpen)", "openai/gpt-4o (circuitOpen)"}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("fallbacks (-want +got): the breaker opens after two outages, then the primary is skipped\n%s", diff)
	}
	if err := e.sim.SetFaults(simOpenAIKey, simulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	recovered := time.Now()
	testkit.Eventually(t, 30*time.Second, "requests served by the primary again", testkit.True(func() bool {
		served, _ := e.postChat("hi")
		return served == "openai/gpt-4o"
	}))
	t.Logf("fail-back: %v from the primary's recovery to an answer from it (recovery timeout 300ms)", time.Since(recovered))
	var b limiter.BreakerSnapshot
	for _, bs := range e.state().Engine.Breakers {
		if bs.Provider == "openai" {
			b = bs
		}
	}
	if b.State != limiter.BreakerClosed {
		t.Errorf("primary breaker %v, want closed after the probe", b.State)
	}
}

// TestChainTerminalErrorNamesWhatWasTried: when every entry fails, the app gets
// the last entry's failure in its own dialect, naming the entries tried.
func TestChainTerminalErrorNamesWhatWasTried(t *testing.T) {
	primary, second := openAIEntry(), anthropicEntry()
	primary.acct.Faults.Outages = []simulator.Outage{{End: simulator.Duration(time.Hour)}}
	second.acct.Faults.Outages = primary.acct.Faults.Outages
	e := chainEnv(t, nil, primary, second)
	resp, body := e.post("/v1/chat/completions", nil, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	var got struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != http.StatusServiceUnavailable ||
		!strings.Contains(got.Error.Message, "claude/claude-sonnet-4") || !strings.Contains(got.Error.Message, "openai/gpt-4o (unavailable)") {
		t.Errorf("status %d body %s, want an OpenAI-dialect 503 naming both entries", resp.StatusCode, body)
	}
	if resp.Header.Get(shouldRetryHeader) != "false" {
		t.Errorf("x-should-retry %q, want false: the chain has tried everything", resp.Header.Get(shouldRetryHeader))
	}
}

// TestChainDoesNotMoveOnRequestErrors: a failure caused by the request itself is
// the app's to see, whatever the chain.
func TestChainDoesNotMoveOnRequestErrors(t *testing.T) {
	e := chainEnv(t, nil, openAIEntry(), anthropicEntry())
	resp, body := e.post("/v1/chat/completions", nil, `{"model":"chat","messages":[{"content":"hi"}]}`)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(FallbacksHeader) != "" {
		t.Errorf("status %d fallbacks %q body %s, want the primary's 400 and no move", resp.StatusCode, resp.Header.Get(FallbacksHeader), body)
	}
}

// TestOpenAISDKStreamsThroughTheChainAcrossOutageAndRecovery is the acceptance
// scenario: an app on openai-go, streaming through the alias, keeps getting
// complete answers in the OpenAI dialect from the Anthropic-dialect entry while
// the primary is down, and goes back to the primary after it recovers.
func TestOpenAISDKStreamsThroughTheChainAcrossOutageAndRecovery(t *testing.T) {
	primary, second := openAIEntry(), anthropicEntry()
	second.acct.Latency = simulator.Latency{OutputTokens: 20, TokensPerSecond: 200}
	e := chainEnv(t, func(c *limiterconfig.Config) { c.Policies[0].FailureThreshold = 2 }, primary, second)
	client := sdkClient(e)
	stream := func() string {
		t.Helper()
		var raw *http.Response
		s := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
			Model:    "chat",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Count to twenty")},
		}, option.WithResponseInto(&raw))
		var acc openai.ChatCompletionAccumulator
		for s.Next() {
			acc.AddChunk(s.Current())
		}
		if err := s.Err(); err != nil {
			t.Fatalf("stream through the chain: %v", err)
		}
		if len(acc.Choices) != 1 || acc.Choices[0].Message.Content == "" || acc.Choices[0].FinishReason == "" {
			t.Fatalf("incomplete streamed answer: %+v", acc.ChatCompletion)
		}
		return raw.Header.Get(ServedByHeader)
	}
	if got := stream(); got != "openai/gpt-4o" {
		t.Fatalf("healthy primary: served by %q", got)
	}
	if err := e.sim.SetFaults(simOpenAIKey, simulator.Faults{Outages: []simulator.Outage{{End: simulator.Duration(time.Hour)}}}); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	for i := range 5 {
		if got := stream(); got != "claude/claude-sonnet-4" {
			t.Fatalf("outage request %d: served by %q, want the Anthropic entry", i, got)
		}
		if i == 0 {
			t.Logf("failover: %v from the primary's outage to a complete answer from the second entry", time.Since(down))
		}
	}
	if err := e.sim.SetFaults(simOpenAIKey, simulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	testkit.Eventually(t, 30*time.Second, "streams served by the primary again", testkit.True(func() bool { return stream() == "openai/gpt-4o" }))
	t.Logf("fail-back: %v from the primary's recovery to a stream from it", time.Since(up))
	// Each entry's quota carried what it served: the Anthropic account's input and
	// output were settled from its own usage.
	for _, a := range e.state().Engine.Accounts {
		if a.Provider == "claude" && (a.Counters.OutputTokens < 5*20 || a.Counters.OutputTokens%20 != 0 || a.Counters.InputTokens == 0) {
			t.Errorf("claude account counters %+v, want 20 output tokens settled per stream it served, at least five", a.Counters)
		}
	}
}

// TestAnthropicSDKFallsOverToAnOpenAIEntry: the other direction, streaming, with
// the Anthropic-dialect primary overloaded.
func TestAnthropicSDKFallsOverToAnOpenAIEntry(t *testing.T) {
	primary, second := anthropicEntry(), openAIEntry()
	primary.acct.Faults.Outages = []simulator.Outage{{End: simulator.Duration(time.Hour)}}
	e := chainEnv(t, nil, primary, second)
	client := anthropic.NewClient(anthropicoption.WithBaseURL(e.proxy.URL), anthropicoption.WithAPIKey("sk-ant-app-placeholder"), anthropicoption.WithMaxRetries(0))
	for i := range 3 {
		var raw *http.Response
		s := client.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{
			Model:     "chat",
			MaxTokens: 100,
			Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello"))},
		}, anthropicoption.WithResponseInto(&raw))
		var msg anthropic.Message
		for s.Next() {
			if err := msg.Accumulate(s.Current()); err != nil {
				t.Fatalf("accumulate: %v", err)
			}
		}
		if err := s.Err(); err != nil {
			t.Fatalf("request %d: stream through the chain: %v", i, err)
		}
		if len(msg.Content) == 0 || msg.Content[0].Text == "" || msg.StopReason == "" || msg.Usage.OutputTokens == 0 {
			t.Fatalf("request %d: incomplete message %+v", i, msg)
		}
		if got := raw.Header.Get(ServedByHeader); got != "openai/gpt-4o" {
			t.Fatalf("request %d: served by %q, want the OpenAI entry", i, got)
		}
	}
}

// TestChainWaitBudgetFollowsPriority: with the primary's capacity taken, an
// interactive request moves on after its short wait, while batch work waits for
// the primary.
func TestChainWaitBudgetFollowsPriority(t *testing.T) {
	primary := openAIEntry()
	primary.acct.Latency.TimeToFirstToken = simulator.Duration(time.Second)
	e := chainEnv(t, func(c *limiterconfig.Config) {
		c.Providers[0].Limits = limiterconfig.Limits{RequestsPerMinute: 5000, MaxConcurrency: 1}
		c.Chain.WaitBatch = limiterconfig.Duration(20 * time.Second)
	}, primary, anthropicEntry())
	type res struct{ ServedBy, Fallbacks string }
	send := func(priority string) res {
		resp, body := e.post("/v1/chat/completions", http.Header{PriorityHeader: {priority}}, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("priority %s: status %d %s", priority, resp.StatusCode, body)
		}
		return res{resp.Header.Get(ServedByHeader), resp.Header.Get(FallbacksHeader)}
	}
	first := make(chan res)
	go func() { first <- send("1") }()
	testkit.Eventually(t, 30*time.Second, "the first request holding the primary's one slot", testkit.True(func() bool {
		for _, a := range e.state().Engine.Accounts {
			if a.Provider == "openai" && a.InFlight == 1 {
				return true
			}
		}
		return false
	}))
	got := []res{send("1"), send("9"), <-first}
	want := []res{
		{"claude/claude-sonnet-4", "openai/gpt-4o (rateLimited)"},
		{"openai/gpt-4o", ""},
		{"openai/gpt-4o", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("interactive, batch, first (-want +got):\n%s", diff)
	}
}

// TestOpenAISDKResponsesStreamFallsOverToAnthropic: OpenAI's current SDKs default to
// the Responses API; a Responses stream through the alias, with the OpenAI primary
// down, is answered by the Anthropic entry as a Responses stream.
func TestOpenAISDKResponsesStreamFallsOverToAnthropic(t *testing.T) {
	primary := openAIEntry()
	primary.acct.Faults.Outages = []simulator.Outage{{End: simulator.Duration(time.Hour)}}
	e := chainEnv(t, nil, primary, anthropicEntry())
	var raw *http.Response
	s := sdkClient(e).Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
		Model: "chat",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello")},
	}, option.WithResponseInto(&raw))
	var text strings.Builder
	var final *responses.Response
	for s.Next() {
		switch ev := s.Current(); ev.Type {
		case "response.output_text.delta":
			text.WriteString(ev.Delta)
		case "response.completed":
			final = &ev.Response
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("responses stream through the chain: %v", err)
	}
	if final == nil || final.OutputText() == "" || final.OutputText() != text.String() || final.Usage.OutputTokens == 0 {
		t.Fatalf("final response %+v, deltas %q: want a completed response repeating the deltas, with usage", final, text.String())
	}
	if got := raw.Header.Get(ServedByHeader); got != "claude/claude-sonnet-4" {
		t.Errorf("served by %q, want the Anthropic entry", got)
	}
}

// TestChainTranslationSkipsAndDrops: a request an entry cannot take without
// changing its meaning skips that entry (not a failover); fields a translation
// leaves out are named in x-aiquota-dropped.
func TestChainTranslationSkipsAndDrops(t *testing.T) {
	e := chainEnv(t, nil, anthropicEntry(), openAIEntry())
	type res struct {
		Status                       int
		ServedBy, Fallbacks, Dropped string
	}
	var got []res
	for _, extra := range []string{`"n":2`, `"seed":7`} {
		resp, _ := e.post("/v1/chat/completions", nil, `{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":20,`+extra+`}`)
		got = append(got, res{resp.StatusCode, resp.Header.Get(ServedByHeader), resp.Header.Get(FallbacksHeader), resp.Header.Get(DroppedHeader)})
	}
	want := []res{
		{200, "openai/gpt-4o", "claude/claude-sonnet-4 (untranslatable)", ""},
		{200, "claude/claude-sonnet-4", "", "seed"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("n=2, then seed (-want +got):\n%s", diff)
	}
	if f := e.state().Engine.Failovers; len(f) != 0 {
		t.Errorf("failovers %+v, want none: a skip for translation is not a failure", f)
	}
}

// TestChainDoesNotMoveOnceTheAnswerBegan: a stream that fails after its first
// bytes reached the app ends there, in the app's dialect; it is not resent.
func TestChainDoesNotMoveOnceTheAnswerBegan(t *testing.T) {
	primary := openAIEntry()
	primary.acct.Faults.MidStreamErrorRate = 1
	e := chainEnv(t, nil, primary, anthropicEntry())
	resp, body := e.post("/v1/chat/completions", nil, `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(ServedByHeader) != "openai/gpt-4o" || resp.Header.Get(FallbacksHeader) != "" ||
		!strings.Contains(body, `"error"`) {
		t.Errorf("status %d served by %q fallbacks %q body %s, want the primary's stream with its error, not moved",
			resp.StatusCode, resp.Header.Get(ServedByHeader), resp.Header.Get(FallbacksHeader), body)
	}
	if n := e.sim.Stats().Accounts[1].Requests; n != 0 {
		t.Errorf("the second entry saw %d requests, want none", n)
	}
}

// TestGeminiAppFallsOverToAnthropic: a Gemini-dialect app, its Gemini primary
// down, gets a generateContent answer from the Anthropic entry.
func TestGeminiAppFallsOverToAnthropic(t *testing.T) {
	primary := chainAccount{acct: simAccount(simGeminiKey, "gemini", simulator.Limits{RequestsPerMinute: 10000}),
		provider: "gemini", typ: limiterconfig.ProviderGemini, model: "gemini-2.5-flash"}
	primary.acct.Faults.Outages = []simulator.Outage{{End: simulator.Duration(time.Hour)}}
	e := chainEnv(t, nil, primary, anthropicEntry())
	resp, body := e.post("/v1beta/models/chat:generateContent", http.Header{"X-Goog-Api-Key": {"app-placeholder"}},
		`{"contents":[{"role":"user","parts":[{"text":"Say hello"}]}],"generationConfig":{"maxOutputTokens":50}}`)
	var got genai.GenerateContentResponse
	if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != http.StatusOK || len(got.Candidates) != 1 ||
		got.Text() == "" || got.Candidates[0].FinishReason == "" || got.UsageMetadata == nil || got.UsageMetadata.CandidatesTokenCount == 0 {
		t.Fatalf("status %d body %s, want a Gemini answer genai parses", resp.StatusCode, body)
	}
	if served, fallbacks := resp.Header.Get(ServedByHeader), resp.Header.Get(FallbacksHeader); served != "claude/claude-sonnet-4" || fallbacks != "gemini/gemini-2.5-flash (unavailable)" {
		t.Errorf("served by %q after %q, want the Anthropic entry after the Gemini outage", served, fallbacks)
	}
}

// TestChainMovesOnFromAnAnswerItCannotTranslate: a 200 whose body breaks off is
// read whole before a translated answer is written, so it is a failed attempt
// the chain moves on from, not a broken answer to the app.
func TestChainMovesOnFromAnAnswerItCannotTranslate(t *testing.T) {
	primary := anthropicEntry()
	primary.acct.Faults.MalformedRate = 1
	e := chainEnv(t, nil, primary, openAIEntry())
	served, fallbacks := e.postChat("hi")
	if served != "openai/gpt-4o" || fallbacks != "claude/claude-sonnet-4 (serverError)" {
		t.Errorf("served by %q after %q, want the OpenAI entry after the Anthropic entry's malformed answers", served, fallbacks)
	}
	if n := e.sim.Stats().Accounts[0].Requests; n != 3 {
		t.Errorf("the Anthropic account saw %d requests, want 3: the policy's two retries, then the move", n)
	}
}
