package translate

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
)

var (
	chatApp      = Source{Dialect: provider.DialectOpenAI, Op: provider.OpChatCompletions}
	responsesApp = Source{Dialect: provider.DialectOpenAI, Op: provider.OpResponses}
	messagesApp  = Source{Dialect: provider.DialectAnthropic, Op: provider.OpMessages}
	geminiApp    = Source{Dialect: provider.DialectGemini, Op: provider.OpGenerateContent}
)

func TestNeeded(t *testing.T) {
	for _, c := range []struct {
		d    provider.Dialect
		op   provider.Operation
		pt   string
		want bool
	}{
		{provider.DialectOpenAI, provider.OpChatCompletions, limiterconfig.ProviderOpenAI, false},
		{provider.DialectOpenAI, provider.OpChatCompletions, limiterconfig.ProviderDeepSeek, false},
		{provider.DialectOpenAI, provider.OpChatCompletions, limiterconfig.ProviderAnthropic, true},
		{provider.DialectOpenAI, provider.OpResponses, limiterconfig.ProviderOpenAI, false},
		{provider.DialectOpenAI, provider.OpResponses, limiterconfig.ProviderDeepSeek, true},
		{provider.DialectOpenAI, provider.OpResponses, limiterconfig.ProviderOpenAICompatible, true},
		{provider.DialectAnthropic, provider.OpMessages, limiterconfig.ProviderAnthropic, false},
		{provider.DialectAnthropic, provider.OpMessages, limiterconfig.ProviderGemini, true},
		{provider.DialectGemini, provider.OpGenerateContent, limiterconfig.ProviderGemini, false},
		{provider.DialectGemini, provider.OpStreamGenerateContent, limiterconfig.ProviderOpenAI, true},
	} {
		if got := Needed(c.d, c.op, c.pt); got != c.want {
			t.Errorf("Needed(%s, %s, %s) = %v, want %v", c.d, c.op, c.pt, got, c.want)
		}
	}
	for _, op := range []provider.Operation{provider.OpEmbeddings, provider.OpCompletions, provider.OpCountTokens, provider.OpGeminiCountTokens, provider.OpListModels} {
		if Translatable(op) {
			t.Errorf("%s is translatable; it must not be", op)
		}
		if _, err := Request(Source{Dialect: provider.DialectOpenAI, Op: op}, []byte(`{"model":"m","input":"x"}`), Target{ProviderType: "anthropic", Model: "m"}); err == nil {
			t.Errorf("Request translated a %s request", op)
		}
	}
}

func TestRequestCallerErrors(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	for name, c := range map[string]struct {
		src    Source
		target Target
	}{
		"unknown provider type":   {chatApp, Target{ProviderType: "azure", Model: "m"}},
		"no translation needed":   {chatApp, Target{ProviderType: "deepseek", Model: "m"}},
		"no model":                {chatApp, Target{ProviderType: "anthropic"}},
		"model unfit for a path":  {chatApp, Target{ProviderType: "gemini", Model: "a/b"}},
		"model with a colon":      {chatApp, Target{ProviderType: "gemini", Model: "m:generateContent"}},
		"responses to OpenAI too": {responsesApp, Target{ProviderType: "openai", Model: "m"}},
	} {
		_, err := Request(c.src, body, c.target)
		var ue *UnsupportedError
		var re *provider.RequestError
		if err == nil || errors.As(err, &ue) || errors.As(err, &re) {
			t.Errorf("%s: got %v, want a plain error (a bug in the caller)", name, err)
		}
	}
}

// TestMalformed feeds requests that ParseRequest lets through (it reads only what
// the limiter needs) but that are wrong whatever the target: each must be a 400
// naming the field.
func TestMalformed(t *testing.T) {
	for _, c := range []struct {
		src   Source
		body  string
		param string
	}{
		{chatApp, `{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}`, "temperature"},
		{chatApp, `{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":7}`, "stop"},
		{chatApp, `{"model":"m","messages":[{"role":"user","content":"hi"}],"tool_choice":"sometimes"}`, "tool_choice"},
		{chatApp, `{"model":"m","messages":[{"role":"robot","content":"hi"}]}`, "messages[].role"},
		{chatApp, `{"model":"m","messages":[{"role":"tool","content":"hi"}]}`, "messages[].tool_call_id"},
		{chatApp, `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":{}}}]}]}`, "messages[].tool_calls[].function.arguments"},
		{chatApp, `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,abc"}}]}]}`, ""},
		{chatApp, `{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"description":"no name"}}]}`, "tools[].function.name"},
		{chatApp, `{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":[]}}]}`, "tools[].function.parameters"},
		{responsesApp, `{"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}]}`, "input[].call_id"},
		{responsesApp, `{"model":"m","input":[{"role":"tool","content":"x"}]}`, "input[].role"},
		{responsesApp, `{"model":"m","input":7}`, "input"},
		{messagesApp, `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_use","id":"t","name":"f","input":"x"}]}]}`, "messages[].content[].input"},
		{messagesApp, `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"tool_choice":{"type":"some"}}`, "tool_choice.type"},
		{messagesApp, `{"model":"m","max_tokens":5,"system":7,"messages":[{"role":"user","content":"hi"}]}`, "system"},
		{geminiApp, `{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":-3}}`, "generationConfig.maxOutputTokens"},
		{geminiApp, `{"contents":[{"role":"robot","parts":[{"text":"hi"}]}]}`, "contents[].role"},
		{geminiApp, `{"contents":[{"role":"user","parts":[{"banana":1}]}]}`, ""},
		{geminiApp, `{"contents":[{"role":"user","parts":[{}]}]}`, "contents[].parts[]"},
		{geminiApp, `{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"responseSchema":{"type":"OBJECT"}}}`, "generationConfig.responseSchema"},
		{geminiApp, `{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"responseMimeType":"application/json","responseSchema":{"type":"ARRAY","minItems":"lots"}}}`, "generationConfig.responseSchema"},
	} {
		_, err := Request(c.src, []byte(c.body), Target{ProviderType: limiterconfig.ProviderAnthropic, Model: "m"})
		if c.src.Dialect == provider.DialectAnthropic {
			_, err = Request(c.src, []byte(c.body), Target{ProviderType: limiterconfig.ProviderGemini, Model: "m"})
		}
		var re *provider.RequestError
		var ue *UnsupportedError
		switch {
		case c.param == "" && (errors.As(err, &re) || errors.As(err, &ue)):
			// Either is right: the point is a clear error, not a panic or a pass.
		case errors.As(err, &re):
			if re.Status != http.StatusBadRequest || re.Param != c.param || re.Message == "" {
				t.Errorf("%s: got %d %q %q, want 400 naming %s", c.body, re.Status, re.Param, re.Message, c.param)
			}
		default:
			t.Errorf("%s: got %v, want a 400 naming %s", c.body, err, c.param)
		}
	}
}

// TestDroppedAndNarrowed checks the per-field choices the golden files show, as
// assertions: what a target cannot take is reported, never silently lost.
func TestDroppedAndNarrowed(t *testing.T) {
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.1,"top_p":0.5,"seed":4,"presence_penalty":1,"frequency_penalty":1,"user":"u","parallel_tool_calls":false,"tools":[{"type":"function","function":{"name":"f"}}]}`
	for _, c := range []struct {
		target string
		want   []string
	}{
		{limiterconfig.ProviderAnthropic, []string{"frequency_penalty", "presence_penalty", "seed", "temperature", "top_p"}},
		{limiterconfig.ProviderGemini, []string{"parallel_tool_calls", "user"}},
	} {
		tr, err := Request(chatApp, []byte(body), Target{ProviderType: c.target, Model: "m"})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c.want, tr.Dropped); diff != "" {
			t.Errorf("%s: dropped (-want +got):\n%s", c.target, diff)
		}
		if tr.DroppedHeader() != strings.Join(c.want, ", ") {
			t.Errorf("header %q", tr.DroppedHeader())
		}
	}
}

func TestDefaultMaxTokensForAnthropic(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	for _, c := range []struct {
		pool int64
		want float64
	}{{0, limiterconfig.DefaultMaxOutputTokens}, {32000, 32000}} {
		tr, err := Request(chatApp, body, Target{ProviderType: limiterconfig.ProviderAnthropic, Model: "m", MaxOutputTokens: c.pool})
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			MaxTokens float64 `json:"max_tokens"`
		}
		if err := json.Unmarshal(tr.Body, &got); err != nil || got.MaxTokens != c.want {
			t.Errorf("pool %d: max_tokens %v (%v), want %v", c.pool, got.MaxTokens, err, c.want)
		}
	}
}

// TestExactKeys checks that a translation reads the same members as the limiter:
// a differently cased duplicate does not reach the target.
func TestExactKeys(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":10,"MAX_TOKENS":99999,"Temperature":2}`)
	req, err := provider.ParseRequest(provider.DialectOpenAI, provider.OpChatCompletions, "", body)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Request(chatApp, body, Target{ProviderType: limiterconfig.ProviderGemini, Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		GenerationConfig map[string]any `json:"generationConfig"`
	}
	if err := json.Unmarshal(tr.Body, &got); err != nil {
		t.Fatal(err)
	}
	if got.GenerationConfig["maxOutputTokens"] != float64(req.MaxOutputTokens) || got.GenerationConfig["temperature"] != nil {
		t.Errorf("generationConfig %v, want maxOutputTokens %d (the limiter's) and no temperature", got.GenerationConfig, req.MaxOutputTokens)
	}
	if !strings.Contains(tr.DroppedHeader(), "MAX_TOKENS") || !strings.Contains(tr.DroppedHeader(), "Temperature") {
		t.Errorf("dropped %q should name the unknown members", tr.DroppedHeader())
	}
}

func TestUpstreamAndResponseHeaders(t *testing.T) {
	tr, err := Request(messagesApp, []byte(`{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`), Target{ProviderType: "openai", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Anthropic-Version": {"2023-06-01"}, "Anthropic-Beta": {"x"}, "Content-Length": {"99"}, "X-Custom": {"keep"}}
	tr.UpstreamHeader(h)
	want := http.Header{"Content-Type": {"application/json"}, "X-Custom": {"keep"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("upstream headers (-want +got):\n%s", diff)
	}
	rh := http.Header{"Content-Length": {"10"}, "Content-Type": {"text/event-stream; charset=utf-8"}, "X-Request-Id": {"r"}}
	tr.ResponseHeader(rh)
	if rh.Get("Content-Length") != "" || rh.Get("Content-Type") != "text/event-stream" || rh.Get("X-Request-Id") != "r" {
		t.Errorf("response headers %v", rh)
	}
	g, err := Request(Source{Dialect: provider.DialectGemini, Op: provider.OpStreamGenerateContent}, []byte(`{"contents":[{"parts":[{"text":"hi"}]}]}`), Target{ProviderType: "openai", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	gh := http.Header{}
	g.ResponseHeader(gh)
	if gh.Get("Content-Type") != "application/json" {
		t.Errorf("a Gemini stream without alt=sse is a JSON array; content type %q", gh.Get("Content-Type"))
	}
}

func TestErrors(t *testing.T) {
	for _, c := range []struct {
		name       string
		app        provider.Dialect
		target     provider.Dialect
		pt         string
		status     int
		body       string
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{"anthropic overloaded to openai", provider.DialectOpenAI, provider.DialectAnthropic, "anthropic", 529,
			`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, 503, "overloaded_error", "Overloaded"},
		{"anthropic overloaded to anthropic app", provider.DialectAnthropic, provider.DialectOpenAI, "openai", 429,
			`{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`, 429, "rate_limit_exceeded", "Rate limit reached"},
		{"openai billing to gemini", provider.DialectGemini, provider.DialectOpenAI, "openai", 429,
			`{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}`, 429, "insufficient_quota", "You exceeded your current quota"},
		{"gemini context to openai", provider.DialectOpenAI, provider.DialectGemini, "gemini", 400,
			`{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}`, 400, "context_length_exceeded", "The input token count"},
		{"deepseek balance to anthropic", provider.DialectAnthropic, provider.DialectOpenAI, "deepseek", 402,
			`{"error":{"message":"Insufficient Balance","type":"unknown_error","code":"invalid_request_error"}}`, 402, "insufficient_quota", "Insufficient Balance"},
		{"empty body", provider.DialectOpenAI, provider.DialectAnthropic, "anthropic", 500, ``, 500, "", "anthropic answered HTTP 500"},
		{"garbage body cut short", provider.DialectAnthropic, provider.DialectGemini, "gemini", 503, `{"error":{"code":503,"message":"The model is overl`, 503, "", "gemini answered HTTP 503"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := &Translation{app: c.app, target: c.target, providerType: c.pt}
			o := provider.Classify(c.pt, c.status, http.Header{"Retry-After": {"7"}}, []byte(c.body), now)
			e := tr.Error(c.status, []byte(c.body), o)
			if e.Status != c.wantStatus || e.Code != c.wantCode || !strings.Contains(e.Message, c.wantMsg) || e.RetryAfter != 7*time.Second {
				t.Errorf("got %+v, want status %d code %q message with %q and Retry-After 7s", e, c.wantStatus, c.wantCode, c.wantMsg)
			}
			// The app's dialect writes it as its own error JSON.
			status, body := provider.ErrorBody(c.app, e)
			if status != c.wantStatus || !json.Valid(body) {
				t.Errorf("ErrorBody: %d %s", status, body)
			}
		})
	}
}

// TestStreamUsageChunkOnlyWhenAsked: an OpenAI chat app that did not set
// include_usage gets no usage-only chunk, while the limiter still reads usage.
func TestStreamUsageChunkOnlyWhenAsked(t *testing.T) {
	tr, err := Request(chatApp, []byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`), Target{ProviderType: "anthropic", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(tr.Body), `"stream":true`) {
		t.Fatalf("the upstream request does not stream: %s", tr.Body)
	}
	upstream := readFile(t, "testdata/stream/anthropic/text.sse")
	out, s := runStream(tr, upstream, nil)
	if strings.Contains(string(out), `"choices":[]`) || !strings.HasSuffix(string(out), "data: [DONE]\n\n") {
		t.Errorf("stream without include_usage:\n%s", out)
	}
	if u, ok := s.Usage(); !ok || u.OutputTokens != 7 {
		t.Errorf("usage %+v %v, want the upstream's 7 output tokens", u, ok)
	}
	// An OpenAI upstream is always asked for usage, which it sends only then.
	g, err := Request(messagesApp, []byte(`{"model":"m","max_tokens":3,"stream":true,"messages":[{"role":"user","content":"hi"}]}`), Target{ProviderType: "openai", Model: "m"})
	if err != nil || !strings.Contains(string(g.Body), `"stream_options":{"include_usage":true}`) {
		t.Errorf("an OpenAI upstream was not asked for usage: %s (%v)", g.Body, err)
	}
}

func TestGeminiArrayStream(t *testing.T) {
	tr := translation(provider.DialectGemini, provider.OpStreamGenerateContent, provider.DialectAnthropic, "anthropic")
	tr.appSSE = false
	out, _ := runStream(tr, readFile(t, "testdata/stream/anthropic/tools.sse"), []int{7})
	var chunks []map[string]any
	if err := json.Unmarshal(out, &chunks); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, out)
	}
	if len(chunks) != 3 {
		t.Errorf("%d elements, want text, the whole call, and the finish:\n%s", len(chunks), out)
	}
	failed, _ := runStream(tr, readFile(t, "testdata/stream/anthropic/error.sse"), nil)
	if err := json.Unmarshal(failed, &chunks); err != nil {
		t.Fatalf("a failed array stream is not a JSON array: %v\n%s", err, failed)
	}
	if _, ok := chunks[len(chunks)-1]["error"]; !ok {
		t.Errorf("the array does not end with the error: %s", failed)
	}
}

// TestStreamMalformedUpstream: garbage from the upstream ends the app's stream
// with an error event of its own dialect, never a panic or a half-written event.
func TestStreamMalformedUpstream(t *testing.T) {
	for _, c := range []struct {
		target provider.Dialect
		pt     string
		body   string
	}{
		{provider.DialectOpenAI, "openai", "data: not json\n\n"},
		{provider.DialectOpenAI, "openai", "data: [1,2]\n\n"},
		{provider.DialectAnthropic, "anthropic", "event: content_block_delta\ndata: {\"index\":3,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n"},
		{provider.DialectAnthropic, "anthropic", "event: content_block_start\ndata: {\"index\":5,\"content_block\":{\"type\":\"text\"}}\n\n"},
		{provider.DialectGemini, "gemini", "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"args\":{}}}]}}]}\n\n"},
		{provider.DialectGemini, "gemini", "data: " + strings.Repeat("x", maxEventBytes+10) + "\n\n"},
	} {
		for _, app := range appOps {
			if app.dialect == c.target && app.op != provider.OpResponses {
				continue
			}
			tr := translation(app.dialect, app.op, c.target, c.pt)
			out, s := runStream(tr, []byte(c.body), nil)
			if _, _, failed := s.Failed(); !failed {
				t.Errorf("%s to %s: %q did not fail the stream", c.pt, app.name, c.body[:min(len(c.body), 60)])
			}
			if !strings.Contains(string(out), "aiquota limiter") {
				t.Errorf("%s to %s: no error event in %s", c.pt, app.name, out)
			}
			checkAppStream(t, app.op, out, s)
		}
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
