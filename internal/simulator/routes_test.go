package simulator

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// allPersonas is a config with one account per persona and small, round limits, so
// the expected header values below are easy to check by hand.
func allPersonas() Config {
	l := Limits{RequestsPerMinute: 100, TokensPerMinute: 10_000}
	return Config{Seed: 7, Accounts: []Account{
		{Key: "sk-o", Provider: ProviderOpenAI, Limits: l, Models: []Model{{Names: []string{"gpt-4o", "gpt-4o-2024-08-06"}}}},
		{Key: "sk-a", Provider: ProviderAnthropic, Limits: Limits{RequestsPerMinute: 50, InputTokensPerMinute: 6_000, OutputTokensPerMinute: 3_000},
			Models: []Model{{Names: []string{"claude-sonnet-4"}, ContextWindow: 200_000}}},
		{Key: "sk-g", Provider: ProviderGemini, Limits: l, Models: []Model{{Names: []string{"gemini-2.5-pro"}, ContextWindow: 1_000_000}}},
		{Key: "sk-d", Provider: ProviderDeepSeek, Limits: l},
	}}
}

type obj = map[string]any
type arr = []any

func TestRoutes(t *testing.T) {
	created := testStart.Unix()
	openaiUsage := func(in, out int64) obj {
		return obj{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out,
			"prompt_tokens_details": obj{"cached_tokens": int64(0)}, "completion_tokens_details": obj{"reasoning_tokens": int64(0)}}
	}
	openaiHeaders := []string{"x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
		"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens", "retry-after", "content-type"}
	anthropicHeaders := []string{"anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset",
		"anthropic-ratelimit-input-tokens-limit", "anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-input-tokens-reset",
		"anthropic-ratelimit-output-tokens-limit", "anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-output-tokens-reset",
		"anthropic-ratelimit-tokens-limit", "anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset", "content-type"}
	// Anthropic resets are instants: the fake clock's now plus the time to refill,
	// rounded up to the second.
	inSeconds := func(s int) string { return testStart.Add(time.Duration(s) * time.Second).Format(time.RFC3339) }

	tests := []struct {
		name       string
		key        string
		method     string
		path       string
		headers    http.Header // on top of the persona's auth headers
		body       string
		wantStatus int
		headerKeys []string
		wantHeader map[string]string
		wantBody   any
	}{
		{
			name: "openai chat", key: "sk-o", method: "POST", path: "/v1/chat/completions",
			body:       `{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there"}],"max_tokens":100}`,
			wantStatus: 200, headerKeys: openaiHeaders,
			// Input: 3 per request + (4 + ceil(8/4)) + (4 + ceil(11/4)) = 16; 116 reserved.
			wantHeader: map[string]string{"content-type": "application/json",
				"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "99", "x-ratelimit-reset-requests": "600ms",
				"x-ratelimit-limit-tokens": "10000", "x-ratelimit-remaining-tokens": "9884", "x-ratelimit-reset-tokens": "696ms"},
			wantBody: obj{"id": "<id>", "object": "chat.completion", "created": created, "model": "gpt-4o", "system_fingerprint": "fp_sim",
				"choices": arr{obj{"index": int64(0), "message": obj{"role": "assistant", "content": "<text:16>", "refusal": nil}, "logprobs": nil, "finish_reason": "stop"}},
				"usage":   openaiUsage(16, 16)},
		},
		{
			name: "openai chat stopped by max_completion_tokens", key: "sk-o", method: "POST", path: "/v1/chat/completions",
			body:       `{"model":"gpt-4o-2024-08-06","messages":[{"role":"user","content":[{"type":"text","text":"hello there"},{"type":"image_url","image_url":{"url":"data:,"}}]}],"max_completion_tokens":5}`,
			wantStatus: 200,
			// 3 + 4 + 3 + 85 (image) = 95.
			wantBody: obj{"id": "<id>", "object": "chat.completion", "created": created, "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_sim",
				"choices": arr{obj{"index": int64(0), "message": obj{"role": "assistant", "content": "<text:5>", "refusal": nil}, "logprobs": nil, "finish_reason": "length"}},
				"usage":   openaiUsage(95, 5)},
		},
		{
			name: "openai legacy completions default max_tokens 16", key: "sk-o", method: "POST", path: "/v1/completions",
			body:       `{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test"}`,
			wantStatus: 200,
			wantBody: obj{"id": "<id>", "object": "text_completion", "created": created, "model": "gpt-3.5-turbo-instruct", "system_fingerprint": "fp_sim",
				"choices": arr{obj{"text": "<text:16>", "index": int64(0), "logprobs": nil, "finish_reason": "stop"}},
				"usage":   openaiUsage(5, 16)},
		},
		{
			name: "openai embeddings", key: "sk-o", method: "POST", path: "/v1/embeddings",
			body:       `{"model":"text-embedding-3-small","input":["abc","defgh"],"dimensions":8}`,
			wantStatus: 200, headerKeys: openaiHeaders,
			wantHeader: map[string]string{"content-type": "application/json",
				"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "99", "x-ratelimit-reset-requests": "600ms",
				"x-ratelimit-limit-tokens": "10000", "x-ratelimit-remaining-tokens": "9997", "x-ratelimit-reset-tokens": "18ms"},
			wantBody: obj{"object": "list", "model": "text-embedding-3-small", "usage": obj{"prompt_tokens": int64(3), "total_tokens": int64(3)},
				"data": arr{obj{"object": "embedding", "index": int64(0), "embedding": "<vector:8>"}, obj{"object": "embedding", "index": int64(1), "embedding": "<vector:8>"}}},
		},
		{
			name: "openai embeddings base64", key: "sk-o", method: "POST", path: "/v1/embeddings",
			body:       `{"model":"text-embedding-3-small","input":[[1,2,3,4]],"encoding_format":"base64","dimensions":8}`,
			wantStatus: 200,
			// 8 float32 = 32 bytes = 44 base64 characters.
			wantBody: obj{"object": "list", "model": "text-embedding-3-small", "usage": obj{"prompt_tokens": int64(4), "total_tokens": int64(4)},
				"data": arr{obj{"object": "embedding", "index": int64(0), "embedding": "<base64:44>"}}},
		},
		{
			name: "openai responses incomplete at max_output_tokens", key: "sk-o", method: "POST", path: "/v1/responses",
			body:       `{"model":"gpt-5.5","input":"hello there","instructions":"be brief","max_output_tokens":4}`,
			wantStatus: 200,
			// 3 + 2 (instructions) + 4 + 3 = 12.
			wantBody: obj{"id": "<id>", "object": "response", "created_at": created, "status": "incomplete", "error": nil,
				"incomplete_details": obj{"reason": "max_output_tokens"}, "instructions": "be brief", "max_output_tokens": int64(4), "model": "gpt-5.5",
				"output": arr{obj{"id": "<id>", "type": "message", "status": "completed", "role": "assistant",
					"content": arr{obj{"type": "output_text", "text": "<text:4>", "annotations": arr{}}}}},
				"parallel_tool_calls": true, "previous_response_id": nil,
				"usage": obj{"input_tokens": int64(12), "input_tokens_details": obj{"cached_tokens": int64(0)}, "output_tokens": int64(4),
					"output_tokens_details": obj{"reasoning_tokens": int64(0)}, "total_tokens": int64(16)}},
		},
		{
			name: "openai models", key: "sk-o", method: "GET", path: "/v1/models", wantStatus: 200,
			wantBody: obj{"object": "list", "data": arr{
				obj{"id": "<id>", "object": "model", "created": int64(modelsCreated), "owned_by": "openai"},
				obj{"id": "<id>", "object": "model", "created": int64(modelsCreated), "owned_by": "openai"}}},
		},
		{
			name: "deepseek chat without /v1", key: "sk-d", method: "POST", path: "/chat/completions",
			body:       `{"model":"deepseek-chat","messages":[{"role":"user","content":"hello there"}]}`,
			wantStatus: 200, headerKeys: openaiHeaders,
			// Unstated max tokens: the generated length (16) is reserved: 10 + 16.
			wantHeader: map[string]string{"content-type": "application/json",
				"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "99", "x-ratelimit-reset-requests": "600ms",
				"x-ratelimit-limit-tokens": "10000", "x-ratelimit-remaining-tokens": "9974", "x-ratelimit-reset-tokens": "156ms"},
			wantBody: obj{"id": "<id>", "object": "chat.completion", "created": created, "model": "deepseek-chat", "system_fingerprint": "fp_sim",
				"choices": arr{obj{"index": int64(0), "message": obj{"role": "assistant", "content": "<text:16>", "refusal": nil}, "logprobs": nil, "finish_reason": "stop"}},
				"usage": obj{"prompt_tokens": int64(10), "completion_tokens": int64(16), "total_tokens": int64(26),
					"prompt_cache_hit_tokens": int64(0), "prompt_cache_miss_tokens": int64(10)}},
		},
		{
			name: "anthropic messages", key: "sk-a", method: "POST", path: "/v1/messages",
			body:       `{"model":"claude-sonnet-4","max_tokens":1024,"system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hello there"}]}]}`,
			wantStatus: 200, headerKeys: anthropicHeaders,
			// 12 input against ITPM, 1024 output against OTPM; OTPM is the tighter
			// bucket, so the tokens headers show it.
			wantHeader: map[string]string{"content-type": "application/json",
				"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49", "anthropic-ratelimit-requests-reset": inSeconds(2),
				"anthropic-ratelimit-input-tokens-limit": "6000", "anthropic-ratelimit-input-tokens-remaining": "5988", "anthropic-ratelimit-input-tokens-reset": inSeconds(1),
				"anthropic-ratelimit-output-tokens-limit": "3000", "anthropic-ratelimit-output-tokens-remaining": "1976", "anthropic-ratelimit-output-tokens-reset": inSeconds(21),
				"anthropic-ratelimit-tokens-limit": "3000", "anthropic-ratelimit-tokens-remaining": "1976", "anthropic-ratelimit-tokens-reset": inSeconds(21)},
			wantBody: obj{"id": "<id>", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
				"content": arr{obj{"type": "text", "text": "<text:16>"}}, "stop_reason": "end_turn", "stop_sequence": nil,
				"usage": obj{"input_tokens": int64(12), "cache_creation_input_tokens": int64(0), "cache_read_input_tokens": int64(0), "output_tokens": int64(16)}},
		},
		{
			name: "anthropic with bearer auth like the 1.x SDK", key: "sk-a", method: "POST", path: "/v1/messages",
			headers:    http.Header{"X-Api-Key": {""}, "Authorization": {"Bearer sk-a"}},
			body:       `{"model":"claude-sonnet-4","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`,
			wantStatus: 200,
			wantBody: obj{"id": "<id>", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
				"content": arr{obj{"type": "text", "text": "<text:3>"}}, "stop_reason": "max_tokens", "stop_sequence": nil,
				"usage": obj{"input_tokens": int64(8), "cache_creation_input_tokens": int64(0), "cache_read_input_tokens": int64(0), "output_tokens": int64(3)}},
		},
		{
			name: "anthropic count_tokens", key: "sk-a", method: "POST", path: "/v1/messages/count_tokens",
			body:       `{"model":"claude-sonnet-4","system":"be brief","messages":[{"role":"user","content":"hello there"}]}`,
			wantStatus: 200, wantBody: obj{"input_tokens": int64(12)},
		},
		{
			name: "anthropic models", key: "sk-a", method: "GET", path: "/v1/models", wantStatus: 200,
			wantBody: obj{"data": arr{obj{"type": "model", "id": "<id>", "display_name": "claude-sonnet-4", "created_at": "2023-11-14T22:13:20Z"}},
				"has_more": false, "first_id": "claude-sonnet-4", "last_id": "claude-sonnet-4"},
		},
		{
			name: "gemini generateContent", key: "sk-g", method: "POST", path: "/v1beta/models/gemini-2.5-pro:generateContent",
			body:       `{"contents":[{"role":"user","parts":[{"text":"hello there"}]}],"systemInstruction":{"parts":[{"text":"be brief"}]},"generationConfig":{"maxOutputTokens":64}}`,
			wantStatus: 200, headerKeys: append(openaiHeaders, anthropicHeaders...),
			// Gemini sends no rate-limit headers. Input: 3 + (4+2) + (4+3) = 16.
			wantHeader: map[string]string{"content-type": "application/json"},
			wantBody: obj{"candidates": arr{obj{"content": obj{"parts": arr{obj{"text": "<text:16>"}}, "role": "model"}, "finishReason": "STOP", "index": int64(0)}},
				"usageMetadata": obj{"promptTokenCount": int64(16), "candidatesTokenCount": int64(16), "totalTokenCount": int64(32)},
				"modelVersion":  "gemini-2.5-pro", "responseId": "<id>"},
		},
		{
			name: "gemini snake_case fields and key in the query", method: "POST", path: "/v1beta/models/gemini-2.5-pro:generateContent?key=sk-g",
			body:       `{"contents":[{"parts":[{"text":"hello there"}]}],"system_instruction":{"parts":[{"text":"be brief"}]},"generation_config":{"max_output_tokens":2}}`,
			wantStatus: 200,
			wantBody: obj{"candidates": arr{obj{"content": obj{"parts": arr{obj{"text": "<text:2>"}}, "role": "model"}, "finishReason": "MAX_TOKENS", "index": int64(0)}},
				"usageMetadata": obj{"promptTokenCount": int64(16), "candidatesTokenCount": int64(2), "totalTokenCount": int64(18)},
				"modelVersion":  "gemini-2.5-pro", "responseId": "<id>"},
		},
		{
			name: "gemini countTokens", key: "sk-g", method: "POST", path: "/v1beta/models/gemini-2.5-flash:countTokens",
			body:       `{"contents":[{"role":"user","parts":[{"text":"hello there"}]}]}`,
			wantStatus: 200, wantBody: obj{"totalTokens": int64(10)},
		},
		{
			name: "gemini models", key: "sk-g", method: "GET", path: "/v1beta/models", wantStatus: 200,
			wantBody: obj{"models": arr{obj{"name": "models/gemini-2.5-pro", "version": "001", "displayName": "gemini-2.5-pro",
				"inputTokenLimit": int64(1_000_000), "outputTokenLimit": int64(geminiOutputTokenLimit),
				"supportedGenerationMethods": arr{"generateContent", "countTokens"}}}},
		},

		// Credentials.
		{
			name: "openai unknown key", method: "POST", path: "/v1/chat/completions", headers: http.Header{"Authorization": {"Bearer sk-nope"}},
			body: `{}`, wantStatus: 401,
			wantBody: obj{"error": obj{"message": "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
				"type": "invalid_request_error", "param": nil, "code": "invalid_api_key"}},
		},
		{
			name: "openai no key", method: "POST", path: "/v1/chat/completions", body: `{}`, wantStatus: 401,
			wantBody: obj{"error": obj{"message": "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
				"type": "invalid_request_error", "param": nil, "code": nil}},
		},
		{
			name: "openai key sent as x-api-key", method: "POST", path: "/v1/chat/completions", headers: http.Header{"X-Api-Key": {"sk-o"}},
			body: `{}`, wantStatus: 401,
			wantBody: obj{"error": obj{"message": "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
				"type": "invalid_request_error", "param": nil, "code": nil}},
		},
		{
			name: "deepseek unknown key", method: "POST", path: "/chat/completions", headers: http.Header{"Authorization": {"Bearer sk-nope"}},
			body: `{}`, wantStatus: 401,
			wantBody: obj{"error": obj{"message": "Authentication Fails, your api key is invalid", "type": "authentication_error", "param": nil, "code": "invalid_request_error"}},
		},
		{
			name: "anthropic unknown key", method: "POST", path: "/v1/messages", headers: http.Header{"X-Api-Key": {"sk-nope"}},
			body: `{}`, wantStatus: 401,
			wantBody: obj{"type": "error", "error": obj{"type": "authentication_error", "message": "invalid x-api-key"}},
		},
		{
			name: "gemini unknown key", method: "POST", path: "/v1beta/models/gemini-2.5-pro:generateContent", headers: http.Header{"X-Goog-Api-Key": {"nope"}},
			body: `{}`, wantStatus: 400,
			wantBody: obj{"error": obj{"code": int64(400), "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
				"details": arr{obj{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
					"metadata": obj{"service": "generativelanguage.googleapis.com"}}}}},
		},
		{
			name: "gemini no key", method: "POST", path: "/v1beta/models/gemini-2.5-pro:generateContent", body: `{}`, wantStatus: 403,
			wantBody: obj{"error": obj{"code": int64(403), "status": "PERMISSION_DENIED",
				"message": "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."}},
		},

		// Routes of another persona, and no route at all.
		{
			name: "openai key on the anthropic route", key: "sk-o", method: "POST", path: "/v1/messages", body: `{}`, wantStatus: 404,
			wantBody: obj{"error": obj{"message": "Invalid URL (POST /v1/messages)", "type": "invalid_request_error", "param": nil, "code": nil}},
		},
		{
			name: "anthropic key on the openai route", key: "sk-a", method: "POST", path: "/v1/chat/completions", body: `{}`, wantStatus: 404,
			wantBody: obj{"type": "error", "error": obj{"type": "not_found_error", "message": "Invalid URL (POST /v1/chat/completions)"}},
		},
		{
			name: "gemini key on the openai route", key: "sk-g", method: "POST", path: "/v1/chat/completions", body: `{}`, wantStatus: 404,
			wantBody: obj{"error": obj{"code": int64(404), "status": "NOT_FOUND", "message": "Invalid URL (POST /v1/chat/completions)"}},
		},
		{
			name: "deepseek key on the openai-only responses route", key: "sk-d", method: "POST", path: "/v1/responses", body: `{}`, wantStatus: 404,
			wantBody: obj{"error": obj{"message": "Invalid URL (POST /v1/responses)", "type": "invalid_request_error", "param": nil, "code": nil}},
		},
		{
			name: "unknown path", key: "sk-o", method: "POST", path: "/v2/everything", body: `{}`, wantStatus: 404,
			wantBody: obj{"error": obj{"message": "Invalid URL (POST /v2/everything)", "type": "invalid_request_error", "param": nil, "code": nil}},
		},
	}
	keys := map[string]string{"sk-o": ProviderOpenAI, "sk-a": ProviderAnthropic, "sk-g": ProviderGemini, "sk-d": ProviderDeepSeek}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, allPersonas())
			hdr := http.Header{}
			if tc.key != "" {
				hdr = authHeaders(keys[tc.key], tc.key)
			}
			for k, v := range tc.headers {
				hdr[k] = v
			}
			resp := h.do(t, tc.method, tc.path, hdr, tc.body)
			if resp.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.status, tc.wantStatus, resp.body)
			}
			if tc.headerKeys != nil {
				if diff := cmp.Diff(tc.wantHeader, headerSubset(resp.header, tc.headerKeys...)); diff != "" {
					t.Errorf("headers (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tc.wantBody, decodeJSON(t, resp.body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRequestIDs checks the persona's request-id header: present and different per
// request where the provider sends one, absent for Gemini.
func TestRequestIDs(t *testing.T) {
	h := newHarness(t, allPersonas())
	for _, tc := range []struct{ key, provider, path, body, header string }{
		{"sk-o", ProviderOpenAI, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, "x-request-id"},
		{"sk-a", ProviderAnthropic, "/v1/messages", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}]}`, "request-id"},
	} {
		a := h.do(t, "POST", tc.path, authHeaders(tc.provider, tc.key), tc.body).header.Get(tc.header)
		b := h.do(t, "POST", tc.path, authHeaders(tc.provider, tc.key), tc.body).header.Get(tc.header)
		if a == "" || a == b {
			t.Errorf("%s: %s headers %q then %q, want two different ids", tc.provider, tc.header, a, b)
		}
	}
	g := h.do(t, "POST", "/v1beta/models/m:generateContent", authHeaders(ProviderGemini, "sk-g"), `{"contents":[{"parts":[{"text":"x"}]}]}`)
	if got := headerSubset(g.header, "x-request-id", "request-id"); len(got) != 0 {
		t.Errorf("gemini request-id headers %v, want none", got)
	}
}
