package sidecar

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// benchStub is a stub upstream: an OpenAI chat completion, an Anthropic message on
// /v1/messages, and 503 under /down.
func benchStub(b *testing.B) *httptest.Server {
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasPrefix(r.URL.Path, "/down/"):
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"message":"down","type":"server_error","code":null}}`))
		case r.URL.Path == "/v1/messages":
			_, _ = w.Write([]byte(`{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4","content":[{"type":"text","text":"Hello!"}],"stop_reason":"end_turn","usage":{"input_tokens":9,"output_tokens":3}}`))
		default:
			_, _ = w.Write([]byte(`{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`))
		}
	}))
	b.Cleanup(stub.Close)
	return stub
}

// benchSidecar starts an in-process sidecar for cfg, made by mk from a key file.
func benchSidecar(b *testing.B, mk func(keyPath string) *limiterconfig.Config) string {
	srv := New(Options{ConfigPath: stubConfig(b, "sk-bench", mk), Logger: slog.New(slog.DiscardHandler)})
	proxy := httptest.NewServer(srv.ProxyHandler())
	b.Cleanup(proxy.Close)
	return proxy.URL
}

// BenchmarkProxyRoundTrip measures a chat completion through the in-process sidecar
// to a stub upstream over real loopback HTTP, against the same call made directly:
// the difference is what the sidecar adds (parse, count, admit, settle, copy). In
// the same run: the call sent through a chain to an Anthropic-dialect entry
// (translated both ways), and through a chain whose first entry answers 503, so
// each call is a failure, a failover and a translated answer: the time from the
// primary's failure to the second entry's answer.
func BenchmarkProxyRoundTrip(b *testing.B) {
	stub := benchStub(b)
	unlimited := limiterconfig.Limits{RequestsPerMinute: 1 << 40, TokensPerMinute: 1 << 50, MaxConcurrency: 1024}
	plain := benchSidecar(b, func(key string) *limiterconfig.Config { return openAIConfig(stub.URL, key, unlimited) })
	// chained is a chain over the Anthropic-dialect entry, after an OpenAI entry
	// that is down when withDown is set.
	chained := func(withDown bool) string {
		return benchSidecar(b, func(key string) *limiterconfig.Config {
			cfg := openAIConfig(stub.URL, key, unlimited)
			claude := limiterconfig.Provider{Name: "claude", Type: limiterconfig.ProviderAnthropic, Endpoint: stub.URL,
				Keys: cfg.Providers[0].Keys, Limits: unlimited, Policy: "fast"}
			cfg.Providers = []limiterconfig.Provider{claude}
			cfg.Chain = &limiterconfig.Chain{ModelAliases: []string{"gpt-4o"}, FallbackOn: []string{limiterconfig.FailureUnavailable},
				Entries: []limiterconfig.ChainEntry{{Provider: "claude", Model: "claude-sonnet-4"}}}
			if withDown {
				cfg.Providers = append(cfg.Providers, limiterconfig.Provider{Name: "down", Type: limiterconfig.ProviderOpenAI,
					Endpoint: stub.URL + "/down", Keys: claude.Keys, Limits: unlimited, Policy: "fast"})
				cfg.Chain.Entries = append([]limiterconfig.ChainEntry{{Provider: "down", Model: "gpt-4o"}}, cfg.Chain.Entries...)
				cfg.Policies[0].Retry.MaxRetries = 0
				cfg.Policies[0].FailureThreshold = 1 << 30 // the primary stays tried
			}
			return cfg
		})
	}
	translated, failover := chained(false), chained(true)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := `{"model":"gpt-4o","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in one word."}],"max_tokens":16}`
	call := func(b *testing.B, base string) {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk-bench")
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%v %v", err, resp)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for _, bc := range []struct{ name, base string }{
		{"direct", stub.URL}, {"sidecar", plain}, {"sidecar-translated", translated}, {"sidecar-failover-translated", failover},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				call(b, bc.base)
			}
		})
	}
}
