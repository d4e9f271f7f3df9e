package provider

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Window is one rate-limit window as a provider reports it. Each Has* says whether
// the header was present and sane; a missing, negative or garbage value leaves it
// false rather than guessing.
type Window struct {
	Limit, Remaining int64
	// Reset is the time until the window is full again.
	Reset                            time.Duration
	HasLimit, HasRemaining, HasReset bool
}

// RateLimits are the provider's rate-limit headers: ground truth that corrects the
// limiter's local buckets and reveals the account's real tier.
type RateLimits struct {
	Requests, Tokens, InputTokens, OutputTokens Window
}

// Header names, canonical so that http.Header lookups do not allocate.
var (
	// platform.openai.com/docs/guides/rate-limits, "Rate limits in headers".
	openAIWindows = [2][3]string{
		{"X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests"},
		{"X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens"},
	}
	// docs.claude.com/en/api/rate-limits, "Response headers": resets are RFC 3339.
	anthropicWindows = [4][3]string{
		{"Anthropic-Ratelimit-Requests-Limit", "Anthropic-Ratelimit-Requests-Remaining", "Anthropic-Ratelimit-Requests-Reset"},
		{"Anthropic-Ratelimit-Tokens-Limit", "Anthropic-Ratelimit-Tokens-Remaining", "Anthropic-Ratelimit-Tokens-Reset"},
		{"Anthropic-Ratelimit-Input-Tokens-Limit", "Anthropic-Ratelimit-Input-Tokens-Remaining", "Anthropic-Ratelimit-Input-Tokens-Reset"},
		{"Anthropic-Ratelimit-Output-Tokens-Limit", "Anthropic-Ratelimit-Output-Tokens-Remaining", "Anthropic-Ratelimit-Output-Tokens-Reset"},
	}
)

// ParseRateLimits reads the provider's rate-limit headers. OpenAI-dialect
// providers send x-ratelimit-{limit,remaining,reset}-{requests,tokens}, the reset
// a Go-style duration; Anthropic sends
// anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset},
// the reset an RFC 3339 time, read here as the duration from now (0 once past).
// Gemini sends none. Anthropic may round remaining token counts to the thousand.
func ParseRateLimits(providerType string, h http.Header, now time.Time) RateLimits {
	var rl RateLimits
	switch DialectOf(providerType) {
	case DialectOpenAI:
		rl.Requests = openAIWindow(h, &openAIWindows[0])
		rl.Tokens = openAIWindow(h, &openAIWindows[1])
	case DialectAnthropic:
		rl.Requests = anthropicWindow(h, &anthropicWindows[0], now)
		rl.Tokens = anthropicWindow(h, &anthropicWindows[1], now)
		rl.InputTokens = anthropicWindow(h, &anthropicWindows[2], now)
		rl.OutputTokens = anthropicWindow(h, &anthropicWindows[3], now)
	}
	return rl
}

func openAIWindow(h http.Header, names *[3]string) Window {
	var w Window
	w.Limit, w.HasLimit = headerCount(h, names[0])
	w.Remaining, w.HasRemaining = headerCount(h, names[1])
	w.Reset, w.HasReset = ParseResetDuration(h.Get(names[2]))
	return w
}

func anthropicWindow(h http.Header, names *[3]string, now time.Time) Window {
	var w Window
	w.Limit, w.HasLimit = headerCount(h, names[0])
	w.Remaining, w.HasRemaining = headerCount(h, names[1])
	if v := strings.TrimSpace(h.Get(names[2])); v != "" {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			w.Reset, w.HasReset = max(t.Sub(now), 0), true
		}
	}
	return w
}

// headerCount reads a non-negative integer header. Azure OpenAI sends -1 for
// "no limit reported"; that and any other negative or garbage value is absent.
func headerCount(h http.Header, name string) (int64, bool) {
	v := strings.TrimSpace(h.Get(name))
	if v == "" || v[0] == '+' || v[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// exhaustedReset is the longest reset among windows with nothing remaining: how
// long a 429 without retry advice has to wait at least.
func (rl RateLimits) exhaustedReset() (time.Duration, bool) {
	var d time.Duration
	found := false
	for _, w := range [...]Window{rl.Requests, rl.Tokens, rl.InputTokens, rl.OutputTokens} {
		if w.HasRemaining && w.Remaining == 0 && w.HasReset {
			d, found = max(d, w.Reset), true
		}
	}
	return d, found
}
