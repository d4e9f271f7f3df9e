package sidecar

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
)

func TestPromptLearnerErrsHigh(t *testing.T) {
	cases := []struct {
		name string
		// charged per learned request, for an estimate of 100 tokens each
		charged []int64
		want    int64 // the corrected estimate of 100 afterwards
	}{
		{"nothing learned keeps the estimate", nil, 100},
		{"the first charge is taken as is", []int64{80}, 80},
		{"a higher charge raises it by half the gap at once", []int64{80, 120}, 100},
		{"a lower charge lowers it by a twentieth", []int64{100, 60}, 98},
		{"an outlier is bounded", []int64{100, 10_000}, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newPromptLearner()
			for _, ch := range c.charged {
				l.learn("p/pool", 100, ch)
			}
			// Too small an estimate teaches nothing, in every case.
			l.learn("p/pool", learnFloor-1, 1)
			if got := l.correct("p/pool", 100); got != c.want {
				t.Errorf("corrected estimate = %d, want %d", got, c.want)
			}
		})
	}
}

// A pool on the estimate counter reserves, from its second request on, the prompt
// tokens the provider charged for the same prompt, not the raw estimate.
func TestPromptEstimateLearnsFromUsage(t *testing.T) {
	e := newEnv(t, simulator.Config{Seed: 1, Accounts: []simulator.Account{simAccount(simOpenAIKey, "openai", simulator.Limits{})}},
		func(simURL string, keyFile func(string) string) *limiterconfig.Config {
			c := openAIConfig(simURL, keyFile(simOpenAIKey), limiterconfig.Limits{RequestsPerMinute: 1000, TokensPerMinute: 1_000_000})
			c.Providers[0].Models = []limiterconfig.ModelPool{{Names: []string{"gpt-4o"}, Tokenizer: limiterconfig.TokenizerEstimate}}
			return c
		})
	prose := strings.Repeat("The quick brown fox jumps over the lazy dog near the river bank. ", 40)
	body := fmt.Sprintf(`{"model":"gpt-4o","messages":[{"role":"user","content":%q}],"max_tokens":50}`, prose)
	// surplus sends the request and returns the prompt tokens it reserved beyond
	// what it was charged: reserved minus the output reservation minus the input.
	var last [2]int64
	surplus := func() int64 {
		if rep, b := e.post("/v1/chat/completions", http.Header{}, body); rep.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", rep.StatusCode, b)
		}
		c := e.srv.engine.Snapshot().Accounts[0].Counters
		reserved, input := c.ReservedTokens-last[0], c.InputTokens-last[1]
		last = [2]int64{c.ReservedTokens, c.InputTokens}
		return reserved - 50 - input
	}
	got := []int64{surplus(), surplus(), surplus()}
	if got[0] == 0 {
		t.Fatalf("the raw estimate matched the charge exactly (%v); the test needs a prompt it misjudges", got)
	}
	if diff := cmp.Diff([]int64{got[0], 0, 0}, got); diff != "" {
		t.Errorf("reserved minus charged prompt tokens per request (-want +got):\n%s", diff)
	}
}
