package provider

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// streamResult is everything a tracker reports about one stream.
type streamResult struct {
	Forwarded string
	Usage     Usage
	HasUsage  bool
	Done      bool
	Failed    bool
	Kind      string
	Message   string
	Code      string
}

// run feeds chunks to a new tracker and collects what it forwards and reports.
func run(d Dialect, strip bool, chunks ...[]byte) streamResult {
	tr := NewStreamTracker(d, strip)
	var out bytes.Buffer
	for _, c := range chunks {
		out.Write(tr.Write(c)) // copied at once: the tracker may reuse the slice
	}
	return finish(tr, &out)
}

// finish flushes tr into out, what it forwarded so far, and collects what it
// reports.
func finish(tr *StreamTracker, out *bytes.Buffer) streamResult {
	out.Write(tr.Flush())
	var r streamResult
	r.Forwarded = out.String()
	r.Usage, r.HasUsage = tr.Usage()
	r.Done = tr.Done()
	r.Kind, r.Message, r.Failed = tr.Failed()
	r.Code = tr.FailedCode()
	return r
}

// splits returns the stream cut in two at every offset, and cut into single bytes.
func splits(s string) [][][]byte {
	var all [][][]byte
	for i := 0; i <= len(s); i++ {
		all = append(all, [][]byte{[]byte(s[:i]), []byte(s[i:])})
	}
	var bytewise [][]byte
	for i := range len(s) {
		bytewise = append(bytewise, []byte{s[i]})
	}
	return append(all, bytewise)
}

const (
	openAIChunk1     = `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}` + "\n\n"
	openAIChunk2     = `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello \"usage\": {"}}],"usage":null}` + "\n\n"
	openAIChunk3     = `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}` + "\n\n"
	openAIUsageChunk = `data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":2}}}` + "\n\n"
	openAIDone       = "data: [DONE]\n\n"
	keepAlive        = ": keep-alive\n\n"
)

func TestStreamOpenAI(t *testing.T) {
	full := openAIChunk1 + keepAlive + openAIChunk2 + "\n" + openAIChunk3 + openAIUsageChunk + openAIDone
	withoutUsage := openAIChunk1 + keepAlive + openAIChunk2 + "\n" + openAIChunk3 + openAIDone
	usage := Usage{InputTokens: 11, OutputTokens: 7, CachedInputTokens: 2}
	tests := []struct {
		name  string
		in    string
		strip bool
		want  streamResult
	}{
		{"observe only", full, false, streamResult{Forwarded: full, Usage: usage, HasUsage: true, Done: true}},
		{"strip the usage chunk", full, true, streamResult{Forwarded: withoutUsage, Usage: usage, HasUsage: true, Done: true}},
		{"CRLF, stripped", crlf(full), true, streamResult{Forwarded: crlf(withoutUsage), Usage: usage, HasUsage: true, Done: true}},
		{"CR only, stripped", cr(full), true, streamResult{Forwarded: cr(withoutUsage), Usage: usage, HasUsage: true, Done: true}},
		{"no usage requested", withoutUsage, true, streamResult{Forwarded: withoutUsage, Done: true}},
		{
			"usage on a content chunk is not stripped",
			openAIChunk1 + `data: {"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}` + "\n\n",
			true,
			streamResult{Forwarded: openAIChunk1 + `data: {"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}` + "\n\n", Usage: Usage{InputTokens: 3, OutputTokens: 1}, HasUsage: true},
		},
		{
			"event without its final blank line: read at Flush, stripped",
			openAIChunk1 + strings.TrimSuffix(openAIUsageChunk, "\n\n"),
			true,
			streamResult{Forwarded: openAIChunk1, Usage: usage, HasUsage: true},
		},
		{
			"multi-line data, id and retry fields, no space after colon",
			"id: 1\nretry: 100\ndata:{\"choices\":[],\ndata: \"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n",
			true,
			streamResult{Forwarded: "", Usage: Usage{InputTokens: 1, OutputTokens: 2}, HasUsage: true},
		},
		{
			"mid-stream error",
			openAIChunk1 + `data: {"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}` + "\n\n",
			false,
			streamResult{Forwarded: openAIChunk1 + `data: {"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}` + "\n\n",
				Failed: true, Kind: "serverError", Message: "The server had an error while processing your request.", Code: "server_error"},
		},
		{
			"mid-stream rate limit error",
			`data: {"error":{"message":"slow","type":"requests","code":"rate_limit_exceeded"}}` + "\n\n",
			false,
			streamResult{Forwarded: `data: {"error":{"message":"slow","type":"requests","code":"rate_limit_exceeded"}}` + "\n\n", Failed: true, Kind: "rateLimited", Message: "slow", Code: "rate_limit_exceeded"},
		},
		{
			"garbage data is forwarded and ignored",
			"data: {not json\n\ndata: \x00\xff\n\n: comment\n\n\n\n",
			true,
			streamResult{Forwarded: "data: {not json\n\ndata: \x00\xff\n\n: comment\n\n\n\n"},
		},
		{
			"responses API stream",
			"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n" +
				"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n" +
				"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":36,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":87,\"total_tokens\":123}}}\n\n",
			true,
			streamResult{Forwarded: "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n" +
				"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n" +
				"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":36,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":87,\"total_tokens\":123}}}\n\n",
				Usage: Usage{InputTokens: 36, OutputTokens: 87}, HasUsage: true, Done: true},
		},
		{
			"responses API failure",
			"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"},\"usage\":null}}\n\n",
			false,
			streamResult{Forwarded: "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"},\"usage\":null}}\n\n",
				Failed: true, Kind: "serverError", Message: "boom", Code: "server_error"},
		},
		{
			"responses API error event without event line",
			`data: {"type":"error","code":"rate_limit_exceeded","message":"slow down"}` + "\n\n",
			false,
			streamResult{Forwarded: `data: {"type":"error","code":"rate_limit_exceeded","message":"slow down"}` + "\n\n", Failed: true, Kind: "rateLimited", Message: "slow down", Code: "rate_limit_exceeded"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkAllSplits(t, DialectOpenAI, tt.strip, tt.in, tt.want)
		})
	}
}

func checkAllSplits(t *testing.T, d Dialect, strip bool, in string, want streamResult) {
	t.Helper()
	for _, chunks := range splits(in) {
		got := run(d, strip, chunks...)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("fed in %d writes (first %d bytes) (-want +got):\n%s", len(chunks), len(chunks[0]), diff)
		}
	}
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
func cr(s string) string   { return strings.ReplaceAll(s, "\n", "\r") }

func TestStreamWriteReturnsInputWhenObserving(t *testing.T) {
	for _, d := range []Dialect{DialectOpenAI, DialectAnthropic, DialectGemini} {
		tr := NewStreamTracker(d, false)
		p := []byte(openAIChunk1 + openAIUsageChunk[:20])
		if got := tr.Write(p); &got[0] != &p[0] || len(got) != len(p) {
			t.Errorf("%v: Write did not return its input", d)
		}
	}
	// Stripping only applies to OpenAI; other dialects are never held back.
	tr := NewStreamTracker(DialectAnthropic, true)
	p := []byte("event: ping\ndata: {}")
	if got := tr.Write(p); len(got) != len(p) {
		t.Errorf("anthropic tracker held bytes back with strip on")
	}
}

func TestStreamAnthropic(t *testing.T) {
	events := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-opus-4-7\",\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
		"event: ping\ndata: {\"type\": \"ping\"}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"message_delta usage\"}}\n\n" +
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n"
	stop := "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	usage := Usage{InputTokens: 1125, OutputTokens: 15, CachedInputTokens: 1000}
	overloaded := "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n"
	tests := []struct {
		name string
		in   string
		want streamResult
	}{
		{"complete", events + stop, streamResult{Usage: usage, HasUsage: true, Done: true}},
		{"CRLF", crlf(events + stop), streamResult{Usage: usage, HasUsage: true, Done: true}},
		{"cut short keeps what it saw", events[:strings.Index(events, "event: content_block_start")], streamResult{Usage: Usage{InputTokens: 1125, OutputTokens: 1, CachedInputTokens: 1000}, HasUsage: true}},
		{"overloaded mid-stream", events + overloaded, streamResult{Usage: usage, HasUsage: true, Failed: true, Kind: "unavailable", Message: "Overloaded", Code: "overloaded_error"}},
		{"gateway reports input on message_delta",
			"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}\n\n" +
				"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":9,\"output_tokens\":4}}\n\n",
			streamResult{Usage: Usage{InputTokens: 9, OutputTokens: 4}, HasUsage: true}},
		{"event names from data when event lines are missing",
			"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\ndata: {\"type\":\"message_stop\"}\n\n",
			streamResult{Usage: Usage{InputTokens: 3, OutputTokens: 1}, HasUsage: true, Done: true}},
		{"garbage usage is ignored",
			"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":\"many\"}}}\n\n" +
				"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-4}}\n\n",
			streamResult{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.Forwarded = tt.in
			checkAllSplits(t, DialectAnthropic, true, tt.in, tt.want)
		})
	}
}

func TestStreamGemini(t *testing.T) {
	c1 := `{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":1,"totalTokenCount":9}}`
	c2 := `{"candidates":[{"content":{"parts":[{"text":"lo \"}]"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":5,"thoughtsTokenCount":3,"totalTokenCount":16}}`
	final := Usage{InputTokens: 8, OutputTokens: 8}
	geminiErr := `{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}`
	tests := []struct {
		name string
		in   string
		want streamResult
	}{
		{"sse", "data: " + c1 + "\r\n\r\n" + "data: " + c2 + "\r\n\r\n", streamResult{Usage: final, HasUsage: true, Done: true}},
		{"sse error", "data: " + c1 + "\r\n\r\n" + "data: " + geminiErr + "\r\n\r\n",
			streamResult{Usage: Usage{InputTokens: 8, OutputTokens: 1}, HasUsage: true, Failed: true, Kind: "unavailable", Message: "The model is overloaded.", Code: "UNAVAILABLE"}},
		{"json array", "[" + c1 + "\n,\r\n" + c2 + "\n]", streamResult{Usage: final, HasUsage: true, Done: true}},
		{"json array after blank lines", "\n\n [" + c1 + "]", streamResult{Usage: Usage{InputTokens: 8, OutputTokens: 1}, HasUsage: true}},
		{"json array error", "[" + geminiErr + "]", streamResult{Failed: true, Kind: "unavailable", Message: "The model is overloaded.", Code: "UNAVAILABLE"}},
		{"json array garbage", "[{\"usageMetadata\":{\"promptTokenCount\":\"x\"}}, 5, \"]\", [1,{}], {]", streamResult{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.Forwarded = tt.in
			checkAllSplits(t, DialectGemini, false, tt.in, tt.want)
		})
	}
}

func TestStreamOversizeEvents(t *testing.T) {
	big := strings.Repeat("x", maxEventBytes+10)
	// An oversize usage-like chunk cannot be parsed, so it is forwarded whole.
	oversize := `data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1},"pad":"` + big + `"}` + "\n\n"
	in := openAIChunk1 + oversize + openAIUsageChunk + openAIDone
	want := streamResult{Forwarded: openAIChunk1 + oversize + openAIDone, Usage: Usage{InputTokens: 11, OutputTokens: 7, CachedInputTokens: 2}, HasUsage: true, Done: true}
	for _, cut := range [][]int{
		nil, // one write
		{len(openAIChunk1) + 100},
		{len(openAIChunk1) + 100, len(openAIChunk1) + maxEventBytes/2, len(openAIChunk1) + maxEventBytes + 5},
		{len(openAIChunk1) + len(oversize) - 1},
	} {
		var chunks [][]byte
		prev := 0
		for _, c := range cut {
			chunks = append(chunks, []byte(in[prev:c]))
			prev = c
		}
		chunks = append(chunks, []byte(in[prev:]))
		got := run(DialectOpenAI, true, chunks...)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("cut at %v (-want +got):\n%s", cut, diff)
		}
	}
	// A line longer than the bound without a newline yet is dropped from
	// parsing, not buffered without limit.
	tr := NewStreamTracker(DialectOpenAI, false)
	tr.Write([]byte("data: " + big))
	tr.Write([]byte(big))
	if len(tr.line.B) > maxEventBytes || len(tr.ev.Data) > maxEventBytes {
		t.Errorf("tracker buffers %d line bytes and %d data bytes, bound %d", len(tr.line.B), len(tr.ev.Data), maxEventBytes)
	}
}

// TestStreamThroughProxyWithOpenAISDK runs an OpenAI-style stream from an
// upstream server through a minimal proxy built on StreamTracker to the official
// OpenAI Go SDK, with the upstream flushing mid-event.
func TestStreamThroughProxyWithOpenAISDK(t *testing.T) {
	stream := openAIChunk1 + keepAlive + openAIChunk2 + openAIChunk3 + openAIUsageChunk + openAIDone
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		for i := 0; i < len(stream); i += 37 { // cuts events anywhere
			if _, err := w.Write([]byte(stream[i:min(i+37, len(stream))])); err != nil {
				t.Error(err)
				return
			}
			fl.Flush()
		}
	}))
	defer upstream.Close()
	for _, strip := range []bool{false, true} {
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			resp, err := http.Post(upstream.URL, "application/json", r.Body)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			w.Header().Set("Content-Type", "text/event-stream")
			tr := NewStreamTracker(DialectOpenAI, strip)
			buf := make([]byte, 50)
			for {
				n, err := resp.Body.Read(buf)
				if n > 0 {
					if _, err := w.Write(tr.Write(buf[:n])); err != nil {
						t.Error(err)
						return
					}
					w.(http.Flusher).Flush()
				}
				if err != nil {
					break
				}
			}
			if _, err := w.Write(tr.Flush()); err != nil {
				t.Error(err)
				return
			}
			if u, ok := tr.Usage(); !ok || u.InputTokens != 11 || u.OutputTokens != 7 {
				t.Errorf("strip=%v: proxy saw usage %+v, %v", strip, u, ok)
			}
		}))
		client := openai.NewClient(option.WithBaseURL(proxy.URL+"/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:    "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		var text strings.Builder
		var chunks int
		var sawUsage bool
		for s.Next() {
			c := s.Current()
			chunks++
			for _, ch := range c.Choices {
				text.WriteString(ch.Delta.Content)
			}
			if c.Usage.TotalTokens > 0 {
				sawUsage = true
			}
		}
		if err := s.Err(); err != nil {
			t.Errorf("strip=%v: SDK stream error: %v", strip, err)
		}
		cancel()
		proxy.Close()
		if got := text.String(); got != `Hello "usage": {` {
			t.Errorf("strip=%v: SDK assembled %q", strip, got)
		}
		if sawUsage == strip || chunks != map[bool]int{false: 4, true: 3}[strip] {
			t.Errorf("strip=%v: SDK saw %d chunks, usage chunk %v", strip, chunks, sawUsage)
		}
	}
}

func TestStreamFailureKinds(t *testing.T) {
	tests := []struct {
		d     Dialect
		event string
		kind  string
		code  string
	}{
		{DialectAnthropic, `event: error` + "\n" + `data: {"type":"error","error":{"type":"rate_limit_error","message":"m"}}`, "rateLimited", "rate_limit_error"},
		{DialectAnthropic, `event: error` + "\n" + `data: {"type":"error","error":{"type":"api_error","message":"m"}}`, "serverError", "api_error"},
		{DialectAnthropic, `event: error` + "\n" + `data: {"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 5 tokens > 4 maximum"}}`, "contextLengthExceeded", "invalid_request_error"},
		{DialectOpenAI, `data: {"error":{"message":"m","type":"insufficient_quota","code":"insufficient_quota"}}`, "quotaExhausted", "insufficient_quota"},
		{DialectOpenAI, `data: {"error":{"message":"m","type":"server_error","code":"overloaded"}}`, "unavailable", "overloaded"},
		{DialectOpenAI, `data: {"error":{"message":"m"}}`, "serverError", ""},
		{DialectGemini, `data: {"error":{"code":504,"message":"m","status":"DEADLINE_EXCEEDED"}}`, "timeout", "DEADLINE_EXCEEDED"},
		{DialectGemini, `data: {"error":{"code":429,"message":"m","status":"RESOURCE_EXHAUSTED"}}`, "rateLimited", "RESOURCE_EXHAUSTED"},
		{DialectGemini, `data: {"error":{"code":500,"message":"m","status":"INTERNAL"}}`, "serverError", "INTERNAL"},
	}
	for _, tt := range tests {
		got := run(tt.d, false, []byte(tt.event+"\n\n"+tt.event+"\n\n"))
		if !got.Failed || got.Kind != tt.kind || got.Code != tt.code {
			t.Errorf("%v %s: failed %v kind %q code %q, want %q %q", tt.d, tt.event, got.Failed, got.Kind, got.Code, tt.kind, tt.code)
		}
	}
}

func TestStreamGeminiArrayOversizeElement(t *testing.T) {
	big := `{"candidates":[{"content":{"parts":[{"inlineData":{"data":"` + strings.Repeat("A", maxEventBytes) + `"}}]}}],"usageMetadata":{"promptTokenCount":1}}`
	small := `{"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":3}}`
	in := "[" + big + "," + small + "]"
	for _, cut := range []int{1, 100, len(big) / 2, len(big)} {
		got := run(DialectGemini, false, []byte(in[:cut]), []byte(in[cut:]))
		if got.Forwarded != in || got.Usage != (Usage{InputTokens: 2, OutputTokens: 3}) {
			t.Errorf("cut %d: usage %+v, forwarded intact %v", cut, got.Usage, got.Forwarded == in)
		}
	}
}
