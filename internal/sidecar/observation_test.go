package sidecar

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
)

func TestObservationReadsEveryWindowTheMostRestrictiveBinding(t *testing.T) {
	win := func(limit, remaining int64) provider.Window {
		return provider.Window{Limit: limit, Remaining: remaining, HasLimit: true, HasRemaining: true}
	}
	lw := func(limit, remaining int64) limiter.Window {
		return limiter.Window{Limit: limit, Remaining: remaining, HasLimit: true, HasRemaining: true}
	}
	obs := func(w map[limiter.Kind]limiter.Window) limiter.Observation {
		var o limiter.Observation
		for k, v := range w {
			o.Windows[k] = v
		}
		return o
	}
	cases := []struct {
		name, provider string
		rl             provider.RateLimits
		want           limiter.Observation
	}{
		{"openai tokens are a combined TPM", limiterconfig.ProviderOpenAI,
			provider.RateLimits{Requests: win(500, 499), Tokens: win(30000, 29000)},
			obs(map[limiter.Kind]limiter.Window{limiter.KindRequests: lw(500, 499), limiter.KindTokens: lw(30000, 29000)})},
		{"anthropic combined alone is a combined TPM", limiterconfig.ProviderAnthropic,
			provider.RateLimits{Requests: win(50, 49), Tokens: win(40000, 39000)},
			obs(map[limiter.Kind]limiter.Window{limiter.KindRequests: lw(50, 49), limiter.KindTokens: lw(40000, 39000)})},
		{"anthropic combined beside input and output adds nothing", limiterconfig.ProviderAnthropic,
			provider.RateLimits{Tokens: win(8000, 1000), InputTokens: win(40000, 30000), OutputTokens: win(8000, 1000)},
			obs(map[limiter.Kind]limiter.Window{limiter.KindInputTokens: lw(40000, 30000), limiter.KindOutputTokens: lw(8000, 1000)})},
		{"anthropic combined below the input bounds the missing output", limiterconfig.ProviderAnthropic,
			provider.RateLimits{Tokens: win(8000, 1000), InputTokens: win(40000, 30000)},
			obs(map[limiter.Kind]limiter.Window{limiter.KindInputTokens: lw(40000, 30000),
				limiter.KindOutputTokens: {Remaining: 1000, HasRemaining: true}})},
		{"anthropic combined equal to the input is the input's", limiterconfig.ProviderAnthropic,
			provider.RateLimits{Tokens: win(40000, 30000), InputTokens: win(40000, 30000)},
			obs(map[limiter.Kind]limiter.Window{limiter.KindInputTokens: lw(40000, 30000)})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := observation(c.provider, c.rl)
			if !ok {
				t.Fatal("no observation")
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("observation (-want +got):\n%s", diff)
			}
		})
	}
}
