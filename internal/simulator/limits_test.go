package simulator

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/testkit"
)

const chatPath = "/v1/chat/completions"

// chatBody is a chat request of 10 input tokens (3 + 4 + ceil(11/4)).
func chatBody(model string, maxTokens int) string {
	if maxTokens == 0 {
		return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hello there"}]}`, model)
	}
	return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hello there"}],"max_tokens":%d}`, model, maxTokens)
}

func messagesBody(model string, maxTokens int) string {
	return fmt.Sprintf(`{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":"hello there"}]}`, model, maxTokens)
}

func TestRPMRefusesThenRefills(t *testing.T) {
	h := newHarness(t, oneAccount(ProviderOpenAI, Limits{RequestsPerMinute: 3}))
	for i := range 3 {
		if r := h.call(t, chatPath, chatBody("gpt-4o", 0)); r.status != 200 {
			t.Fatalf("request %d: %v", i, r)
		}
	}
	r := h.call(t, chatPath, chatBody("gpt-4o", 0))
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("4th request: %v, want 429", r)
	}
	// One request refills every 20 s at 3 per minute.
	wantHeaders := map[string]string{"retry-after": "20", "retry-after-ms": "20000",
		"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m0s"}
	if diff := cmp.Diff(wantHeaders, headerSubset(r.header, "retry-after", "retry-after-ms", "x-ratelimit-limit-requests",
		"x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")); diff != "" {
		t.Errorf("429 headers (-want +got):\n%s", diff)
	}
	wantBody := obj{"error": obj{"type": "requests", "code": "rate_limit_exceeded", "param": nil,
		"message": "Rate limit reached for gpt-4o in organization org-sim on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more."}}
	if diff := cmp.Diff(wantBody, decodeJSON(t, r.body)); diff != "" {
		t.Errorf("429 body (-want +got):\n%s", diff)
	}

	h.clock.Advance(19 * time.Second)
	if r := h.call(t, chatPath, chatBody("gpt-4o", 0)); r.status != http.StatusTooManyRequests || r.header.Get("retry-after") != "1" {
		t.Fatalf("after 19s: %v retry-after %q, want 429 with retry-after 1", r, r.header.Get("retry-after"))
	}
	h.clock.Advance(time.Second + time.Millisecond)
	if r := h.call(t, chatPath, chatBody("gpt-4o", 0)); r.status != 200 {
		t.Fatalf("after 20s: %v, want 200", r)
	}
	p := h.pool(t, "gpt-4o")
	if got := [3]int64{p.Admitted, p.Rejected[ReasonRPM], p.Requests}; got != [3]int64{4, 2, 6} {
		t.Errorf("admitted, rejected rpm, requests = %v, want [4 2 6]", got)
	}
}

func TestTPMChargesMaxTokensAndSettles(t *testing.T) {
	h := newHarness(t, oneAccount(ProviderOpenAI, Limits{TokensPerMinute: 1000}))
	// 10 input + 500 max_tokens are reserved; 16 are generated, so 510 - 26 return.
	r := h.call(t, chatPath, chatBody("gpt-4o", 500))
	if r.status != 200 || r.header.Get("x-ratelimit-remaining-tokens") != "490" {
		t.Fatalf("first: %v remaining %q, want 200 with 490 remaining at admission", r, r.header.Get("x-ratelimit-remaining-tokens"))
	}
	// Without settlement 490 < 510 would refuse this one; after it, 974 remain.
	r = h.call(t, chatPath, chatBody("gpt-4o", 500))
	if r.status != 200 || r.header.Get("x-ratelimit-remaining-tokens") != "464" {
		t.Fatalf("second: %v remaining %q, want 200 with 974-510=464 remaining", r, r.header.Get("x-ratelimit-remaining-tokens"))
	}
	p := h.pool(t, "gpt-4o")
	if p.InputTokens != 20 || p.OutputTokens != 32 || p.PeakUsage.Tokens != 536 {
		t.Errorf("input %d output %d peak %d, want 20, 32, 536", p.InputTokens, p.OutputTokens, p.PeakUsage.Tokens)
	}

	// A request larger than the bucket can never run.
	r = h.call(t, chatPath, chatBody("gpt-4o", 5000))
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("oversized: %v, want 429", r)
	}
	wantBody := obj{"error": obj{"type": "tokens", "code": "rate_limit_exceeded", "param": nil,
		"message": "Request too large for gpt-4o in organization org-sim on tokens per min (TPM): Limit 1000, Requested 5010. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more."}}
	if diff := cmp.Diff(wantBody, decodeJSON(t, r.body)); diff != "" {
		t.Errorf("oversized body (-want +got):\n%s", diff)
	}
}

func TestAnthropicInputAndOutputBuckets(t *testing.T) {
	h := newHarness(t, oneAccount(ProviderAnthropic, Limits{InputTokensPerMinute: 1000, OutputTokensPerMinute: 100}))
	// 10 input against ITPM, max_tokens 60 against OTPM; 16 generated settle OTPM to 84.
	for i := range 2 {
		if r := h.call(t, "/v1/messages", messagesBody("claude-sonnet-4", 60)); r.status != 200 {
			t.Fatalf("request %d: %v (the first must have returned its unused 44 output tokens)", i, r)
		}
	}
	// OTPM now holds 68: max_tokens 90 is refused on output tokens.
	r := h.call(t, "/v1/messages", messagesBody("claude-sonnet-4", 90))
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("third: %v, want 429", r)
	}
	// 22 output tokens missing at 100 per minute: 13.2 s.
	wantHeaders := map[string]string{"retry-after": "14",
		"anthropic-ratelimit-output-tokens-limit": "100", "anthropic-ratelimit-output-tokens-remaining": "68",
		"anthropic-ratelimit-input-tokens-remaining": "980"}
	if diff := cmp.Diff(wantHeaders, headerSubset(r.header, "retry-after", "anthropic-ratelimit-output-tokens-limit",
		"anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-input-tokens-remaining")); diff != "" {
		t.Errorf("429 headers (-want +got):\n%s", diff)
	}
	wantBody := obj{"type": "error", "error": obj{"type": "rate_limit_error",
		"message": "This request would exceed the rate limit for your organization of 100 output tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later."}}
	if diff := cmp.Diff(wantBody, decodeJSON(t, r.body)); diff != "" {
		t.Errorf("429 body (-want +got):\n%s", diff)
	}
	if got := h.pool(t, "claude-sonnet-4").Rejected; !cmp.Equal(got, map[string]int64{ReasonOTPM: 1}) {
		t.Errorf("rejected = %v, want otpm 1", got)
	}
}

func TestGeminiRateLimitCarriesRetryInfo(t *testing.T) {
	h := newHarness(t, oneAccount(ProviderGemini, Limits{RequestsPerMinute: 2}))
	path := "/v1beta/models/gemini-2.5-flash:generateContent"
	body := `{"contents":[{"parts":[{"text":"hi"}]}]}`
	h.call(t, path, body)
	h.call(t, path, body)
	r := h.call(t, path, body)
	want := obj{"error": obj{"code": int64(429), "status": "RESOURCE_EXHAUSTED",
		"message": "You exceeded your current quota, please check your plan and billing details. Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_requests, limit: 2, model: gemini-2.5-flash. Please retry in 30s.",
		"details": arr{
			obj{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": arr{obj{
				"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel", "quotaValue": "2"}}},
			obj{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"},
		}}}
	if r.status != 429 {
		t.Fatalf("third: %v, want 429", r)
	}
	if diff := cmp.Diff(want, decodeJSON(t, r.body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
}

func TestPoolsAreIndependent(t *testing.T) {
	cfg := oneAccount(ProviderOpenAI, Limits{RequestsPerMinute: 1})
	cfg.Accounts[0].Models = []Model{{Names: []string{"family-a", "family-a-latest"}}, {Names: []string{"big"}, Limits: &Limits{RequestsPerMinute: 2}}}
	h := newHarness(t, cfg)
	for _, step := range []struct {
		model string
		want  int
	}{
		{"family-a", 200},
		{"family-a-latest", 429}, // same pool as family-a
		{"unlisted-1", 200},      // a pool of its own, with the account's limits
		{"unlisted-1", 429},
		{"unlisted-2", 200},
		{"big", 200}, // its own override
		{"big", 200},
		{"big", 429},
	} {
		if r := h.call(t, chatPath, chatBody(step.model, 0)); r.status != step.want {
			t.Fatalf("%s: %v, want %d", step.model, r, step.want)
		}
	}
	var pools []string
	for _, p := range h.sim.Stats().Accounts[0].Pools {
		pools = append(pools, fmt.Sprintf("%s:%d/%d", p.Pool, p.Admitted, p.Requests))
	}
	want := []string{"family-a:1/2", "big:2/3", "unlisted-1:1/2", "unlisted-2:1/1"}
	if diff := cmp.Diff(want, pools); diff != "" {
		t.Errorf("pools admitted/requests (-want +got):\n%s", diff)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	cfg := oneAccount(ProviderOpenAI, Limits{MaxConcurrency: 2})
	cfg.Accounts[0].Latency.TimeToFirstToken = Duration(time.Hour) // held until cancelled
	h := newHarness(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	hold := func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.http.URL+chatPath, strings.NewReader(chatBody("gpt-4o", 0)))
			req.Header = authHeaders(ProviderOpenAI, "sk-test-openai")
			if resp, err := h.http.Client().Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	hold()
	hold()
	testkit.Eventually(t, 20*time.Second, "two requests in flight", testkit.True(func() bool { return h.pool(t, "gpt-4o").InFlight == 2 }))

	r := h.call(t, chatPath, chatBody("gpt-4o", 0))
	if r.status != http.StatusTooManyRequests || r.header.Get("retry-after") != "1" {
		t.Fatalf("third concurrent: %v retry-after %q, want 429 with retry-after 1", r, r.header.Get("retry-after"))
	}
	cancel()
	wg.Wait()
	testkit.Eventually(t, 20*time.Second, "the cancelled requests to end", testkit.True(func() bool { return h.pool(t, "gpt-4o").InFlight == 0 }))
	p := h.pool(t, "gpt-4o")
	if p.MaxConcurrent != 2 || p.Rejected[ReasonConcurrency] != 1 || p.Completed != 2 || p.OutputTokens != 0 {
		t.Errorf("stats %+v, want max concurrent 2, 1 concurrency refusal, 2 completed with no output", p)
	}

	// The freed slots admit again.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	hold()
	testkit.Eventually(t, 20*time.Second, "a request admitted after the slots freed", testkit.True(func() bool { return h.pool(t, "gpt-4o").Admitted == 3 }))
	cancel()
	wg.Wait()
}

func TestDailyCapRollsAtUTCMidnight(t *testing.T) {
	h := newHarness(t, oneAccount(ProviderDeepSeek, Limits{RequestsPerDay: 2}))
	// Move to one minute before midnight UTC.
	h.clock.Advance(time.Date(2026, 3, 10, 23, 59, 0, 0, time.UTC).Sub(h.clock.Now()))
	for i := range 2 {
		if r := h.call(t, chatPath, chatBody("deepseek-chat", 0)); r.status != 200 {
			t.Fatalf("request %d: %v", i, r)
		}
	}
	r := h.call(t, chatPath, chatBody("deepseek-chat", 0))
	if r.status != 429 || r.header.Get("retry-after") != "60" || r.header.Get("retry-after-ms") != "" {
		t.Fatalf("third: %v retry-after %q retry-after-ms %q, want 429, 60, none (DeepSeek)", r, r.header.Get("retry-after"), r.header.Get("retry-after-ms"))
	}
	h.clock.Advance(59 * time.Second)
	if r := h.call(t, chatPath, chatBody("deepseek-chat", 0)); r.status != 429 {
		t.Fatalf("at 23:59:59: %v, want 429", r)
	}
	h.clock.Advance(time.Second)
	if r := h.call(t, chatPath, chatBody("deepseek-chat", 0)); r.status != 200 {
		t.Fatalf("at midnight: %v, want 200", r)
	}
	if got := h.pool(t, "deepseek-chat").Rejected[ReasonDaily]; got != 2 {
		t.Errorf("daily refusals = %d, want 2", got)
	}
}

func TestDailyTokensSettle(t *testing.T) {
	h := newHarness(t, oneAccount(ProviderOpenAI, Limits{TokensPerDay: 600}))
	// 10 + 500 reserved, 26 used: the day's count drops back to 26.
	for i := range 2 {
		if r := h.call(t, chatPath, chatBody("gpt-4o", 500)); r.status != 200 {
			t.Fatalf("request %d: %v", i, r)
		}
	}
	if r := h.call(t, chatPath, chatBody("gpt-4o", 600)); r.status != 429 {
		t.Fatalf("a request of 610 tokens against a 600 daily cap: %v, want 429", r)
	}
}

func TestContextWindow(t *testing.T) {
	cfg := allPersonas()
	for i := range cfg.Accounts {
		cfg.Accounts[i].Models = append(cfg.Accounts[i].Models, Model{Names: []string{"tiny"}, ContextWindow: 100})
	}
	h := newHarness(t, cfg)
	tests := []struct {
		name, provider, key, path, body string
		wantStatus                      int
		want                            any
	}{
		{"openai", ProviderOpenAI, "sk-o", chatPath, chatBody("tiny", 91), 400,
			obj{"error": obj{"type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded",
				"message": "This model's maximum context length is 100 tokens. However, you requested 101 tokens (10 in the messages, 91 in the completion). Please reduce the length of the messages or completion."}}},
		{"anthropic", ProviderAnthropic, "sk-a", "/v1/messages", messagesBody("tiny", 91), 400,
			obj{"type": "error", "error": obj{"type": "invalid_request_error",
				"message": "input length and `max_tokens` exceed context limit: 10 + 91 > 100, decrease input length or `max_tokens` and try again"}}},
		{"gemini", ProviderGemini, "sk-g", "/v1beta/models/tiny:generateContent",
			`{"contents":[{"parts":[{"text":"hello there"}]}],"generationConfig":{"maxOutputTokens":91}}`, 400,
			obj{"error": obj{"code": int64(400), "status": "INVALID_ARGUMENT",
				"message": "The input token count (10) plus max output tokens (91) exceeds the maximum number of tokens allowed (100)."}}},
		{"deepseek fits exactly", ProviderDeepSeek, "sk-d", chatPath, chatBody("tiny", 90), 200, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(t, "POST", tc.path, authHeaders(tc.provider, tc.key), tc.body)
			if r.status != tc.wantStatus {
				t.Fatalf("%v, want %d", r, tc.wantStatus)
			}
			if tc.want != nil {
				if diff := cmp.Diff(tc.want, decodeJSON(t, r.body)); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			}
		})
	}
	for _, a := range h.sim.Stats().Accounts {
		p, _ := a.Pool("tiny")
		want := int64(1)
		if a.Provider == ProviderDeepSeek {
			want = 0
		}
		if p.Rejected[ReasonContext] != want {
			t.Errorf("%s: context refusals %d, want %d", a.Provider, p.Rejected[ReasonContext], want)
		}
	}
}

func TestUnstatedMaxTokensStopsAtTheWindow(t *testing.T) {
	cfg := oneAccount(ProviderOpenAI, Limits{})
	cfg.Accounts[0].Models = []Model{{Names: []string{"tiny"}, ContextWindow: 15}}
	h := newHarness(t, cfg)
	r := h.call(t, chatPath, chatBody("tiny", 0))
	got := decodeJSON(t, r.body).(obj)
	usage, choice := got["usage"].(obj), got["choices"].([]any)[0].(obj)
	if usage["completion_tokens"] != int64(5) || choice["finish_reason"] != "length" {
		t.Errorf("usage %v finish %v, want 5 completion tokens (15 - 10 input) and finish_reason length", usage, choice["finish_reason"])
	}
}

func TestHeadersOnEveryResponseOfAPool(t *testing.T) {
	h := newHarness(t, oneAccount(ProviderOpenAI, Limits{RequestsPerMinute: 10, TokensPerMinute: 1000}))
	// A refused request (bad max_tokens) still shows the pool's buckets, untouched.
	r := h.call(t, chatPath, `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"max_tokens":0}`)
	want := map[string]string{"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "10", "x-ratelimit-reset-requests": "0s",
		"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "1000", "x-ratelimit-reset-tokens": "0s"}
	if r.status != 400 {
		t.Fatalf("%v, want 400", r)
	}
	if diff := cmp.Diff(want, headerSubset(r.header, "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
		"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if got := h.pool(t, "gpt-4o").Rejected[ReasonBadRequest]; got != 1 {
		t.Errorf("bad_request refusals = %d, want 1", got)
	}
}
