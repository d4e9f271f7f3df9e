package sidecar

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
)

// upstreamRequests is how many requests reached the simulator with the OpenAI key.
func (e *env) upstreamRequests() int64 {
	e.t.Helper()
	for _, a := range e.sim.Stats().Accounts {
		if a.Index == 0 {
			return a.Requests
		}
	}
	return 0
}

// unlistedEnv is a sidecar whose quota lists gpt-4o only and allows 5 requests a
// day, in front of a simulator account without limits (so every request the
// sidecar lets through is counted there, whatever its model).
func unlistedEnv(t *testing.T, mode string) *env {
	return newEnv(t, simulator.Config{Seed: 1, Accounts: []simulator.Account{simAccount(simOpenAIKey, "openai", simulator.Limits{})}},
		func(simURL string, keyFile func(string) string) *limiterconfig.Config {
			c := openAIConfig(simURL, keyFile(simOpenAIKey), limiterconfig.Limits{RequestsPerDay: 5})
			c.Providers[0].Models = []limiterconfig.ModelPool{{Names: []string{"gpt-4o"}, Limits: &limiterconfig.Limits{RequestsPerDay: 100}}}
			c.Providers[0].UnlistedModels = mode
			c.Queue.MaxWait = 0 // a spent daily cap does not refill within any wait
			return c
		})
}

func chatFor(model string) string {
	return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Say hello"}],"max_tokens":5}`, model)
}

// TestUnlistedModelsShareTheAccountsLimits: made-up model names, each new or
// repeated, together get no more upstream than the quota's requestsPerDay, while
// the listed model keeps its own pool.
func TestUnlistedModelsShareTheAccountsLimits(t *testing.T) {
	for _, mode := range []string{"", limiterconfig.UnlistedShareAccountLimits} {
		t.Run("mode="+mode, func(t *testing.T) {
			e := unlistedEnv(t, mode)
			var ok, refused int
			for i := range 24 {
				resp, body := e.post("/v1/chat/completions", nil, chatFor(fmt.Sprintf("made-up-%d", i%12)))
				switch resp.StatusCode {
				case http.StatusOK:
					ok++
				case http.StatusTooManyRequests:
					refused++
				default:
					t.Fatalf("request %d: %s %s", i, resp.Status, body)
				}
			}
			if got := e.upstreamRequests(); got != 5 || ok != 5 || refused != 19 {
				t.Errorf("24 requests over 12 unlisted names: %d upstream, %d answered, %d refused; want 5, 5, 19 (requestsPerDay 5)", got, ok, refused)
			}
			if resp, body := e.post("/v1/chat/completions", nil, chatFor("gpt-4o")); resp.StatusCode != http.StatusOK {
				t.Errorf("listed model after the unlisted ones used the account's cap: %s %s", resp.Status, body)
			}
			var pools []string
			for _, a := range e.state().Engine.Accounts {
				pools = append(pools, a.Pool)
			}
			if want := limiterconfig.UnlistedPool + ",gpt-4o"; strings.Join(pools, ",") != want {
				t.Errorf("pools in /state = %v, want %s", pools, want)
			}
		})
	}
}

// TestUnlistedModelsRejected: with reject, an unlisted model gets a 404 in the
// app's dialect naming the model and the listed ones, and nothing goes upstream.
func TestUnlistedModelsRejected(t *testing.T) {
	e := unlistedEnv(t, limiterconfig.UnlistedReject)
	resp, body := e.post("/v1/chat/completions", nil, chatFor("made-up"))
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unlisted model: %s %s, want 404", resp.Status, body)
	}
	var oe struct {
		Error struct{ Message, Type, Code, Param string }
	}
	if err := json.Unmarshal([]byte(body), &oe); err != nil {
		t.Fatalf("not an OpenAI error body: %v: %s", err, body)
	}
	for _, want := range []string{`"made-up"`, "gpt-4o", "unlistedModels: reject"} {
		if !strings.Contains(oe.Error.Message, want) {
			t.Errorf("message %q does not name %s", oe.Error.Message, want)
		}
	}
	if oe.Error.Code != "model_not_found" {
		t.Errorf("code = %q, want model_not_found", oe.Error.Code)
	}
	if resp, body := e.post("/v1/chat/completions", nil, chatFor("gpt-4o")); resp.StatusCode != http.StatusOK {
		t.Errorf("listed model: %s %s", resp.Status, body)
	}
	if got := e.upstreamRequests(); got != 1 {
		t.Errorf("%d requests upstream, want only the listed model's 1", got)
	}
}
