package sidecar

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
)

// FuzzLoadConfig feeds arbitrary documents through the loader: it must refuse bad
// ones with an error and build a liveConfig that routes for good ones, never panic.
func FuzzLoadConfig(f *testing.F) {
	dir := f.TempDir()
	keyPath := filepath.Join(dir, "key")
	if err := os.WriteFile(keyPath, []byte("sk-fuzz\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	good := openAIConfig("http://127.0.0.1:1", keyPath, limiterconfig.Limits{RequestsPerMinute: 60})
	good.Chain = &limiterconfig.Chain{Entries: []limiterconfig.ChainEntry{{Provider: "openai-main", Model: "gpt-4o"}}, ModelAliases: []string{"default"}, DefaultPriority: 3}
	b, _ := limiterconfig.Marshal(good)
	f.Add(b)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"schemaVersion":"aiquota.dev/limiter-config/v1","providers":[{"name":"a","type":"gemini","endpoint":"https://x","keys":[{"id":"k","file":"` + keyPath + `"}],"limits":{}}],"queue":{}}`))
	f.Add([]byte(`{"schemaVersion":"aiquota.dev/limiter-config/v1","providers":[{"name":"a","type":"openai","endpoint":"https://x","keys":[{"id":"k","file":"/nonexistent"}],"limits":{}}],"queue":{}}`))
	f.Add(bytes.Repeat([]byte("["), 1000))
	f.Fuzz(func(t *testing.T, doc []byte) {
		path := filepath.Join(t.TempDir(), "limiter.json")
		if err := os.WriteFile(path, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		src, cfg, err := readSource(path)
		if err != nil {
			return
		}
		live, err := buildLiveConfig(src, cfg, 0)
		if err != nil {
			return
		}
		for _, up := range live.providers {
			first, routes, err := live.resolve(up.dialect, provider.OpChatCompletions, "gpt-4o")
			if err != nil {
				continue
			}
			if routes != nil && routes[0] != first {
				t.Fatalf("resolve's first route %+v is not the chain's first %+v", first, routes[0])
			}
			for _, r := range append(routes, first) {
				if r.up == nil || r.model == "" {
					t.Fatalf("resolve gave an empty route: %+v", r)
				}
			}
		}
		if live.defaultPriority < 1 || live.defaultPriority > 9 {
			t.Fatalf("default priority %d", live.defaultPriority)
		}
	})
}

// fuzzServer is a sidecar in front of a stub upstream that answers every call with
// a small success, for all three dialects; shape, when set, changes its config.
func fuzzServer(f *testing.F, shape func(*limiterconfig.Config)) *Server {
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Ratelimit-Remaining-Requests", r.Header.Get("X-Fuzz-Remaining"))
		_, _ = w.Write([]byte(`{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"input_tokens":3,"output_tokens":2},"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2}}`))
	}))
	f.Cleanup(stub.Close)
	path := stubConfig(f, "sk-fuzz-key", func(keyPath string) *limiterconfig.Config {
		prov := func(name, typ string) limiterconfig.Provider {
			return limiterconfig.Provider{Name: name, Type: typ, Endpoint: stub.URL, LearnFromHeaders: true, Policy: "fast",
				Keys:   []limiterconfig.Key{{ID: name, File: keyPath}},
				Limits: limiterconfig.Limits{RequestsPerMinute: 1 << 40, TokensPerMinute: 1 << 50, MaxConcurrency: 64},
				Models: []limiterconfig.ModelPool{{Names: []string{"small"}, ContextWindow: 100}}}
		}
		cfg := &limiterconfig.Config{
			SchemaVersion: limiterconfig.SchemaVersion,
			Providers:     []limiterconfig.Provider{prov("o", "openai"), prov("a", "anthropic"), prov("g", "gemini")},
			Policies:      []limiterconfig.Policy{fastPolicy("fast")},
			Queue:         &limiterconfig.Queue{MaxWait: limiterconfig.Duration(10 * time.Millisecond), MaxDepth: 4},
		}
		if shape != nil {
			shape(cfg)
		}
		return cfg
	})
	s := New(Options{ConfigPath: path, Logger: slog.New(slog.DiscardHandler), MaxBodyBytes: 1 << 16})
	if !s.Ready() {
		f.Fatal("fuzz server not ready")
	}
	return s
}

// FuzzProxyRequest sends arbitrary requests through the whole handler to a stub
// upstream: every answer is a well-formed status (errors as JSON in some dialect),
// and no input reaches the panic recovery.
func FuzzProxyRequest(f *testing.F) {
	fuzzProxy(f, fuzzServer(f, nil))
}

// FuzzChainRequest is FuzzProxyRequest through a chain over all three dialects,
// so requests are translated (the stub's one answer fits none but OpenAI's, so
// most translated answers fail and the walk moves on to the last entry).
func FuzzChainRequest(f *testing.F) {
	fuzzProxy(f, fuzzServer(f, func(c *limiterconfig.Config) {
		c.Chain = &limiterconfig.Chain{ModelAliases: []string{"gpt-4o", "claude-sonnet-4", "gemini-2.5-flash", "small"},
			FallbackOn: []string{limiterconfig.FailureServerError, limiterconfig.FailureContextLengthExceeded, limiterconfig.FailureRateLimited},
			Entries:    []limiterconfig.ChainEntry{{Provider: "a", Model: "small"}, {Provider: "g", Model: "gemini-2.5-flash"}, {Provider: "o", Model: "gpt-4o"}}}
	}))
}

func fuzzProxy(f *testing.F, s *Server) {
	h := s.ProxyHandler()
	seeds := []struct{ method, path, prio, body string }{
		{"POST", "/v1/chat/completions", "3", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`},
		{"POST", "/v1/chat/completions", "", `{"model":"small","messages":[{"role":"user","content":"` + strings.Repeat("x ", 200) + `"}]}`},
		{"POST", "/chat/completions", "x", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/v1/embeddings", "9", `{"model":"text-embedding-3-small","input":["a","b"]}`},
		{"POST", "/v1/responses", "", `{"model":"gpt-4o","input":"hi"}`},
		{"POST", "/v1/messages", "1", `{"model":"claude-sonnet-4","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/v1/messages/count_tokens", "", `{"model":"claude-sonnet-4","messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/v1beta/models/gemini-2.5-flash:generateContent?key=abc", "", `{"contents":[{"parts":[{"text":"hi"}]}]}`},
		{"POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "", `{"contents":[]}`},
		{"GET", "/v1/models", "", ``},
		{"GET", "/state", "", ``},
		{"POST", "/v1/chat/completions", "", `{"model":`},
		{"POST", "/v1/chat/completions", "", `{"model":"gpt-4o","messages":[],"max_tokens":-1}`},
		{"PUT", "/v1/messages", "", `{}`},
		{"POST", "/v1beta/models/:generateContent", "", `{}`},
		{"POST", "/v1/chat/completions", "", `{"model":"gpt-4o","n":1000000,"max_tokens":9223372036854775807,"messages":[{"role":"user","content":"hi"}]}`},
	}
	for _, sd := range seeds {
		f.Add(sd.method, sd.path, sd.prio, []byte(sd.body))
	}
	f.Fuzz(func(t *testing.T, method, path, prio string, body []byte) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#") || !validMethod(method) {
			return // not an HTTP request line a client could send
		}
		req, err := http.NewRequest(method, "http://127.0.0.1:8787"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set(PriorityHeader, prio)
		req.Header.Set("Authorization", "Bearer app-key")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 200 || rec.Code > 599 {
			t.Fatalf("status %d", rec.Code)
		}
		if rec.Code >= 400 && !json.Valid(rec.Body.Bytes()) && path != "/readyz" {
			t.Fatalf("%d error body is not JSON: %q", rec.Code, rec.Body.String())
		}
		if strings.Contains(rec.Body.String(), "sk-fuzz-key") {
			t.Fatal("key material in the response")
		}
		if n := s.panics.Load(); n != 0 {
			t.Fatalf("input reached the panic recovery: %s %s %q", method, path, body)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
