package simulator

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchConfig has limits high enough never to refuse, so the benchmarks measure the
// full admitted path: auth, parse, count, admit, generate, encode, settle.
func benchConfig() Config {
	return Config{Seed: 1, Accounts: []Account{{Key: "sk-bench", Provider: ProviderOpenAI,
		Limits: Limits{RequestsPerMinute: 1 << 40, TokensPerMinute: 1 << 50}}}}
}

const benchBody = `{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the rate limits of this account in one sentence."}],"max_tokens":64}`

// benchChat sends one chat completion to the handler and returns its answer.
func benchChat(sim http.Handler) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(benchBody))
	req.Header.Set("Authorization", "Bearer sk-bench")
	rec := httptest.NewRecorder()
	sim.ServeHTTP(rec, req)
	return rec
}

// BenchmarkChatCompletion is one non-streaming chat completion through the handler.
func BenchmarkChatCompletion(b *testing.B) {
	sim, err := New(benchConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rec := benchChat(sim)
		if rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkChatCompletionParallel runs the same on every core against one pool, the
// worst case for the pool's lock.
func BenchmarkChatCompletionParallel(b *testing.B) {
	sim, err := New(benchConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := benchChat(sim)
			if rec.Code != 200 {
				b.Errorf("status %d", rec.Code)
				return
			}
		}
	})
}

// BenchmarkChatCompletionHTTP goes over loopback HTTP with keep-alive connections,
// client and server sharing the machine, as in the limiter's benchmarks; its ns/op
// inverted is the request rate one simulator sustains here.
func BenchmarkChatCompletionHTTP(b *testing.B) {
	sim, err := New(benchConfig())
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()
	client := srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(benchBody))
			req.Header.Set("Authorization", "Bearer sk-bench")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
