package sidecar

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
)

// TestContextWindowFromCatalogue: a pool's window is its own, else the model
// catalogue's, else none. A prompt of about 140K tokens (o200k counts about 140K,
// the character estimate about 175K) reaches a 1M-window model and a model nobody
// knows, where the limiter once assumed 128K and refused it; a catalogued 128K
// model and a pool that sets 100K refuse it locally; a pool that sets a larger
// window than the catalogue's lets it through.
func TestContextWindowFromCatalogue(t *testing.T) {
	simAcct := simAccount(simOpenAIKey, "openai", simulator.Limits{})
	for name, window := range map[string]int64{"gpt-4.1": 1_047_576, "my-finetune": 1_000_000, "gpt-4o-mini": 200_000} {
		simAcct.Models = append(simAcct.Models, simulator.Model{Names: []string{name}, ContextWindow: window})
	}
	e := newEnv(t, simulator.Config{Seed: 9, Accounts: []simulator.Account{simAcct}}, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
		c := openAIConfig(simURL, keyFile(simOpenAIKey), limiterconfig.Limits{})
		c.Providers[0].Models = []limiterconfig.ModelPool{
			{Names: []string{"gpt-4.1-mini"}, ContextWindow: 100_000},
			{Names: []string{"gpt-4o-mini"}, ContextWindow: 200_000},
		}
		return c
	})
	prompt := strings.Repeat("word ", 140_000)
	got := map[string]int{}
	for _, model := range []string{"gpt-4.1", "my-finetune", "gpt-4o", "gpt-4.1-mini", "gpt-4o-mini"} {
		resp, body := e.post("/v1/chat/completions", nil, `{"model":"`+model+`","max_tokens":100,"messages":[{"role":"user","content":"`+prompt+`"}]}`)
		got[model] = resp.StatusCode
		if resp.StatusCode == http.StatusBadRequest && !strings.Contains(body, "checked by the aiquota limiter") {
			t.Errorf("%s: a 400 the limiter did not give: %.300s", model, body)
		}
	}
	want := map[string]int{
		"gpt-4.1":      200, // catalogue: 1,047,576
		"my-finetune":  200, // unknown: the provider decides
		"gpt-4o":       400, // catalogue: 128,000
		"gpt-4.1-mini": 400, // the pool's 100,000 wins over the catalogue's 1,047,576
		"gpt-4o-mini":  200, // the pool's 200,000 wins over the catalogue's 128,000
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status per model (-want +got):\n%s", diff)
	}
}
