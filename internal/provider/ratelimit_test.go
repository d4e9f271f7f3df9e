package provider

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseRateLimits(t *testing.T) {
	tests := []struct {
		name     string
		provider string
		h        http.Header
		want     RateLimits
	}{
		{
			name: "openai, all headers", provider: "openai",
			h: hdr("X-Ratelimit-Limit-Requests", "5000", "X-Ratelimit-Remaining-Requests", "4999", "X-Ratelimit-Reset-Requests", "12ms",
				"X-Ratelimit-Limit-Tokens", "160000", "X-Ratelimit-Remaining-Tokens", "159976", "X-Ratelimit-Reset-Tokens", "6m0s"),
			want: RateLimits{
				Requests: Window{Limit: 5000, Remaining: 4999, Reset: 12 * time.Millisecond, HasLimit: true, HasRemaining: true, HasReset: true},
				Tokens:   Window{Limit: 160000, Remaining: 159976, Reset: 6 * time.Minute, HasLimit: true, HasRemaining: true, HasReset: true},
			},
		},
		{
			name: "deepseek and compatible use the OpenAI headers", provider: "deepseek",
			h:    hdr("X-Ratelimit-Remaining-Requests", "0", "X-Ratelimit-Reset-Requests", "0.5s"),
			want: RateLimits{Requests: Window{Remaining: 0, Reset: 500 * time.Millisecond, HasRemaining: true, HasReset: true}},
		},
		{
			name: "openai garbage, negative (Azure's -1) and empty values are absent", provider: "openai-compatible",
			h: hdr("X-Ratelimit-Limit-Requests", "lots", "X-Ratelimit-Remaining-Requests", "-1", "X-Ratelimit-Reset-Requests", "",
				"X-Ratelimit-Limit-Tokens", "1.5", "X-Ratelimit-Remaining-Tokens", "99999999999999999999", "X-Ratelimit-Reset-Tokens", "abc"),
			want: RateLimits{},
		},
		{
			name: "openai bare seconds reset, padded counts", provider: "openai",
			h:    hdr("X-Ratelimit-Limit-Tokens", " 100 ", "X-Ratelimit-Reset-Tokens", "1"),
			want: RateLimits{Tokens: Window{Limit: 100, Reset: time.Second, HasLimit: true, HasReset: true}},
		},
		{
			name: "openai plus sign is garbage", provider: "openai",
			h:    hdr("X-Ratelimit-Limit-Tokens", "+100"),
			want: RateLimits{},
		},
		{
			name: "anthropic, RFC 3339 resets", provider: "anthropic",
			h: hdr(
				"Anthropic-Ratelimit-Requests-Limit", "1000", "Anthropic-Ratelimit-Requests-Remaining", "999", "Anthropic-Ratelimit-Requests-Reset", "2026-03-01T12:00:01Z",
				"Anthropic-Ratelimit-Tokens-Limit", "96000", "Anthropic-Ratelimit-Tokens-Remaining", "96000", "Anthropic-Ratelimit-Tokens-Reset", "2026-03-01T13:00:00+01:00",
				"Anthropic-Ratelimit-Input-Tokens-Limit", "80000", "Anthropic-Ratelimit-Input-Tokens-Remaining", "79000", "Anthropic-Ratelimit-Input-Tokens-Reset", "2026-03-01T12:00:00.250Z",
				"Anthropic-Ratelimit-Output-Tokens-Limit", "16000", "Anthropic-Ratelimit-Output-Tokens-Remaining", "0", "Anthropic-Ratelimit-Output-Tokens-Reset", "2026-03-01T12:00:30Z",
			),
			want: RateLimits{
				Requests:     Window{Limit: 1000, Remaining: 999, Reset: time.Second, HasLimit: true, HasRemaining: true, HasReset: true},
				Tokens:       Window{Limit: 96000, Remaining: 96000, Reset: 0, HasLimit: true, HasRemaining: true, HasReset: true},
				InputTokens:  Window{Limit: 80000, Remaining: 79000, Reset: 250 * time.Millisecond, HasLimit: true, HasRemaining: true, HasReset: true},
				OutputTokens: Window{Limit: 16000, Remaining: 0, Reset: 30 * time.Second, HasLimit: true, HasRemaining: true, HasReset: true},
			},
		},
		{
			name: "anthropic past reset is now, garbage reset absent", provider: "anthropic",
			h:    hdr("Anthropic-Ratelimit-Requests-Reset", "2026-03-01T11:00:00Z", "Anthropic-Ratelimit-Tokens-Reset", "in a minute", "Anthropic-Ratelimit-Input-Tokens-Reset", "30s"),
			want: RateLimits{Requests: Window{Reset: 0, HasReset: true}},
		},
		{
			name: "anthropic ignores OpenAI headers", provider: "anthropic",
			h:    hdr("X-Ratelimit-Limit-Requests", "5"),
			want: RateLimits{},
		},
		{
			name: "gemini sends none", provider: "gemini",
			h:    hdr("X-Ratelimit-Limit-Requests", "5", "Anthropic-Ratelimit-Requests-Limit", "5"),
			want: RateLimits{},
		},
		{
			name: "nil header", provider: "openai", h: nil, want: RateLimits{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseRateLimits(tt.provider, tt.h, testNow)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRateLimits (-want +got):\n%s", diff)
			}
		})
	}
}
