package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

var requestSeeds = map[Dialect][]string{
	DialectOpenAI: {
		`{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi \"there\"\n\u00e9"}],"max_tokens":256}`,
		`{"model":"o3","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"u","detail":"low"}}]}],"max_completion_tokens":5000,"stream":true,"stream_options":{"include_usage":true},"n":3}`,
		`{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}]}`,
		`{"model":"m","prompt":["a",[1,2,3]],"input":[[1],[2]],"best_of":2}`,
		`{"model":"gpt-5","instructions":"x","input":[{"role":"user","content":[{"type":"input_text","text":"hello"}]},{"type":"function_call_output","output":[{"type":"x","output":"y"}]}],"max_output_tokens":9}`,
		`{"model":1e400,"max_tokens":-0,"n":1.0}`,
		`{"mod\u0065l":"a","Model":"b","model":"c"}`,
		`[`, ``, `null`, `{"messages":[[[[[[[[]]]]]]]]}`,
	},
	DialectAnthropic: {
		`{"model":"claude-opus-4-7","max_tokens":1024,"stream":true,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"text","text":"Look:"},{"type":"image","source":{}},{"type":"document","source":{"type":"text","data":"d"}}]},{"role":"user","content":[{"type":"tool_result","content":[{"type":"tool_result","content":[{"type":"text","text":"2"}]}]}]}],"tools":[{"name":"calc","input_schema":{}}]}`,
		`{"model":"c","max_tokens":10,"system":"sys","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"c","max_tokens":99999999999999999999,"messages":[]}`,
		`{"model":"c","messages":[{"role":"user","content":null}]}`,
	},
	DialectGemini: {
		`{"systemInstruction":{"parts":[{"text":"Be a cat."}]},"contents":[{"role":"user","parts":[{"text":"Hello"},{"inlineData":{}}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":{}}]}],"generationConfig":{"maxOutputTokens":2048,"candidateCount":2}}`,
		`{"system_instruction":{"parts":{"text":"sys"}},"contents":[{"parts":[{"text":"Hi"}]}],"generation_config":{"max_output_tokens":64}}`,
		`{"generateContentRequest":{"contents":[{"parts":[{"text":"count me"}]}]}}`,
		`{"contents":"x","generationConfig":{"maxOutputTokens":-1}}`,
	},
}

var dialectOps = map[Dialect][]Operation{
	DialectOpenAI:    {OpChatCompletions, OpCompletions, OpEmbeddings, OpResponses},
	DialectAnthropic: {OpMessages, OpCountTokens},
	DialectGemini:    {OpGenerateContent, OpStreamGenerateContent, OpGeminiCountTokens},
}

func fuzzParseRequest(f *testing.F, d Dialect) {
	for _, s := range requestSeeds[d] {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, op := range dialectOps[d] {
			r, err := ParseRequest(d, op, "path-model", body)
			if err != nil {
				var re *RequestError
				if !errors.As(err, &re) || re.Status != 400 || re.Message == "" {
					t.Fatalf("%v: error %v is not a usable RequestError", op, err)
				}
				if r != (Request{Dialect: d, Op: op}) {
					t.Fatalf("%v: failed parse returned %+v", op, r)
				}
				continue
			}
			if !json.Valid(body) {
				t.Fatalf("%v: accepted invalid JSON", op)
			}
			if r.MaxOutputTokens < 0 || r.MaxOutputTokens > math.MaxInt32 || r.Choices < 0 || r.Choices > maxChoicesLimit ||
				r.PromptParts < 0 || r.FixedPromptTokens < 0 {
				t.Fatalf("%v: out-of-range fields %+v", op, r)
			}
			if len(r.PromptText) > len(body) {
				t.Fatalf("%v: prompt text (%d bytes) longer than the body (%d)", op, len(r.PromptText), len(body))
			}
			if d != DialectGemini && r.Model == "" {
				t.Fatalf("%v: accepted without a model", op)
			}
			out, err := SetModel(d, body, "new-model")
			if err != nil || !json.Valid(out) {
				t.Fatalf("%v: SetModel on an accepted body: %v, %s", op, err, out)
			}
			if d != DialectGemini {
				if r2, err := ParseRequest(d, op, "", out); err == nil && r2.Model != "new-model" {
					t.Fatalf("%v: after SetModel the model is %q", op, r2.Model)
				}
			}
			if d == DialectOpenAI {
				su, err := EnableStreamUsage(body)
				if err != nil || !json.Valid(su) {
					t.Fatalf("EnableStreamUsage on an accepted body: %v, %s", err, su)
				}
			}
		}
	})
}

func FuzzParseRequestOpenAI(f *testing.F)    { fuzzParseRequest(f, DialectOpenAI) }
func FuzzParseRequestAnthropic(f *testing.F) { fuzzParseRequest(f, DialectAnthropic) }
func FuzzParseRequestGemini(f *testing.F)    { fuzzParseRequest(f, DialectGemini) }

func FuzzStreamTracker(f *testing.F) {
	anth := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
	seeds := []string{
		openAIChunk1 + keepAlive + openAIChunk2 + openAIChunk3 + openAIUsageChunk + openAIDone,
		crlf(openAIChunk1 + openAIUsageChunk + openAIDone),
		cr(openAIUsageChunk + keepAlive),
		anth,
		"data: {\"usageMetadata\":{\"promptTokenCount\":8}}\r\n\r\n",
		"[{\"usageMetadata\":{\"promptTokenCount\":8}},{\"error\":{\"status\":\"UNAVAILABLE\"}}]",
		"\r\r\n\n: x\rdata:\r\n\r\n",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i), uint16(len(s)/2), uint16(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, sel uint8, cut uint16, step uint16) {
		d := []Dialect{DialectOpenAI, DialectAnthropic, DialectGemini}[int(sel)%3]
		strip := sel&4 != 0
		c := int(cut) % (len(in) + 1)
		st := int(step)%64 + 1
		whole := runBytes(d, strip, in)
		halves := runBytes(d, strip, in[:c], in[c:])
		var steps [][]byte
		for i := 0; i < len(in); i += st {
			steps = append(steps, in[i:min(i+st, len(in))])
		}
		stepped := runBytes(d, strip, steps...)
		if whole != halves || whole != stepped {
			t.Fatalf("result depends on how the stream is cut:\nwhole   %+v\nhalves  %+v\nstepped %+v", whole, halves, stepped)
		}
		if !strip || d != DialectOpenAI {
			if whole.Forwarded != string(in) {
				t.Fatalf("observing tracker changed the bytes:\nin  %q\nout %q", in, whole.Forwarded)
			}
		} else {
			if len(whole.Forwarded) > len(in) {
				t.Fatalf("stripping tracker added bytes")
			}
			if !bytes.Contains(in, []byte("usage")) && whole.Forwarded != string(in) {
				t.Fatalf("stripped a stream with no usage in it:\nin  %q\nout %q", in, whole.Forwarded)
			}
		}
		if u := whole.Usage; u.InputTokens < 0 || u.OutputTokens < 0 || u.CachedInputTokens < 0 {
			t.Fatalf("negative usage %+v", u)
		}
		if whole.Failed && !slices.Contains(failureKinds, whole.Kind) {
			t.Fatalf("unknown failure kind %q", whole.Kind)
		}
	})
}

func runBytes(d Dialect, strip bool, chunks ...[]byte) streamResult {
	// Writes must not depend on the caller's buffer surviving: hand each chunk
	// over in a scratch copy that is clobbered afterwards.
	tr := NewStreamTracker(d, strip)
	var out bytes.Buffer
	for _, c := range chunks {
		scratch := append([]byte(nil), c...)
		out.Write(tr.Write(scratch))
		for i := range scratch {
			scratch[i] = '#'
		}
	}
	return finish(tr, &out)
}

var failureKinds = []string{"serverError", "unavailable", "timeout", "connectionError", "rateLimited", "circuitOpen", "contextLengthExceeded", "quotaExhausted"}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range [][2]string{
		{"", "20"}, {"", "1.5"}, {"1500", "3"}, {"-5", "3"}, {"soon", "Sun, 01 Mar 2026 12:00:30 GMT"},
		{"", "Sunday, 01-Mar-26 12:01:00 GMT"}, {"", "-1"}, {"1e30", ""}, {"", "999999999999999999999"}, {"", "Inf"}, {"", "0x10"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, ms, ra string) {
		h := http.Header{}
		h.Set("Retry-After-Ms", ms)
		h.Set("Retry-After", ra)
		d, ok := ParseRetryAfter(h, testNow)
		if d < 0 || d > MaxRetryAfter || (!ok && d != 0) {
			t.Fatalf("ParseRetryAfter(ms=%q, ra=%q) = %v, %v", ms, ra, d, ok)
		}
	})
}

func FuzzParseResetDuration(f *testing.F) {
	for _, s := range []string{"1s", "6m0s", "20ms", "0.5s", "1h2m3.5s", "", "abc", "-1s", "12", "30s", "1.5s", "9999999999h", ".5s", "1.s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseResetDuration(s)
		if d < 0 || (!ok && d != 0) {
			t.Fatalf("ParseResetDuration(%q) = %v, %v", s, d, ok)
		}
	})
}

func FuzzParseRateLimits(f *testing.F) {
	f.Add("openai", "5000", "4999", "12ms", "2026-03-01T12:00:01Z")
	f.Add("anthropic", "1000", "-1", "6m0s", "2026-03-01T13:00:00+01:00")
	f.Add("deepseek", "1.5", "99999999999999999999", "abc", "garbage")
	f.Add("gemini", "", "", "", "")
	f.Fuzz(func(t *testing.T, provider, limit, remaining, reset, resetTime string) {
		h := http.Header{}
		for _, n := range openAIWindows {
			h.Set(n[0], limit)
			h.Set(n[1], remaining)
			h.Set(n[2], reset)
		}
		for _, n := range anthropicWindows {
			h.Set(n[0], limit)
			h.Set(n[1], remaining)
			h.Set(n[2], resetTime)
		}
		rl := ParseRateLimits(provider, h, testNow)
		for _, w := range []Window{rl.Requests, rl.Tokens, rl.InputTokens, rl.OutputTokens} {
			if w.Limit < 0 || w.Remaining < 0 || w.Reset < 0 ||
				(!w.HasLimit && w.Limit != 0) || (!w.HasRemaining && w.Remaining != 0) || (!w.HasReset && w.Reset != 0) {
				t.Fatalf("bad window %+v", w)
			}
		}
	})
}

func FuzzClassify(f *testing.F) {
	bodies := []string{
		`{"error":{"message":"Please try again in 2.5s.","type":"tokens","code":"rate_limit_exceeded"}}`,
		`{"error":{"code":"insufficient_quota"}}`,
		`{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 209353 tokens > 199999 maximum"}}`,
		`{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}}`,
		`[{"error":{"code":400,"message":"The input token count (5) exceeds the maximum number of tokens allowed (4).","status":"INVALID_ARGUMENT"}}]`,
		`{"error":"x"}`, `<html>`, ``, `{"error":{"message":"retry in 99999999999h"`,
	}
	for i, b := range bodies {
		f.Add([]string{"openai", "anthropic", "gemini", "deepseek"}[i%4], []int{429, 400, 503, 529, 500, 402, 200, 302, 408}[i%9], []byte(b), "", "2")
	}
	f.Fuzz(func(t *testing.T, provider string, status int, body []byte, ms, ra string) {
		h := http.Header{}
		h.Set("Retry-After-Ms", ms)
		h.Set("Retry-After", ra)
		h.Set("X-Ratelimit-Remaining-Tokens", "0")
		h.Set("X-Ratelimit-Reset-Tokens", ra)
		o := Classify(provider, status, h, body, testNow)
		if status >= 200 && status < 300 {
			if o != (Outcome{}) {
				t.Fatalf("2xx classified as %+v", o)
			}
			return
		}
		if o.Kind != KindClientError && !slices.Contains(failureKinds, o.Kind) {
			t.Fatalf("unknown kind %q", o.Kind)
		}
		retryable := map[string]bool{"rateLimited": true, "serverError": true, "unavailable": true, "timeout": true}
		if o.Retryable != retryable[o.Kind] {
			t.Fatalf("kind %q with Retryable %v", o.Kind, o.Retryable)
		}
		if o.RetryAfter < 0 || o.RetryAfter > MaxRetryAfter || (!o.HasRetryAfter && o.RetryAfter != 0) {
			t.Fatalf("bad retry advice %v %v", o.RetryAfter, o.HasRetryAfter)
		}
		if len(o.Code) > maxCodeBytes {
			t.Fatalf("code of %d bytes", len(o.Code))
		}
	})
}

func FuzzParseUsage(f *testing.F) {
	for _, s := range []string{
		`{"usage":{"prompt_tokens":19,"completion_tokens":10,"prompt_tokens_details":{"cached_tokens":8}}}`,
		`{"usage":{"input_tokens":50,"cache_creation_input_tokens":200,"cache_read_input_tokens":1000,"output_tokens":75}}`,
		`{"usageMetadata":{"promptTokenCount":30,"candidatesTokenCount":12,"thoughtsTokenCount":100}}`,
		`[{"usageMetadata":{"promptTokenCount":5}}]`, `{"usage":{"prompt_tokens":1e300}}`,
	} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, body []byte, sel uint8) {
		d := []Dialect{DialectOpenAI, DialectAnthropic, DialectGemini}[int(sel)%3]
		u, ok := ParseUsage(d, body)
		if u.InputTokens < 0 || u.OutputTokens < 0 || u.CachedInputTokens < 0 || u.CachedInputTokens > u.InputTokens || (!ok && u != (Usage{})) {
			t.Fatalf("ParseUsage = %+v, %v", u, ok)
		}
	})
}

func FuzzMemoCounter(f *testing.F) {
	for _, s := range []string{"a\nb\n  c\n\nd\n/e\n \n f\n\u00a0g\nh", "x.\n/y\n", "line\r\nnext\rthird\n\tfourth", "  \n\n  x", "<|endoftext|>\n1234567", "+",
		"Hello world, it's 2026. Don't STOP now: e.g. x.y A Word  two  spaces 123 abc's 'quoted' text", "a  b\t c\u00a0d e!f ?g (h) [i] {j} k#l", "I'M HERE. You're there; they'll see 3rd 4th"} {
		f.Add(s)
	}
	m := NewMemoCounter(o200k(), 256)
	mcl := NewMemoCounter(CounterFor(limiterconfig.TokenizerCl100kBase, ""), 256)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := countOf(m, s), countOf(o200k(), s); got != want {
			t.Fatalf("o200k_base: memo %d, direct %d for %q", got, want, s)
		}
		if got, want := countOf(mcl, s), countOf(CounterFor(limiterconfig.TokenizerCl100kBase, ""), s); got != want {
			t.Fatalf("cl100k_base: memo %d, direct %d for %q", got, want, s)
		}
		if n := countOf(Estimate, s); n < 0 || (len(s) > 0 && n == 0) || n > int64(2*len(s)+1) {
			t.Fatalf("estimate %d for %d bytes", n, len(s))
		}
	})
}

// FuzzJSONString checks the walker's string decoding against encoding/json.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{`plain`, `a\"b\\c\/d\b\f\n\r\t`, `\u00e9\u4e2d`, `\ud83d\ude00`, `\ud83d`, `\ud83dx`, `\ud83d\u0041`, `\udc00\ud800`, "\xff", `mod\u0065l`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		quoted := []byte(`"` + raw + `"`)
		if !json.Valid(quoted) || !utf8.ValidString(raw) {
			return // encoding/json replaces invalid UTF-8; the walker keeps the bytes
		}
		var want string
		if err := json.Unmarshal(quoted, &want); err != nil {
			t.Fatal(err)
		}
		got, ok := stringValue(quoted)
		if !ok || got != want {
			t.Fatalf("stringValue(%s) = %q, %v; encoding/json says %q", quoted, got, ok, want)
		}
		if !keyIs([]byte(raw), strings.Contains(raw, `\`), want) {
			t.Fatalf("keyIs(%s) does not match its own decoding %q", raw, want)
		}
		if len(want) > 0 && keyIs([]byte(raw), strings.Contains(raw, `\`), want[:len(want)-1]) {
			t.Fatalf("keyIs(%s) matches a prefix of %q", raw, want)
		}
	})
}
