package simulator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/testkit"
)

// signature is a stream's events by type (the SSE event name, else the data's
// "type" or "object" field), runs of the same type collapsed into "name*".
func signature(t *testing.T, events []sseEvent) []string {
	t.Helper()
	var sig []string
	for _, e := range dataEvents(events) {
		name := e.Event
		if name == "" {
			name = dataType(e.Data)
		}
		if n := len(sig); n > 0 && (sig[n-1] == name || sig[n-1] == name+"*") {
			sig[n-1] = name + "*"
			continue
		}
		sig = append(sig, name)
	}
	return sig
}

// dataType names a data payload: [DONE], error, or its type/object field, or
// "chunk" for Gemini's untyped chunks.
func dataType(data string) string {
	if data == "[DONE]" {
		return data
	}
	var v struct {
		Type   string          `json:"type"`
		Object string          `json:"object"`
		Error  json.RawMessage `json:"error"`
	}
	if json.Unmarshal([]byte(data), &v) != nil {
		return "invalid-json"
	}
	switch {
	case v.Error != nil:
		return "error"
	case v.Type != "":
		return v.Type
	case v.Object != "":
		return v.Object
	}
	return "chunk"
}

// streamText joins the generated text of a stream, whatever the persona.
func streamText(t *testing.T, events []sseEvent) string {
	t.Helper()
	var b strings.Builder
	for _, e := range dataEvents(events) {
		if e.Data == "[DONE]" {
			continue
		}
		var v struct {
			Type    string `json:"type"`
			Delta   any    `json:"delta"`
			Choices []struct {
				Text  string `json:"text"`
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Candidates []struct {
				Content struct {
					Parts []struct {
						Text string `json:"text"`
					} `json:"parts"`
				} `json:"content"`
			} `json:"candidates"`
		}
		if json.Unmarshal([]byte(e.Data), &v) != nil {
			continue
		}
		for _, c := range v.Choices {
			b.WriteString(c.Text + c.Delta.Content)
		}
		for _, c := range v.Candidates {
			for _, p := range c.Content.Parts {
				b.WriteString(p.Text)
			}
		}
		switch d := v.Delta.(type) {
		case string: // Responses API
			b.WriteString(d)
		case map[string]any: // Anthropic
			if s, ok := d["text"].(string); ok {
				b.WriteString(s)
			}
		}
	}
	return b.String()
}

func TestStreams(t *testing.T) {
	tests := []struct {
		name, key, provider, path, body string
		wantSig                         []string
		wantOutput                      int
		// usage extracts the output tokens the stream reports, from its last
		// usage-bearing event.
		usage func(events []sseEvent) int64
	}{
		{
			name: "openai chat with include_usage", key: "sk-o", provider: ProviderOpenAI, path: chatPath,
			body:       `{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}],"stream":true,"stream_options":{"include_usage":true}}`,
			wantSig:    []string{"chat.completion.chunk*", "[DONE]"},
			wantOutput: 16,
			usage:      lastField("usage", "completion_tokens"),
		},
		{
			name: "deepseek chat", key: "sk-d", provider: ProviderDeepSeek, path: "/chat/completions",
			body:    `{"model":"deepseek-chat","messages":[{"role":"user","content":"hello there"}],"max_tokens":4,"stream":true}`,
			wantSig: []string{"chat.completion.chunk*", "[DONE]"}, wantOutput: 4,
		},
		{
			name: "openai legacy completions", key: "sk-o", provider: ProviderOpenAI, path: "/v1/completions",
			body:    `{"model":"gpt-3.5-turbo-instruct","prompt":"hi","max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}`,
			wantSig: []string{"text_completion*", "[DONE]"}, wantOutput: 3,
			usage: lastField("usage", "completion_tokens"),
		},
		{
			name: "openai responses", key: "sk-o", provider: ProviderOpenAI, path: "/v1/responses",
			body: `{"model":"gpt-5.5","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}],"stream":true}`,
			wantSig: []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
				"response.output_text.delta*", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"},
			wantOutput: 16,
			usage:      lastField("response", "usage", "output_tokens"),
		},
		{
			name: "anthropic messages", key: "sk-a", provider: ProviderAnthropic, path: "/v1/messages",
			body: messagesBody("claude-sonnet-4", 5) + "\n",
			wantSig: []string{"message_start", "content_block_start", "ping", "content_block_delta*", "content_block_stop",
				"message_delta", "message_stop"},
			wantOutput: 5,
			usage:      lastField("usage", "output_tokens"),
		},
		{
			name: "gemini sse", key: "sk-g", provider: ProviderGemini, path: "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
			body:    `{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":6}}`,
			wantSig: []string{"chunk*"}, wantOutput: 6,
			usage: lastField("usageMetadata", "candidatesTokenCount"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, allPersonas())
			body := tc.body
			if tc.provider == ProviderAnthropic {
				body = strings.Replace(body, `"max_tokens"`, `"stream":true,"max_tokens"`, 1)
			}
			r := h.do(t, "POST", tc.path, authHeaders(tc.provider, tc.key), body)
			if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
				t.Fatalf("%v content-type %q, want 200 text/event-stream", r, r.header.Get("Content-Type"))
			}
			events, complete := parseSSE(t, r.body)
			if !complete {
				t.Errorf("stream ends inside an event")
			}
			if diff := cmp.Diff(tc.wantSig, signature(t, events)); diff != "" {
				t.Errorf("event sequence (-want +got):\n%s", diff)
			}
			if got := len(strings.Fields(streamText(t, events))); got != tc.wantOutput {
				t.Errorf("streamed %d words, want %d", got, tc.wantOutput)
			}
			if tc.usage != nil {
				if got := tc.usage(events); got != int64(tc.wantOutput) {
					t.Errorf("reported output tokens %d, want %d", got, tc.wantOutput)
				}
			}
			var pool PoolStats
			for _, a := range h.sim.Stats().Accounts {
				for _, p := range a.Pools {
					if p.Requests > 0 {
						pool = p
					}
				}
			}
			if pool.OutputTokens != int64(tc.wantOutput) || pool.Completed != 1 {
				t.Errorf("ground truth: %d output tokens, %d completed; want %d, 1", pool.OutputTokens, pool.Completed, tc.wantOutput)
			}
		})
	}
}

// lastField finds, in the last event that has it, the number at path.
func lastField(path ...string) func([]sseEvent) int64 {
	return func(events []sseEvent) int64 {
		var found int64 = -1
		for _, e := range events {
			var v any
			if json.Unmarshal([]byte(e.Data), &v) != nil {
				continue
			}
			for _, k := range path {
				m, ok := v.(map[string]any)
				if !ok {
					v = nil
					break
				}
				v = m[k]
			}
			if n, ok := v.(float64); ok {
				found = int64(n)
			}
		}
		return found
	}
}

func TestOpenAIStreamWithoutIncludeUsageHasNoUsage(t *testing.T) {
	h := newHarness(t, allPersonas())
	r := h.do(t, "POST", chatPath, authHeaders(ProviderOpenAI, "sk-o"), `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"stream":true}`)
	if bytes.Contains(r.body, []byte(`"usage"`)) {
		t.Errorf("stream carries usage although the request did not ask for it:\n%s", r.body)
	}
}

func TestGeminiStreamFraming(t *testing.T) {
	h := newHarness(t, allPersonas())
	body := `{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":3}}`
	sse := h.do(t, "POST", "/v1beta/models/m:streamGenerateContent?alt=sse", authHeaders(ProviderGemini, "sk-g"), body)
	if n := bytes.Count(sse.body, []byte("\r\n\r\n")); n != 4 || bytes.Contains(bytes.ReplaceAll(sse.body, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("alt=sse: %d CRLF-terminated events, want 4 (3 tokens and the end) and no bare LF:\n%q", n, sse.body)
	}
	// Without alt=sse the stream is one JSON array, delivered element by element.
	arrayResp := h.do(t, "POST", "/v1beta/models/m:streamGenerateContent", authHeaders(ProviderGemini, "sk-g"), body)
	var chunks []geminiResponse
	if err := json.Unmarshal(arrayResp.body, &chunks); err != nil {
		t.Fatalf("JSON-array stream does not parse: %v\n%s", err, arrayResp.body)
	}
	var counts []int64
	for _, c := range chunks {
		counts = append(counts, c.UsageMetadata.CandidatesTokenCount)
	}
	if diff := cmp.Diff([]int64{1, 2, 3, 3}, counts); diff != "" {
		t.Errorf("candidatesTokenCount per chunk (-want +got):\n%s", diff)
	}
	if last := chunks[len(chunks)-1].Candidates[0].FinishReason; last != "MAX_TOKENS" {
		t.Errorf("last finishReason %q, want MAX_TOKENS", last)
	}
}

// TestStreamIsFlushedAndPaced reads a slow stream as it is produced: the first token
// arrives while the server is still generating, and a client that leaves is charged
// only what it received.
func TestStreamIsFlushedAndPaced(t *testing.T) {
	cfg := oneAccount(ProviderOpenAI, Limits{TokensPerMinute: 10_000})
	cfg.Accounts[0].Latency = Latency{TokensPerSecond: 0.5, OutputTokens: 4} // 2 s between tokens
	h := newHarness(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.http.URL+chatPath, strings.NewReader(
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}],"max_tokens":100,"stream":true}`))
	req.Header = authHeaders(ProviderOpenAI, "sk-test-openai")
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	var contentChunks int
	for contentChunks < 1 {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
		if strings.Contains(line, `"delta":{"content"`) {
			contentChunks++
		}
	}
	if p := h.pool(t, "gpt-4o"); p.InFlight != 1 {
		t.Fatalf("after the first token the request is not in flight (%+v): the stream was not flushed chunk by chunk", p)
	}
	cancel()
	testkit.Eventually(t, 20*time.Second, "the abandoned stream to settle", testkit.True(func() bool { return h.pool(t, "gpt-4o").Completed == 1 }))
	p := h.pool(t, "gpt-4o")
	if p.OutputTokens != 1 {
		t.Errorf("output tokens charged %d, want 1 (the client left after the first)", p.OutputTokens)
	}
	// TPM: 10 + 100 reserved at admission, settled to 10 + 1.
	r := h.call(t, chatPath, chatBody("gpt-4o", 1))
	if got := r.header.Get("x-ratelimit-remaining-tokens"); got != "9978" {
		t.Errorf("remaining tokens %s, want 10000 - 11 - 11 = 9978", got)
	}
}

func TestLatencyLowerBounds(t *testing.T) {
	cfg := oneAccount(ProviderOpenAI, Limits{})
	cfg.Accounts[0].Latency = Latency{TimeToFirstToken: Duration(50 * time.Millisecond), TokensPerSecond: 100, OutputTokens: 11}
	h := newHarness(t, cfg)
	start := time.Now()
	h.call(t, chatPath, chatBody("gpt-4o", 0))
	// 50 ms to the first token and 10 more tokens at 100/s: the simulator never
	// answers sooner (a loaded machine only makes it later).
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("answered after %v, want at least 150ms", el)
	}
}

func TestKeepAlive(t *testing.T) {
	cfg := oneAccount(ProviderDeepSeek, Limits{})
	cfg.Accounts[0].Faults.KeepAlive = Duration(600 * time.Millisecond)
	h := newHarness(t, cfg)

	r := h.call(t, chatPath, chatBody("deepseek-chat", 0))
	lines := bytes.Count(r.body, []byte("\n")) - bytes.Count(bytes.TrimLeft(r.body, "\n"), []byte("\n"))
	if r.status != 200 || lines < 2 || !json.Valid(r.body) {
		t.Errorf("non-streaming: status %d, %d leading blank lines, valid JSON %v; want 200, at least 2, true:\n%q",
			r.status, lines, json.Valid(r.body), clip(string(r.body), 200))
	}

	r = h.call(t, chatPath, `{"model":"deepseek-chat","messages":[{"role":"user","content":"x"}],"stream":true}`)
	events, _ := parseSSE(t, r.body)
	var comments int
	for _, e := range events {
		if e.Comment == "" {
			break
		}
		if e.Comment == "keep-alive" {
			comments++
		}
	}
	if comments < 2 || signature(t, events)[0] != "chat.completion.chunk*" {
		t.Errorf("streaming: %d keep-alive comments before the first chunk, then %v; want at least 2, then chunks", comments, signature(t, events))
	}
}

func TestMidStreamErrors(t *testing.T) {
	tests := []struct {
		name, provider, path, body string
		last                       string // the type of the last event
	}{
		{"openai", ProviderOpenAI, chatPath, `{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}`, "error"},
		{"responses", ProviderOpenAI, "/v1/responses", `{"model":"m","input":"x","stream":true}`, "error"},
		{"anthropic", ProviderAnthropic, "/v1/messages", `{"model":"m","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"x"}]}`, "error"},
		{"gemini", ProviderGemini, "/v1beta/models/m:streamGenerateContent?alt=sse", `{"contents":[{"parts":[{"text":"x"}]}]}`, "error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := oneAccount(tc.provider, Limits{})
			cfg.Accounts[0].Faults.MidStreamErrorRate = 1
			h := newHarness(t, cfg)
			r := h.call(t, tc.path, tc.body)
			events, _ := parseSSE(t, r.body)
			sig := signature(t, events)
			if r.status != 200 || sig[len(sig)-1] != tc.last || bytes.Contains(r.body, []byte("[DONE]")) {
				t.Fatalf("status %d, events %v; want 200 ending in %q without [DONE]", r.status, sig, tc.last)
			}
			p := h.pool(t, "m")
			if got := int64(len(strings.Fields(streamText(t, events)))); p.MidStreamErrors != 1 || p.OutputTokens != got {
				t.Errorf("mid-stream errors %d, output tokens %d; want 1 and the %d tokens delivered", p.MidStreamErrors, p.OutputTokens, got)
			}
		})
	}
}

func TestMalformedBodies(t *testing.T) {
	cfg := oneAccount(ProviderOpenAI, Limits{})
	cfg.Accounts[0].Faults.MalformedRate = 1
	h := newHarness(t, cfg)
	r := h.call(t, chatPath, chatBody("m", 0))
	if r.status != 200 || json.Valid(r.body) || len(r.body) == 0 {
		t.Errorf("non-streaming: status %d valid %v; want 200 with a truncated JSON body: %q", r.status, json.Valid(r.body), r.body)
	}
	r = h.call(t, chatPath, `{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}`)
	events, complete := parseSSE(t, r.body)
	sig := signature(t, events)
	if complete || bytes.Contains(r.body, []byte("[DONE]")) {
		t.Errorf("streaming: complete %v, events %v; want a stream cut inside an event, without [DONE]", complete, sig)
	}
	if p := h.pool(t, "m"); p.Malformed != 2 || p.Completed != 2 {
		t.Errorf("malformed %d completed %d, want 2 and 2", p.Malformed, p.Completed)
	}
}

func TestConnectionResets(t *testing.T) {
	cfg := oneAccount(ProviderAnthropic, Limits{OutputTokensPerMinute: 1000})
	cfg.Accounts[0].Faults.ResetRate = 1
	h := newHarness(t, cfg)
	req, _ := http.NewRequest(http.MethodPost, h.http.URL+"/v1/messages", strings.NewReader(messagesBody("claude-sonnet-4", 500)))
	req.Header = authHeaders(ProviderAnthropic, "sk-test-anthropic")
	resp, err := h.http.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got a %d response, want the connection reset without one", resp.StatusCode)
	}
	p := h.pool(t, "claude-sonnet-4")
	if p.Resets != 1 || p.Completed != 1 || p.InputTokens != 10 || p.OutputTokens != 0 {
		t.Errorf("stats %+v: want 1 reset, 1 completed, 10 input and no output tokens", p)
	}
	// The reservation of 500 output tokens was returned in full.
	if err := h.sim.SetFaults("sk-test-anthropic", Faults{}); err != nil {
		t.Fatal(err)
	}
	r := h.call(t, "/v1/messages", messagesBody("claude-sonnet-4", 500))
	if got := r.header.Get("anthropic-ratelimit-output-tokens-remaining"); got != "500" {
		t.Errorf("output tokens remaining %s, want 500 (1000 - this request's 500)", got)
	}
}

func TestOutageWindows(t *testing.T) {
	cfg := allPersonas()
	for i := range cfg.Accounts {
		cfg.Accounts[i].Faults.Outages = []Outage{{Start: Duration(10 * time.Second), End: Duration(20 * time.Second)}}
	}
	h := newHarness(t, cfg)
	send := func(key, provider, path, body string) response {
		return h.do(t, "POST", path, authHeaders(provider, key), body)
	}
	openai := func() response { return send("sk-o", ProviderOpenAI, chatPath, chatBody("gpt-4o", 0)) }
	anthropic := func() response {
		return send("sk-a", ProviderAnthropic, "/v1/messages", messagesBody("claude-sonnet-4", 5))
	}
	gemini := func() response {
		return send("sk-g", ProviderGemini, "/v1beta/models/m:generateContent", `{"contents":[{"parts":[{"text":"x"}]}]}`)
	}
	if r := openai(); r.status != 200 {
		t.Fatalf("before the outage: %v", r)
	}
	h.clock.Advance(10 * time.Second)
	for _, tc := range []struct {
		name   string
		send   func() response
		status int
		body   any
	}{
		{"openai", openai, 503, obj{"error": obj{"message": "The engine is currently overloaded, please try again later.", "type": "server_error", "param": nil, "code": nil}}},
		{"anthropic", anthropic, 529, obj{"type": "error", "error": obj{"type": "overloaded_error", "message": "Overloaded"}}},
		{"gemini", gemini, 503, obj{"error": obj{"code": int64(503), "status": "UNAVAILABLE", "message": "The model is overloaded. Please try again later."}}},
	} {
		r := tc.send()
		if r.status != tc.status || r.header.Get("x-sim-fault") != "outage" {
			t.Errorf("%s during the outage: %v x-sim-fault %q, want %d outage", tc.name, r, r.header.Get("x-sim-fault"), tc.status)
			continue
		}
		if diff := cmp.Diff(tc.body, decodeJSON(t, r.body)); diff != "" {
			t.Errorf("%s body (-want +got):\n%s", tc.name, diff)
		}
	}
	h.clock.Advance(10 * time.Second)
	if r := openai(); r.status != 200 {
		t.Fatalf("after the outage: %v", r)
	}
	if got := h.pool(t, "gpt-4o"); got.Rejected[ReasonInjectedFault] != 1 || got.Admitted != 2 {
		t.Errorf("openai pool %+v, want 1 injected_fault and 2 admitted", got)
	}
	// SetFaults restarts the outage clock.
	if err := h.sim.SetFaults("sk-o", Faults{Outages: []Outage{{Start: 0, End: Duration(time.Second)}}}); err != nil {
		t.Fatal(err)
	}
	if r := openai(); r.status != 503 {
		t.Errorf("right after SetFaults with an outage from 0: %v, want 503", r)
	}
}

func TestInjectedStatusErrors(t *testing.T) {
	tests := []struct {
		provider, fault string
		status          int
		headers         map[string]string
		body            any
	}{
		{ProviderOpenAI, "500", 500, nil, obj{"error": obj{"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": nil, "code": nil}}},
		{ProviderOpenAI, "429", 429, map[string]string{"retry-after": "1", "retry-after-ms": "1000"},
			obj{"error": obj{"message": "Rate limit reached for m in organization org-sim. Please try again in 1s.", "type": "requests", "param": nil, "code": "rate_limit_exceeded"}}},
		{ProviderOpenAI, FaultQuota, 429, nil, obj{"error": obj{"type": "insufficient_quota", "code": "insufficient_quota", "param": nil,
			"message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."}}},
		{ProviderDeepSeek, FaultQuota, 402, nil, obj{"error": obj{"message": "Insufficient Balance", "type": "invalid_request_error", "param": nil, "code": "insufficient_balance"}}},
		{ProviderDeepSeek, "503", 503, nil, obj{"error": obj{"message": "Server Overloaded", "type": "server_error", "param": nil, "code": nil}}},
		{ProviderAnthropic, "529", 529, nil, obj{"type": "error", "error": obj{"type": "overloaded_error", "message": "Overloaded"}}},
		{ProviderAnthropic, "429", 429, map[string]string{"retry-after": "1"}, obj{"type": "error", "error": obj{"type": "rate_limit_error",
			"message": "Number of requests has exceeded your rate limit. Please try again later."}}},
		{ProviderAnthropic, FaultQuota, 400, nil, obj{"type": "error", "error": obj{"type": "invalid_request_error",
			"message": "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}},
		{ProviderGemini, "429", 429, nil, obj{"error": obj{"code": int64(429), "status": "RESOURCE_EXHAUSTED", "message": "Resource has been exhausted (e.g. check quota).",
			"details": arr{obj{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}}}}},
		{ProviderGemini, "504", 504, nil, obj{"error": obj{"code": int64(504), "status": "DEADLINE_EXCEEDED",
			"message": "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"}}},
	}
	paths := map[string]string{ProviderOpenAI: chatPath, ProviderDeepSeek: chatPath, ProviderAnthropic: "/v1/messages",
		ProviderGemini: "/v1beta/models/m:generateContent"}
	bodies := map[string]string{ProviderOpenAI: chatBody("m", 0), ProviderDeepSeek: chatBody("m", 0), ProviderAnthropic: messagesBody("m", 5),
		ProviderGemini: `{"contents":[{"parts":[{"text":"x"}]}]}`}
	for _, tc := range tests {
		t.Run(tc.provider+"/"+tc.fault, func(t *testing.T) {
			cfg := oneAccount(tc.provider, Limits{RequestsPerMinute: 100})
			cfg.Accounts[0].Faults.ErrorRates = map[string]float64{tc.fault: 1}
			h := newHarness(t, cfg)
			r := h.call(t, paths[tc.provider], bodies[tc.provider])
			if r.status != tc.status || r.header.Get("x-sim-fault") != tc.fault {
				t.Fatalf("%v x-sim-fault %q, want %d %s", r, r.header.Get("x-sim-fault"), tc.status, tc.fault)
			}
			for k, v := range tc.headers {
				if got := r.header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if diff := cmp.Diff(tc.body, decodeJSON(t, r.body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			p := h.pool(t, "m")
			if p.Rejected[ReasonInjectedFault] != 1 || p.Admitted != 0 {
				t.Errorf("pool %+v: want 1 injected_fault, nothing admitted", p)
			}
		})
	}
}

func TestErrorRatesAreHonouredOverManyRequests(t *testing.T) {
	cfg := oneAccount(ProviderOpenAI, Limits{})
	cfg.Accounts[0].Faults.ErrorRates = map[string]float64{"500": 0.1, "503": 0.2}
	h := newHarness(t, cfg)
	counts := map[int]int{}
	for range 1000 {
		counts[h.call(t, chatPath, chatBody("m", 1)).status]++
	}
	// Binomial with n = 1000: these bounds are more than five standard deviations wide.
	if counts[500] < 50 || counts[500] > 150 || counts[503] < 130 || counts[503] > 270 || counts[200]+counts[500]+counts[503] != 1000 {
		t.Errorf("status counts %v, want about 100 x 500, 200 x 503, the rest 200", counts)
	}
}
