package translate

// The providers' official Go SDKs as the oracle of each wire format: every
// translated request must decode into the target SDK's request type without
// fields it does not know, every translated answer must parse with the app's SDK
// type with no fields it does not know, and every translated stream must be read
// to its end by the app's SDK stream reader and accumulator. The sidecar itself
// links none of them (docs/translation.md says why).

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicsse "github.com/anthropics/anthropic-sdk-go/v2/packages/ssestream"
	"github.com/openai/openai-go/v3"
	openaisse "github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/responses"
	"google.golang.org/genai"

	"github.com/aiquota/aiquota/internal/provider"
)

// geminiRequest is the generateContent request body, built from the SDK's wire
// types (the SDK's own request type is a flattened config it rewrites).
type geminiRequest struct {
	Contents          []*genai.Content        `json:"contents"`
	SystemInstruction *genai.Content          `json:"systemInstruction,omitempty"`
	Tools             []*genai.Tool           `json:"tools,omitempty"`
	ToolConfig        *genai.ToolConfig       `json:"toolConfig,omitempty"`
	GenerationConfig  *genai.GenerationConfig `json:"generationConfig,omitempty"`
}

// keyPaths lists the member paths of a JSON value (array elements as []),
// leaving out members whose value is null.
func keyPaths(v any, prefix string, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				continue
			}
			p := prefix + "." + k
			out[p] = true
			keyPaths(e, p, out)
		}
	case []any:
		for _, e := range x {
			keyPaths(e, prefix+"[]", out)
		}
	}
}

// unknownTo reports the member paths of ours that are missing from the SDK's
// re-encoding of it: fields the SDK type does not have. Free-form members (JSON
// Schemas, tool arguments, metadata) are not compared below their top.
func unknownTo(t *testing.T, ours []byte, sdk any) []string {
	t.Helper()
	again, err := json.Marshal(sdk)
	if err != nil {
		t.Fatalf("re-encode with the SDK type: %v", err)
	}
	var a, b any
	if err := json.Unmarshal(ours, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(again, &b); err != nil {
		t.Fatal(err)
	}
	pa, pb := map[string]bool{}, map[string]bool{}
	keyPaths(a, "", pa)
	keyPaths(b, "", pb)
	var missing []string
	for p := range pa {
		if pb[p] || freeForm(p) {
			continue
		}
		missing = append(missing, p)
	}
	sort.Strings(missing)
	return missing
}

// sdkParamGaps are members the SDKs' request types do not decode, though the API
// takes them: stream (the SDKs set it per call, not in the params) and a named
// tool_choice, whose union openai-go's param decoder reads as allowed_tools.
var sdkParamGaps = map[string]bool{".stream": true, ".tool_choice.function": true, ".tool_choice.function.name": true}

func freeForm(path string) bool {
	if sdkParamGaps[path] {
		return true
	}
	for _, f := range []string{".parameters.", ".input_schema.", ".schema.", ".input.", ".args.", ".response.", ".parametersJsonSchema.", ".responseJsonSchema.", ".metadata."} {
		if strings.Contains(path, f) {
			return true
		}
	}
	return false
}

// checkTargetRequest decodes a translated request with the target's SDK.
func checkTargetRequest(t *testing.T, d provider.Dialect, body []byte) {
	t.Helper()
	switch d {
	case provider.DialectOpenAI:
		var p openai.ChatCompletionNewParams
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("openai-go cannot decode the request: %v", err)
		}
		if len(p.Messages) == 0 {
			t.Errorf("openai-go sees no messages")
		}
		if u := unknownTo(t, body, p); len(u) > 0 {
			t.Errorf("fields openai-go's ChatCompletionNewParams does not know: %v", u)
		}
	case provider.DialectAnthropic:
		var p anthropic.MessageNewParams
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("anthropic-sdk-go cannot decode the request: %v", err)
		}
		if p.MaxTokens <= 0 || len(p.Messages) == 0 {
			t.Errorf("anthropic-sdk-go sees max_tokens %d and %d messages", p.MaxTokens, len(p.Messages))
		}
		if u := unknownTo(t, body, p); len(u) > 0 {
			t.Errorf("fields anthropic-sdk-go's MessageNewParams does not know: %v", u)
		}
	case provider.DialectGemini:
		// encoding/json reads bytes fields as standard base64 only; Gemini reads
		// proto3 JSON, which also takes the URL-safe alphabet of the documented
		// signature-skipping value.
		std := bytes.ReplaceAll(body, []byte(skipSignature), []byte(`"c2tpcA=="`))
		dec := json.NewDecoder(bytes.NewReader(std))
		dec.DisallowUnknownFields()
		var p geminiRequest
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("the request does not decode into genai's wire types: %v", err)
		}
		if len(p.Contents) == 0 {
			t.Errorf("genai sees no contents")
		}
	}
}

// checkAppResponse parses a translated answer with the app's SDK and checks it
// reports the upstream's usage.
func checkAppResponse(t *testing.T, op provider.Operation, out, upstream []byte, target provider.Dialect) {
	t.Helper()
	want, hasUsage := provider.ParseUsage(target, upstream)
	switch op {
	case provider.OpChatCompletions:
		c := sdkParse(t, out, "openai-go", func(c *openai.ChatCompletion) []string { return keys(c.JSON.ExtraFields) })
		for _, ch := range c.Choices {
			if len(ch.JSON.ExtraFields) > 0 || len(ch.Message.JSON.ExtraFields) > 0 {
				t.Errorf("fields a choice does not know: %v %v", keys(ch.JSON.ExtraFields), keys(ch.Message.JSON.ExtraFields))
			}
			for _, tc := range ch.Message.ToolCalls {
				if !json.Valid([]byte(tc.Function.Arguments)) {
					t.Errorf("tool call arguments are not JSON: %q", tc.Function.Arguments)
				}
			}
		}
		if hasUsage && (c.Usage.PromptTokens != want.InputTokens || c.Usage.CompletionTokens != want.OutputTokens || c.Usage.PromptTokensDetails.CachedTokens != want.CachedInputTokens) {
			t.Errorf("usage %+v, want %+v", c.Usage, want)
		}
	case provider.OpResponses:
		r := sdkParse(t, out, "openai-go", func(r *responses.Response) []string { return keys(r.JSON.ExtraFields) })
		if r.Usage.InputTokens != want.InputTokens || r.Usage.OutputTokens != want.OutputTokens {
			t.Errorf("usage %+v, want %+v", r.Usage, want)
		}
	case provider.OpMessages:
		m := sdkParse(t, out, "anthropic-sdk-go", func(m *anthropic.Message) []string { return keys(m.JSON.ExtraFields) })
		if m.Usage.InputTokens+m.Usage.CacheReadInputTokens != want.InputTokens || m.Usage.OutputTokens != want.OutputTokens {
			t.Errorf("usage %+v, want %+v", m.Usage, want)
		}
	default:
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.DisallowUnknownFields()
		var g genai.GenerateContentResponse
		if err := dec.Decode(&g); err != nil {
			t.Fatalf("genai cannot parse the answer: %v", err)
		}
		if hasUsage && (g.UsageMetadata == nil || int64(g.UsageMetadata.PromptTokenCount) != want.InputTokens || int64(g.UsageMetadata.CandidatesTokenCount) != want.OutputTokens) {
			t.Errorf("usage %+v, want %+v", g.UsageMetadata, want)
		}
	}
}

// sdkParse decodes an answer as the app's SDK does, failing t if it cannot; a
// field the SDK's type does not know (unknown lists them) is an error too.
func sdkParse[T any](t *testing.T, out []byte, sdk string, unknown func(*T) []string) *T {
	t.Helper()
	var v T
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s cannot parse the answer as %T: %v", sdk, v, err)
	}
	if u := unknown(&v); len(u) > 0 {
		t.Errorf("fields %T does not know: %v", v, u)
	}
	return &v
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sseResponse(body []byte) *http.Response {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: io.NopCloser(bytes.NewReader(body))}
}

// checkAppStream reads a translated stream with the app's SDK: to its end without
// error when the upstream succeeded, to the error when it failed, and with the
// upstream's usage.
func checkAppStream(t *testing.T, op provider.Operation, out []byte, s *Stream) {
	t.Helper()
	res := sseResponse(out)
	defer res.Body.Close()
	_, _, failed := s.Failed()
	failed = failed || !s.Done()
	want, _ := s.Usage()
	switch op {
	case provider.OpChatCompletions:
		checkChatStream(t, res, failed, want)
	case provider.OpResponses:
		checkResponsesStream(t, res, failed, want)
	case provider.OpMessages:
		checkMessagesStream(t, res, failed, want)
	default:
		checkGeminiStream(t, out, failed, want)
	}
}

// checkChatStream reads a Chat Completions stream with openai-go; failed says the upstream failed.
func checkChatStream(t *testing.T, res *http.Response, failed bool, want provider.Usage) {
	t.Helper()
	stream := openaisse.NewStream[openai.ChatCompletionChunk](openaisse.NewDecoder(res), nil)
	var acc openai.ChatCompletionAccumulator
	usage := false
	for stream.Next() {
		c := stream.Current()
		if !acc.AddChunk(c) {
			t.Fatalf("openai-go's accumulator refused chunk %s", c.RawJSON())
		}
		if len(c.Choices) == 0 {
			usage = true
		}
	}
	if err := stream.Err(); (err != nil) != failed {
		t.Fatalf("openai-go stream error %v, want one: %v", err, failed)
	}
	if !failed && (!usage || acc.Usage.PromptTokens != want.InputTokens || acc.Usage.CompletionTokens != want.OutputTokens) {
		t.Errorf("accumulated usage %+v (usage chunk seen: %v), want %+v", acc.Usage, usage, want)
	}
	for _, ch := range acc.Choices {
		for _, tc := range ch.Message.ToolCalls {
			if !failed && !json.Valid([]byte(tc.Function.Arguments)) {
				t.Errorf("accumulated tool call arguments are not JSON: %q", tc.Function.Arguments)
			}
		}
	}
}

// checkResponsesStream reads a Responses stream with openai-go; failed says the upstream failed.
func checkResponsesStream(t *testing.T, res *http.Response, failed bool, want provider.Usage) {
	t.Helper()
	stream := openaisse.NewStream[responses.ResponseStreamEventUnion](openaisse.NewDecoder(res), nil)
	var acc responses.ResponseAccumulator
	var text strings.Builder
	var final *responses.Response
	for stream.Next() {
		ev := stream.Current()
		var server responses.ResponsesServerEventUnion
		if err := json.Unmarshal([]byte(ev.RawJSON()), &server); err != nil {
			t.Fatalf("event %s: %v", ev.RawJSON(), err)
		}
		if err := acc.AddEvent(server); err != nil {
			t.Fatalf("openai-go's response accumulator refused %s: %v", ev.RawJSON(), err)
		}
		switch ev.Type {
		case "response.output_text.delta":
			text.WriteString(ev.Delta)
		case "response.completed", "response.incomplete", "response.failed":
			r := ev.Response
			final = &r
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("openai-go stream: %v", err)
	}
	if final == nil {
		t.Fatalf("no final response event")
	}
	if (final.Status == "failed") != failed {
		t.Errorf("final status %s, want failed: %v", final.Status, failed)
	}
	if !failed {
		if got := final.OutputText(); got != text.String() {
			t.Errorf("final output text %q, deltas %q", got, text.String())
		}
		if snap := acc.Snapshot(); snap.OutputText() != text.String() {
			t.Errorf("accumulated text %q, deltas %q", snap.OutputText(), text.String())
		}
		if final.Usage.InputTokens != want.InputTokens || final.Usage.OutputTokens != want.OutputTokens {
			t.Errorf("final usage %+v, want %+v", final.Usage, want)
		}
	}
}

// checkMessagesStream reads a Messages stream with anthropic-sdk-go; failed says the upstream failed.
func checkMessagesStream(t *testing.T, res *http.Response, failed bool, want provider.Usage) {
	t.Helper()
	stream := anthropicsse.NewStream[anthropic.MessageStreamEventUnion](anthropicsse.NewDecoder(res), nil)
	var msg anthropic.Message
	for stream.Next() {
		if err := msg.Accumulate(stream.Current()); err != nil {
			t.Fatalf("anthropic-sdk-go's accumulator: %v", err)
		}
	}
	if err := stream.Err(); (err != nil) != failed {
		t.Fatalf("anthropic-sdk-go stream error %v, want one: %v", err, failed)
	}
	if !failed && (msg.Usage.InputTokens+msg.Usage.CacheReadInputTokens != want.InputTokens || msg.Usage.OutputTokens != want.OutputTokens) {
		t.Errorf("accumulated usage %+v, want %+v", msg.Usage, want)
	}
	for _, b := range msg.Content {
		if b.Type == "tool_use" && !failed && !json.Valid(b.Input) {
			t.Errorf("accumulated tool input is not JSON: %s", b.Input)
		}
	}
}

// checkGeminiStream reads a Gemini stream with genai; failed says the upstream failed.
func checkGeminiStream(t *testing.T, out []byte, failed bool, want provider.Usage) {
	t.Helper()
	var last genai.GenerateContentResponse
	for _, line := range strings.Split(string(out), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		if strings.HasPrefix(data, `{"error"`) {
			if !failed {
				t.Errorf("an error chunk in a stream that did not fail: %s", data)
			}
			return
		}
		dec := json.NewDecoder(strings.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&last); err != nil {
			t.Fatalf("genai cannot parse chunk %s: %v", data, err)
		}
	}
	if failed {
		t.Errorf("a failed stream without an error chunk")
	} else if last.UsageMetadata == nil || int64(last.UsageMetadata.PromptTokenCount) != want.InputTokens {
		t.Errorf("final chunk usage %+v, want %+v", last.UsageMetadata, want)
	}
}
