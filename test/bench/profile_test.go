package bench

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
	"github.com/aiquota/aiquota/internal/sidecar"
	"github.com/aiquota/aiquota/internal/simulator"
)

// BenchmarkInProcess runs proxybench's workload (1 KB bodies, realistic limiter
// config, the same simulator settings) with the simulator, the sidecar and the load
// generator in one process, so that `go test -bench InProcess -cpuprofile` and
// `-memprofile` show where the limiter's time and allocations go, without a pprof
// endpoint in the limiter binary. The sidecar is built exactly as cmd/limiter builds
// it. direct vs limiter: the difference is the limiter's cost per request.
func BenchmarkInProcess(b *testing.B) {
	const key, model = "sk-bench-openai", "gpt-4o"
	opts := StackOptions{OutputTokens: 8, Model: model, APIKey: key}
	sim, err := simulator.New(SimulatorConfig(opts))
	if err != nil {
		b.Fatal(err)
	}
	simSrv := httptest.NewServer(sim)
	defer simSrv.Close()

	dir := b.TempDir()
	keyPath := filepath.Join(dir, "openai.key")
	if err := os.WriteFile(keyPath, []byte(key+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	raw, err := limiterconfig.Marshal(LimiterConfig(simSrv.URL, keyPath, model, ""))
	if err != nil {
		b.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "limiter.json")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	side := sidecar.New(sidecar.Options{ConfigPath: cfgPath, Logger: slog.New(slog.DiscardHandler)})
	if !side.Ready() {
		b.Fatal("sidecar did not load its config")
	}
	proxySrv := httptest.NewServer(side.ProxyHandler())
	defer proxySrv.Close()

	c := NewClient(256)
	// The first request through the limiter loads the tokenizer's tables; keep that
	// one-off out of the measurement.
	warm, err := newBodyTemplate(Workload{Model: model, APIKey: key, BodyBytes: 1024, MaxTokens: 64})
	if err != nil {
		b.Fatal(err)
	}
	if o := c.do(b.Context(), Target{PathLimiter, proxySrv.URL}, Workload{APIKey: key}, warm); !o.ok {
		b.Fatal(o.err)
	}
	for _, mode := range []string{ModeNonStreaming, ModeStreaming} {
		w := Workload{Model: model, APIKey: key, BodyBytes: 1024, MaxTokens: 64, Stream: mode == ModeStreaming}
		tmpl, err := newBodyTemplate(w)
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range []Target{{PathDirect, simSrv.URL}, {PathLimiter, proxySrv.URL}} {
			b.Run(mode+"/"+t.Name, func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if o := c.do(b.Context(), t, w, tmpl); !o.ok {
							b.Error(o.err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkPromptTokens is the limiter's per-request token count for this
// workload's requests, as the sidecar does it (parse, then count through a memo that
// knows the system prompt): next to the plain proxy's CPU per request it says how
// much of the limiter's extra cost is the tokenizer.
func BenchmarkPromptTokens(b *testing.B) {
	tmpl, err := newBodyTemplate(Workload{Model: "gpt-4o", BodyBytes: 1024, MaxTokens: 64})
	if err != nil {
		b.Fatal(err)
	}
	for _, tok := range []string{limiterconfig.TokenizerO200kBase, limiterconfig.TokenizerEstimate} {
		b.Run(tok, func(b *testing.B) {
			counter := provider.Counter(provider.NewMemoCounter(provider.CounterFor(tok, "gpt-4o"), 4096))
			if tok == limiterconfig.TokenizerEstimate {
				counter = provider.Estimate
			}
			var seq uint64
			b.ReportAllocs()
			for b.Loop() {
				seq++
				req, err := provider.ParseRequest(provider.DialectOpenAI, provider.OpChatCompletions, "", tmpl.body(seq))
				if err != nil {
					b.Fatal(err)
				}
				if n, err := provider.PromptTokens(context.Background(), counter, &req); err != nil || n <= 0 {
					b.Fatalf("no tokens counted: %d, %v", n, err)
				}
			}
		})
	}
}
