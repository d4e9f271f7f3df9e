package simulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// fuzzRoutes are the routes whose bodies FuzzRequest feeds, with the account that
// may call each.
var fuzzRoutes = []struct{ key, provider, path string }{
	{"sk-o", ProviderOpenAI, "/v1/chat/completions"},
	{"sk-o", ProviderOpenAI, "/v1/completions"},
	{"sk-o", ProviderOpenAI, "/v1/embeddings"},
	{"sk-o", ProviderOpenAI, "/v1/responses"},
	{"sk-d", ProviderDeepSeek, "/chat/completions"},
	{"sk-a", ProviderAnthropic, "/v1/messages"},
	{"sk-a", ProviderAnthropic, "/v1/messages/count_tokens"},
	{"sk-g", ProviderGemini, "/v1beta/models/m:generateContent"},
	{"sk-g", ProviderGemini, "/v1beta/models/m:streamGenerateContent?alt=sse"},
	{"sk-g", ProviderGemini, "/v1beta/models/m:countTokens"},
}

// FuzzRequest sends arbitrary bodies to every model route: the simulator answers
// each with a well-formed response or the persona's 4xx, never panics, and leaves
// no request in flight.
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"},7]}]}`,
		`{"model":"m","prompt":[[1,2],[3]],"max_tokens":0}`,
		`{"model":"m","input":["a",""],"encoding_format":"base64","dimensions":3}`,
		`{"model":"m","input":[{"role":"user","content":"x"},{"type":"function_call_output","output":"y"}],"max_output_tokens":2}`,
		`{"model":"m","max_tokens":3,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":null}]}`,
		`{"contents":[{"role":"model","parts":[{"text":"x"},{"inlineData":{"data":""}}]}],"generationConfig":{"maxOutputTokens":-1}}`,
		`{"generateContentRequest":{"contents":[{"parts":[{"text":"x"}]}]}}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":9223372036854775807}`,
		`{"model":1e999}`, `[]`, `null`, `{"model":"m",`, "",
	} {
		for i := range fuzzRoutes {
			f.Add(uint8(i), []byte(seed))
		}
	}
	cfg := allPersonas()
	for i := range cfg.Accounts {
		cfg.Accounts[i].Limits = Limits{}
		cfg.Accounts[i].Models = []Model{{Names: []string{"m"}, ContextWindow: 10_000}}
	}
	sim, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		req := httptest.NewRequest(http.MethodPost, rt.path, bytes.NewReader(body))
		req.Header = authHeaders(rt.provider, rt.key)
		rec := httptest.NewRecorder()
		sim.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			if ct := rec.Header().Get("Content-Type"); ct == "application/json" && !json.Valid(rec.Body.Bytes()) {
				t.Errorf("200 with invalid JSON: %q", rec.Body.String())
			}
		case 400, 404, 413, 422:
			if !json.Valid(rec.Body.Bytes()) {
				t.Errorf("%d with invalid JSON: %q", rec.Code, rec.Body.String())
			}
		default:
			t.Errorf("status %d for %s %q: %s", rec.Code, rt.path, body, rec.Body.String())
		}
		for _, a := range sim.Stats().Accounts {
			for _, p := range a.Pools {
				if p.InFlight != 0 || p.InputTokens < 0 || p.OutputTokens < 0 {
					t.Fatalf("pool %+v after a request ended", p)
				}
			}
		}
	})
}

// FuzzParseConfig: any document either parses into a config New accepts, or is
// refused with an error; nothing panics.
func FuzzParseConfig(f *testing.F) {
	def, _ := json.Marshal(DefaultConfig())
	f.Add(def)
	f.Add([]byte(`{"seed":3,"accounts":[{"key":"k","provider":"gemini","faults":{"outages":[{"start":"1s","end":"2s"}],"errorRates":{"529":0.5}}}]}`))
	f.Add([]byte(`{"accounts":[{"key":"k","provider":"openai","latency":{"tokensPerSecond":1e309}}]}`))
	f.Add([]byte(`{"accounts":[{"key":"","provider":""}]}`))
	f.Add([]byte(`nonsense`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			return
		}
		if _, err := New(cfg); err != nil {
			t.Errorf("ParseConfig accepted a config New refuses: %v", err)
		}
	})
}

// FuzzParseFaults: the admin body parser never panics, and what it accepts is valid.
func FuzzParseFaults(f *testing.F) {
	f.Add([]byte(`{"errorRates":{"500":0.5,"quota":0.5},"resetRate":0.1,"keepAlive":"1s"}`))
	f.Add([]byte(`{"outages":[{"start":"0s","end":"1h"}],"midStreamErrorRate":1}`))
	f.Add([]byte(`{"malformedRate":NaN}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		faults, err := ParseFaults(data)
		if err != nil {
			return
		}
		v := &validator{}
		v.faults("faults", &faults)
		if err := v.err(); err != nil {
			t.Errorf("ParseFaults accepted invalid faults: %v", err)
		}
	})
}

// FuzzContentTokens: counting any content never panics and never goes negative.
func FuzzContentTokens(f *testing.F) {
	for _, s := range []string{`"hello"`, `[{"type":"text","text":"x"},{"type":"image"}]`, `null`, `[1]`, `{"a":1}`, `["s"]`, `[{"text":5}]`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if n, ok := contentTokens(data); n < 0 || (!ok && n != 0) {
			t.Errorf("contentTokens(%q) = %d, %v", data, n, ok)
		}
	})
}
