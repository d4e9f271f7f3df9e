package provider

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestParseRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		h      http.Header
		want   time.Duration
		wantOK bool
	}{
		{"seconds", hdr("Retry-After", "20"), 20 * time.Second, true},
		{"zero", hdr("Retry-After", "0"), 0, true},
		{"fractional seconds", hdr("Retry-After", "1.5"), 1500 * time.Millisecond, true},
		{"padded", hdr("Retry-After", "  7 "), 7 * time.Second, true},
		{"http date", hdr("Retry-After", "Sun, 01 Mar 2026 12:00:30 GMT"), 30 * time.Second, true},
		{"rfc850 date", hdr("Retry-After", "Sunday, 01-Mar-26 12:01:00 GMT"), time.Minute, true},
		{"asctime date", hdr("Retry-After", "Sun Mar  1 12:00:05 2026"), 5 * time.Second, true},
		{"date in the past", hdr("Retry-After", "Sun, 01 Mar 2026 11:00:00 GMT"), 0, true},
		{"ms wins", hdr("Retry-After", "20", "Retry-After-Ms", "1500"), 1500 * time.Millisecond, true},
		{"fractional ms", hdr("Retry-After-Ms", "0.5"), 500 * time.Microsecond, true},
		{"garbage ms falls back", hdr("Retry-After", "3", "Retry-After-Ms", "soon"), 3 * time.Second, true},
		{"negative ms falls back", hdr("Retry-After", "3", "Retry-After-Ms", "-5"), 3 * time.Second, true},
		{"huge seconds are capped", hdr("Retry-After", "999999999999999999999"), MaxRetryAfter, true},
		{"huge ms are capped", hdr("Retry-After-Ms", "1e30"), 0, false},
		{"far date is capped", hdr("Retry-After", "Fri, 01 Jan 2100 00:00:00 GMT"), MaxRetryAfter, true},
		{"negative", hdr("Retry-After", "-1"), 0, false},
		{"plus sign", hdr("Retry-After", "+5"), 0, false},
		{"exponent", hdr("Retry-After", "1e3"), 0, false},
		{"hex", hdr("Retry-After", "0x10"), 0, false},
		{"inf", hdr("Retry-After", "Inf"), 0, false},
		{"nan", hdr("Retry-After", "NaN"), 0, false},
		{"two dots", hdr("Retry-After", "1.2.3"), 0, false},
		{"lone dot", hdr("Retry-After", "."), 0, false},
		{"garbage", hdr("Retry-After", "soon"), 0, false},
		{"go duration is not a retry-after", hdr("Retry-After", "5s"), 0, false},
		{"empty", hdr("Retry-After", ""), 0, false},
		{"absent", http.Header{}, 0, false},
		{"nil header", nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.h, testNow)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseRetryAfter = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestParseResetDuration(t *testing.T) {
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"1s", time.Second, true},
		{"6m0s", 6 * time.Minute, true},
		{"20ms", 20 * time.Millisecond, true},
		{"0.5s", 500 * time.Millisecond, true},
		{"1h2m3.5s", time.Hour + 2*time.Minute + 3500*time.Millisecond, true},
		{"30s", 30 * time.Second, true}, // Gemini RetryInfo
		{"1.5s", 1500 * time.Millisecond, true},
		{"0.000000001s", time.Nanosecond, true},
		{"0s", 0, true},
		{"12", 12 * time.Second, true}, // Azure OpenAI sends bare seconds
		{" 7s ", 7 * time.Second, true},
		{"", 0, false},
		{"abc", 0, false},
		{"-1s", 0, false},
		{"+1s", 0, false},
		{"1d", 0, false},
		{"s", 0, false},
		{"9999999999h", 0, false},
		{"99999999999999999999", 0, false},
		{"1e3s", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseResetDuration(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseResetDuration(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestClassify(t *testing.T) {
	openAIRateLimited := `{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2.5s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`
	geminiExhausted := `{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}}`
	tests := []struct {
		name     string
		provider string
		status   int
		h        http.Header
		body     string
		want     Outcome
	}{
		{"success", "openai", 200, nil, `{"usage":{}}`, Outcome{}},
		{"success 201 with retry-after", "openai", 201, hdr("Retry-After", "5"), ``, Outcome{}},
		{"openai rate limited, retry-after-ms wins", "openai", 429, hdr("Retry-After", "3", "Retry-After-Ms", "2500"), openAIRateLimited,
			Outcome{Kind: "rateLimited", Retryable: true, RetryAfter: 2500 * time.Millisecond, HasRetryAfter: true, Code: "rate_limit_exceeded"}},
		{"openai rate limited, delay from the message", "openai", 429, nil, openAIRateLimited,
			Outcome{Kind: "rateLimited", Retryable: true, RetryAfter: 2500 * time.Millisecond, HasRetryAfter: true, Code: "rate_limit_exceeded"}},
		{"openai rate limited, delay from exhausted window", "openai", 429,
			hdr("X-Ratelimit-Remaining-Requests", "10", "X-Ratelimit-Reset-Requests", "1s", "X-Ratelimit-Remaining-Tokens", "0", "X-Ratelimit-Reset-Tokens", "6m0s"),
			`{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`,
			Outcome{Kind: "rateLimited", Retryable: true, RetryAfter: 6 * time.Minute, HasRetryAfter: true, Code: "rate_limit_exceeded"}},
		{"openai insufficient quota", "openai", 429, hdr("Retry-After", "1"), `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`,
			Outcome{Kind: "quotaExhausted", RetryAfter: time.Second, HasRetryAfter: true, Code: "insufficient_quota"}},
		{"openai context length", "openai", 400, nil, `{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`,
			Outcome{Kind: "contextLengthExceeded", Code: "context_length_exceeded"}},
		{"deepseek context length by message", "deepseek", 400, nil, `{"error":{"message":"This model's maximum context length is 65536 tokens. However, you requested 70000 tokens","type":"invalid_request_error","param":null,"code":"invalid_request_error"}}`,
			Outcome{Kind: "contextLengthExceeded", Code: "invalid_request_error"}},
		{"deepseek insufficient balance", "deepseek", 402, nil, `{"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}`,
			Outcome{Kind: "quotaExhausted", Code: "invalid_request_error"}},
		{"openai bad request", "openai", 400, nil, `{"error":{"message":"Invalid value for 'temperature'","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}`,
			Outcome{Kind: "clientError", Code: "invalid_value"}},
		{"openai code falls back to type", "openai-compatible", 401, nil, `{"error":{"message":"bad key","type":"invalid_request_error","param":null,"code":null}}`,
			Outcome{Kind: "clientError", Code: "invalid_request_error"}},
		{"compatible server numeric code", "openai-compatible", 400, nil, `{"object":"error","message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","param":null,"code":400}`,
			Outcome{Kind: "contextLengthExceeded", Code: "BadRequestError"}},
		{"compatible server string error", "openai-compatible", 500, nil, `{"error":"upstream exploded"}`,
			Outcome{Kind: "serverError", Retryable: true}},
		{"openai 500", "openai", 500, nil, `{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}`,
			Outcome{Kind: "serverError", Retryable: true, Code: "server_error"}},
		{"502 html", "openai", 502, nil, `<html><body>502 Bad Gateway</body></html>`, Outcome{Kind: "serverError", Retryable: true}},
		{"504 empty", "openai", 504, nil, ``, Outcome{Kind: "serverError", Retryable: true}},
		{"other 5xx", "openai", 520, nil, ``, Outcome{Kind: "serverError", Retryable: true}},
		{"503 with retry-after date", "openai", 503, hdr("Retry-After", "Sun, 01 Mar 2026 12:01:00 GMT"), `{"error":{"message":"overloaded","type":"server_error"}}`,
			Outcome{Kind: "unavailable", Retryable: true, RetryAfter: time.Minute, HasRetryAfter: true, Code: "server_error"}},
		{"408", "openai", 408, nil, ``, Outcome{Kind: "timeout", Retryable: true}},
		{"anthropic overloaded 529", "anthropic", 529, nil, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
			Outcome{Kind: "unavailable", Retryable: true, Code: "overloaded_error"}},
		{"anthropic rate limited", "anthropic", 429, hdr("Retry-After", "12"), `{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"},"request_id":"req_1"}`,
			Outcome{Kind: "rateLimited", Retryable: true, RetryAfter: 12 * time.Second, HasRetryAfter: true, Code: "rate_limit_error"}},
		{"anthropic rate limited, delay from exhausted window", "anthropic", 429,
			hdr("Anthropic-Ratelimit-Input-Tokens-Remaining", "0", "Anthropic-Ratelimit-Input-Tokens-Reset", "2026-03-01T12:00:40Z"),
			`{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`,
			Outcome{Kind: "rateLimited", Retryable: true, RetryAfter: 40 * time.Second, HasRetryAfter: true, Code: "rate_limit_error"}},
		{"anthropic prompt too long", "anthropic", 400, nil, `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 209353 tokens > 199999 maximum"}}`,
			Outcome{Kind: "contextLengthExceeded", Code: "invalid_request_error"}},
		{"anthropic input plus max_tokens over the window", "anthropic", 400, nil, `{"type":"error","error":{"type":"invalid_request_error","message":"input length and ` + "`max_tokens`" + ` exceed context limit: 178959 + 64000 > 200000, decrease input length or ` + "`max_tokens`" + ` and try again"}}`,
			Outcome{Kind: "contextLengthExceeded", Code: "invalid_request_error"}},
		{"anthropic credit balance", "anthropic", 400, nil, `{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}`,
			Outcome{Kind: "quotaExhausted", Code: "invalid_request_error"}},
		{"anthropic other bad request", "anthropic", 400, nil, `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: 10000 > 4096, which is the maximum allowed"}}`,
			Outcome{Kind: "clientError", Code: "invalid_request_error"}},
		{"anthropic request too large", "anthropic", 413, nil, `{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}`,
			Outcome{Kind: "clientError", Code: "request_too_large"}},
		{"anthropic not found", "anthropic", 404, nil, `{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"}}`,
			Outcome{Kind: "clientError", Code: "not_found_error"}},
		{"gemini exhausted with RetryInfo", "gemini", 429, nil, geminiExhausted,
			Outcome{Kind: "rateLimited", Retryable: true, RetryAfter: 30 * time.Second, HasRetryAfter: true, Code: "RESOURCE_EXHAUSTED"}},
		{"gemini fractional RetryInfo", "gemini", 429, nil, `{"error":{"code":429,"message":"x","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.5s"}]}}`,
			Outcome{Kind: "rateLimited", Retryable: true, RetryAfter: 1500 * time.Millisecond, HasRetryAfter: true, Code: "RESOURCE_EXHAUSTED"}},
		{"gemini header beats body", "gemini", 429, hdr("Retry-After", "2"), geminiExhausted,
			Outcome{Kind: "rateLimited", Retryable: true, RetryAfter: 2 * time.Second, HasRetryAfter: true, Code: "RESOURCE_EXHAUSTED"}},
		{"gemini delay from the message", "gemini", 429, nil, `{"error":{"code":429,"message":"Quota exceeded. Please retry in 10h17m5.72s.","status":"RESOURCE_EXHAUSTED"}}`,
			Outcome{Kind: "rateLimited", Retryable: true, RetryAfter: 10*time.Hour + 17*time.Minute + 5720*time.Millisecond, HasRetryAfter: true, Code: "RESOURCE_EXHAUSTED"}},
		{"gemini token count exceeds", "gemini", 400, nil, `{"error":{"code":400,"message":"The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}`,
			Outcome{Kind: "contextLengthExceeded", Code: "INVALID_ARGUMENT"}},
		{"gemini array-wrapped error", "gemini", 400, nil, `[{"error":{"code":400,"message":"The input token count (5) exceeds the maximum number of tokens allowed (4).","status":"INVALID_ARGUMENT"}}]`,
			Outcome{Kind: "contextLengthExceeded", Code: "INVALID_ARGUMENT"}},
		{"gemini unavailable", "gemini", 503, nil, `{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}`,
			Outcome{Kind: "unavailable", Retryable: true, Code: "UNAVAILABLE"}},
		{"gemini garbage RetryInfo", "gemini", 429, nil, `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"retryDelay":"-5s"},{"retryDelay":7}]}}`,
			Outcome{Kind: "rateLimited", Retryable: true, Code: "RESOURCE_EXHAUSTED"}},
		{"truncated openai body still classifies", "openai", 429, nil, `{"error":{"message":"You exceeded your current quota, please check your plan","type":"insufficient_quota","param":null,"code":"insufficient_quota","extra":"`,
			Outcome{Kind: "quotaExhausted", Code: "insufficient_quota"}},
		{"truncated anthropic body", "anthropic", 400, nil, `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 300000 tokens > 199999 maximum"`,
			Outcome{Kind: "contextLengthExceeded", Code: "invalid_request_error"}},
		{"truncated gemini body", "gemini", 429, nil, `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"12s"}],"mess`,
			Outcome{Kind: "rateLimited", Retryable: true, RetryAfter: 12 * time.Second, HasRetryAfter: true, Code: "RESOURCE_EXHAUSTED"}},
		{"302 is the client's problem", "openai", 302, nil, ``, Outcome{Kind: "clientError"}},
		{"100 is nonsense", "openai", 100, nil, ``, Outcome{Kind: "clientError"}},
		{"negative status", "openai", -1, nil, ``, Outcome{Kind: "clientError"}},
		{"unknown provider type", "azure", 429, nil, `{"error":{"code":"insufficient_quota"}}`, Outcome{Kind: "quotaExhausted", Code: "insufficient_quota"}},
		{"deeply nested junk body", "openai", 400, nil, string(make([]byte, 0)) + `{"error":` + repeat("[", 5000) + repeat("]", 5000) + `}`, Outcome{Kind: "clientError"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.provider, tt.status, tt.h, []byte(tt.body), testNow)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Classify (-want +got):\n%s", diff)
			}
		})
	}
}

func repeat(s string, n int) string {
	b := make([]byte, 0, len(s)*n)
	for range n {
		b = append(b, s...)
	}
	return string(b)
}
