package sidecar

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// BenchmarkProxyRoundTrip measures a chat completion through the in-process sidecar
// to a stub upstream over real loopback HTTP, against the same call made directly:
// the difference is what the sidecar adds (parse, count, admit, settle, copy).
func BenchmarkProxyRoundTrip(b *testing.B) {
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`))
	}))
	defer stub.Close()
	dir := b.TempDir()
	keyPath := filepath.Join(dir, "key")
	if err := os.WriteFile(keyPath, []byte("sk-bench"), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := openAIConfig(stub.URL, keyPath, limiterconfig.Limits{RequestsPerMinute: 1 << 40, TokensPerMinute: 1 << 50, MaxConcurrency: 1024})
	raw, _ := limiterconfig.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "limiter.json"), raw, 0o644); err != nil {
		b.Fatal(err)
	}
	srv := New(Options{ConfigPath: filepath.Join(dir, "limiter.json"), Logger: slog.New(slog.DiscardHandler)})
	proxy := httptest.NewServer(srv.ProxyHandler())
	defer proxy.Close()
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
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			call(b, stub.URL)
		}
	})
	b.Run("sidecar", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			call(b, proxy.URL)
		}
	})
}
