package simulator

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"strings"
)

// decode reads the body as one JSON object into v. Unreadable bodies and wrong types
// are refused here, counted against the account (no pool is known yet).
func (c *reqCtx) decode(v any) bool {
	body, ok := c.readBody()
	if !ok {
		return false
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		c.failAccount(ReasonBadRequest, &apiError{kind: kindInvalidJSON, status: http.StatusBadRequest,
			message: "We could not parse the JSON body of your request: it must be a JSON object."})
		return false
	}
	err := json.Unmarshal(trimmed, v)
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		c.failAccount(ReasonBadRequest, invalidParam(typeErr.Field, "Invalid type for '%s': expected %s, but got %s instead.",
			clip(typeErr.Field, 100), jsonKind(typeErr.Type), withArticle(typeErr.Value)))
		return false
	case err != nil:
		c.failAccount(ReasonBadRequest, &apiError{kind: kindInvalidJSON, status: http.StatusBadRequest,
			message: "We could not parse the JSON body of your request: " + clip(err.Error(), 200)})
		return false
	}
	return true
}

// jsonKind names the JSON type a Go field decodes from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a number"
}

// withArticle turns encoding/json's value kind ("number", "array", ...) into prose.
func withArticle(kind string) string {
	if strings.HasPrefix(kind, "a") || strings.HasPrefix(kind, "o") {
		return "an " + kind
	}
	return "a " + kind
}

// requirePool resolves the request's model to its pool, refusing a request without one.
func (c *reqCtx) requirePool(model *string, missing string) (*pool, string, bool) {
	if model == nil || *model == "" {
		c.failAccount(ReasonBadRequest, invalidParam("model", "%s", missing))
		return nil, "", false
	}
	pl, ok := c.pool(*model)
	return pl, *model, ok
}

func positive(param string, v *int64) *apiError {
	if v != nil && *v < 1 {
		return invalidParam(param, "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", param, *v)
	}
	return nil
}

const openaiMissingModel = "you must provide a model parameter"

// --- /v1/chat/completions (OpenAI, DeepSeek) ---

type chatRequest struct {
	Model    *string `json:"model"`
	Messages []struct {
		Role      string          `json:"role"`
		Content   json.RawMessage `json:"content"`
		Name      string          `json:"name"`
		ToolCalls json.RawMessage `json:"tool_calls"`
	} `json:"messages"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	Tools               json.RawMessage `json:"tools"`
	Functions           json.RawMessage `json:"functions"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

func handleChat(c *reqCtx) {
	var req chatRequest
	if !c.decode(&req) {
		return
	}
	pl, model, ok := c.requirePool(req.Model, openaiMissingModel)
	if !ok {
		return
	}
	mc, e := req.call(model)
	if e != nil {
		c.failPool(pl, ReasonBadRequest, e)
		return
	}
	mc.render = &chatResponder{deepseek: c.acct.provider == ProviderDeepSeek, includeUsage: req.Stream && req.StreamOptions != nil && req.StreamOptions.IncludeUsage}
	c.serve(pl, mc)
}

func (req *chatRequest) call(model string) (*modelCall, *apiError) {
	if req.Messages == nil {
		return nil, invalidParam("messages", "Missing required parameter: 'messages'.")
	}
	if len(req.Messages) == 0 {
		return nil, invalidParam("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	if e := positive("max_tokens", req.MaxTokens); e != nil {
		return nil, e
	}
	if e := positive("max_completion_tokens", req.MaxCompletionTokens); e != nil {
		return nil, e
	}
	input := requestOverhead + definitionTokens(req.Tools) + definitionTokens(req.Functions)
	for i, m := range req.Messages {
		if m.Role == "" {
			return nil, invalidParam(fmt.Sprintf("messages[%d].role", i), "Missing required parameter: 'messages[%d].role'.", i)
		}
		n, ok := contentTokens(m.Content)
		if !ok {
			return nil, invalidParam(fmt.Sprintf("messages[%d].content", i), "Invalid type for 'messages[%d].content': expected a string or an array of content parts.", i)
		}
		input += messageOverhead + n + textTokens(m.Name) + definitionTokens(m.ToolCalls)
	}
	mc := &modelCall{model: model, input: input, stream: req.Stream}
	switch {
	case req.MaxCompletionTokens != nil:
		mc.statedMax = *req.MaxCompletionTokens
	case req.MaxTokens != nil:
		mc.statedMax = *req.MaxTokens
	}
	return mc, nil
}

type openaiUsage struct {
	PromptTokens            int64          `json:"prompt_tokens"`
	CompletionTokens        int64          `json:"completion_tokens"`
	TotalTokens             int64          `json:"total_tokens"`
	PromptTokensDetails     *cachedDetails `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *reasonDetails `json:"completion_tokens_details,omitempty"`
	// DeepSeek reports its context cache instead.
	PromptCacheHitTokens  *int64 `json:"prompt_cache_hit_tokens,omitempty"`
	PromptCacheMissTokens *int64 `json:"prompt_cache_miss_tokens,omitempty"`
}

type cachedDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
}

type reasonDetails struct {
	ReasoningTokens int64 `json:"reasoning_tokens"`
}

func newOpenAIUsage(deepseek bool, input, output int64) *openaiUsage {
	u := &openaiUsage{PromptTokens: input, CompletionTokens: output, TotalTokens: input + output}
	if deepseek {
		var hit int64
		u.PromptCacheHitTokens, u.PromptCacheMissTokens = &hit, &input
	} else {
		u.PromptTokensDetails, u.CompletionTokensDetails = &cachedDetails{}, &reasonDetails{}
	}
	return u
}

func finishReason(truncated bool) *string {
	r := "stop"
	if truncated {
		r = "length"
	}
	return &r
}

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint"`
	Choices           []chatChoice `json:"choices"`
	// Usage is always set on a full response; on stream chunks it is absent, or null
	// until the last chunk when the request asked for include_usage.
	Usage any `json:"usage,omitempty"`
}

type chatChoice struct {
	Index        int          `json:"index"`
	Message      *chatMessage `json:"message,omitempty"`
	Delta        *chatDelta   `json:"delta,omitempty"`
	Logprobs     *struct{}    `json:"logprobs"`
	FinishReason *string      `json:"finish_reason"`
}

type chatMessage struct {
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
}

type chatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chatResponder struct {
	deepseek, includeUsage bool
	id                     string
}

func (r *chatResponder) base(g *generation) chatCompletion {
	if r.id == "" {
		r.id = g.idr("chatcmpl-")
	}
	return chatCompletion{ID: r.id, Object: "chat.completion", Created: g.created.Unix(), Model: g.model, SystemFingerprint: "fp_sim"}
}

func (r *chatResponder) body(g *generation) any {
	b := r.base(g)
	b.Choices = []chatChoice{{Message: &chatMessage{Role: "assistant", Content: g.text()}, FinishReason: finishReason(g.truncated)}}
	b.Usage = newOpenAIUsage(r.deepseek, g.input, g.output())
	return b
}

func (r *chatResponder) chunk(g *generation, d *chatDelta, finish *string) chatCompletion {
	b := r.base(g)
	b.Object = "chat.completion.chunk"
	b.Choices = []chatChoice{{Delta: d, FinishReason: finish}}
	if r.includeUsage {
		b.Usage = (*openaiUsage)(nil)
	}
	return b
}

func (r *chatResponder) open(sw *streamWriter, g *generation) {
	empty := ""
	sw.event("", r.chunk(g, &chatDelta{Role: "assistant", Content: &empty}, nil))
}

func (r *chatResponder) delta(sw *streamWriter, g *generation, i int) {
	sw.event("", r.chunk(g, &chatDelta{Content: &g.pieces[i]}, nil))
}

func (r *chatResponder) close(sw *streamWriter, g *generation) {
	sw.event("", r.chunk(g, &chatDelta{}, finishReason(g.truncated)))
	if r.includeUsage {
		last := r.base(g)
		last.Object = "chat.completion.chunk"
		last.Choices = []chatChoice{}
		last.Usage = newOpenAIUsage(r.deepseek, g.input, g.output())
		sw.event("", last)
	}
	sw.raw("data: [DONE]")
}

func (r *chatResponder) fail(sw *streamWriter, _ *generation) { openaiStreamError(sw) }

// openaiStreamError is the error object OpenAI sends as a data line when a stream
// fails after it started; the official SDKs raise it as an APIError.
func openaiStreamError(sw *streamWriter) {
	sw.event("", openaiErrorBody{Error: openaiError{Message: "The server had an error while processing your request. Sorry about that!", Type: "server_error"}})
}

// --- /v1/completions (legacy) ---

type completionRequest struct {
	Model         *string         `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	MaxTokens     *int64          `json:"max_tokens"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
}

// legacyDefaultMaxTokens is /v1/completions' max_tokens when the request omits it.
const legacyDefaultMaxTokens = 16

func handleCompletions(c *reqCtx) {
	var req completionRequest
	if !c.decode(&req) {
		return
	}
	pl, model, ok := c.requirePool(req.Model, openaiMissingModel)
	if !ok {
		return
	}
	if e := positive("max_tokens", req.MaxTokens); e != nil {
		c.failPool(pl, ReasonBadRequest, e)
		return
	}
	inputs, e := parseInputs("prompt", req.Prompt)
	if e != nil {
		c.failPool(pl, ReasonBadRequest, e)
		return
	}
	mc := &modelCall{model: model, stream: req.Stream, statedMax: legacyDefaultMaxTokens}
	for _, in := range inputs {
		mc.input += in.tokens
	}
	if req.MaxTokens != nil {
		mc.statedMax = *req.MaxTokens
	}
	mc.render = &completionResponder{includeUsage: req.Stream && req.StreamOptions != nil && req.StreamOptions.IncludeUsage}
	c.serve(pl, mc)
}

// input is one prompt or embedding input: its token count and a key that identifies
// its content (the text, or the token ids).
type input struct {
	tokens int64
	key    string
}

// parseInputs reads an OpenAI prompt or embedding input: a string, an array of
// strings, an array of token ids, or an array of arrays of token ids.
func parseInputs(param string, raw json.RawMessage) ([]input, *apiError) {
	if isNull(raw) {
		return nil, invalidParam(param, "Missing required parameter: '%s'.", param)
	}
	invalid := invalidParam(param, "Invalid '%s': expected a string, an array of strings, an array of integers, or an array of arrays of integers.", param)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return nil, invalidParam(param, "Invalid '%s': empty string.", param)
		}
		return []input{{tokens: textTokens(s), key: s}}, nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil, invalid
	}
	if len(items) == 0 {
		return nil, invalidParam(param, "Invalid '%s': empty array. Expected an array with minimum length 1.", param)
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil {
		return []input{{tokens: int64(len(ids)), key: string(raw)}}, nil
	}
	out := make([]input, 0, len(items))
	for _, it := range items {
		var s string
		var ids []int64
		switch {
		case json.Unmarshal(it, &s) == nil && s != "":
			out = append(out, input{tokens: textTokens(s), key: s})
		case json.Unmarshal(it, &ids) == nil && len(ids) > 0:
			out = append(out, input{tokens: int64(len(ids)), key: string(it)})
		default:
			return nil, invalid
		}
	}
	return out, nil
}

type completion struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	SystemFingerprint string             `json:"system_fingerprint"`
	Choices           []completionChoice `json:"choices"`
	Usage             any                `json:"usage,omitempty"`
}

type completionChoice struct {
	Text         string    `json:"text"`
	Index        int       `json:"index"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type completionResponder struct {
	includeUsage bool
	id           string
}

func (r *completionResponder) base(g *generation, choices []completionChoice) completion {
	if r.id == "" {
		r.id = g.idr("cmpl-")
	}
	b := completion{ID: r.id, Object: "text_completion", Created: g.created.Unix(), Model: g.model, SystemFingerprint: "fp_sim", Choices: choices}
	if r.includeUsage {
		b.Usage = (*openaiUsage)(nil)
	}
	return b
}

func (r *completionResponder) body(g *generation) any {
	b := r.base(g, []completionChoice{{Text: g.text(), FinishReason: finishReason(g.truncated)}})
	b.Usage = newOpenAIUsage(false, g.input, g.output())
	return b
}

// open: legacy completion streams start with the first text chunk.
func (r *completionResponder) open(*streamWriter, *generation) {}

func (r *completionResponder) delta(sw *streamWriter, g *generation, i int) {
	sw.event("", r.base(g, []completionChoice{{Text: g.pieces[i]}}))
}

func (r *completionResponder) close(sw *streamWriter, g *generation) {
	sw.event("", r.base(g, []completionChoice{{FinishReason: finishReason(g.truncated)}}))
	if r.includeUsage {
		last := r.base(g, []completionChoice{})
		last.Usage = newOpenAIUsage(false, g.input, g.output())
		sw.event("", last)
	}
	sw.raw("data: [DONE]")
}

func (r *completionResponder) fail(sw *streamWriter, _ *generation) { openaiStreamError(sw) }

// --- /v1/embeddings ---

type embeddingRequest struct {
	Model          *string         `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int64          `json:"dimensions"`
}

// Embedding sizes: text-embedding-3-small's default, and text-embedding-3-large's
// maximum as the cap on the dimensions parameter.
const (
	defaultEmbeddingDims = 1536
	maxEmbeddingDims     = 3072
)

func handleEmbeddings(c *reqCtx) {
	var req embeddingRequest
	if !c.decode(&req) {
		return
	}
	pl, model, ok := c.requirePool(req.Model, openaiMissingModel)
	if !ok {
		return
	}
	inputs, e := parseInputs("input", req.Input)
	switch {
	case e != nil:
	case req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64":
		e = invalidParam("encoding_format", "Invalid 'encoding_format': expected 'float' or 'base64', but got '%s'.", clip(req.EncodingFormat, 40))
	case req.Dimensions != nil && (*req.Dimensions < 1 || *req.Dimensions > maxEmbeddingDims):
		e = invalidParam("dimensions", "Invalid 'dimensions': expected a value from 1 to %d, but got %d.", maxEmbeddingDims, *req.Dimensions)
	}
	if e != nil {
		c.failPool(pl, ReasonBadRequest, e)
		return
	}
	// The window bounds each input, not their sum.
	mc := &modelCall{model: model, noOutput: true}
	for _, in := range inputs {
		mc.input += in.tokens
		mc.windowTokens = max(mc.windowTokens, in.tokens)
	}
	if mc.windowTokens > pl.window {
		c.failPool(pl, ReasonContext, &apiError{kind: kindContextLength, status: http.StatusBadRequest, param: "input",
			message: fmt.Sprintf("This model's maximum context length is %d tokens, however you requested %d tokens in one input. Please reduce your prompt.", pl.window, mc.windowTokens)})
		return
	}
	dims := int64(defaultEmbeddingDims)
	if req.Dimensions != nil {
		dims = *req.Dimensions
	}
	mc.render = &embeddingResponder{seed: c.s.seed, inputs: inputs, dims: int(dims), base64: req.EncodingFormat == "base64"}
	c.serve(pl, mc)
}

type embeddingList struct {
	Object string          `json:"object"`
	Data   []embeddingItem `json:"data"`
	Model  string          `json:"model"`
	Usage  embeddingUsage  `json:"usage"`
}

type embeddingItem struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string of little-endian float32s
}

type embeddingUsage struct {
	PromptTokens int64 `json:"prompt_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
}

type embeddingResponder struct {
	seed   int64
	inputs []input
	dims   int
	base64 bool
}

func (r *embeddingResponder) body(g *generation) any {
	out := embeddingList{Object: "list", Model: g.model, Usage: embeddingUsage{PromptTokens: g.input, TotalTokens: g.input}}
	for i, in := range r.inputs {
		vec := embedding(r.seed, in.key, r.dims)
		item := embeddingItem{Object: "embedding", Index: i, Embedding: vec}
		if r.base64 {
			buf := make([]byte, 4*len(vec))
			for j, f := range vec {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f))
			}
			item.Embedding = base64.StdEncoding.EncodeToString(buf)
		}
		out.Data = append(out.Data, item)
	}
	return out
}

// Embeddings do not stream; a stream flag is ignored, as OpenAI ignores it.
func (r *embeddingResponder) open(*streamWriter, *generation)       {}
func (r *embeddingResponder) delta(*streamWriter, *generation, int) {}
func (r *embeddingResponder) close(*streamWriter, *generation)      {}
func (r *embeddingResponder) fail(*streamWriter, *generation)       {}

// --- /v1/responses ---

type responsesRequest struct {
	Model           *string         `json:"model"`
	Input           json.RawMessage `json:"input"`
	Instructions    *string         `json:"instructions"`
	MaxOutputTokens *int64          `json:"max_output_tokens"`
	Stream          bool            `json:"stream"`
	Tools           json.RawMessage `json:"tools"`
}

func handleResponses(c *reqCtx) {
	var req responsesRequest
	if !c.decode(&req) {
		return
	}
	pl, model, ok := c.requirePool(req.Model, "Missing required parameter: 'model'.")
	if !ok {
		return
	}
	mc, e := req.call(model)
	if e != nil {
		c.failPool(pl, ReasonBadRequest, e)
		return
	}
	mc.render = &responsesResponder{instructions: req.Instructions, maxOutput: req.MaxOutputTokens}
	c.serve(pl, mc)
}

func (req *responsesRequest) call(model string) (*modelCall, *apiError) {
	if e := positive("max_output_tokens", req.MaxOutputTokens); e != nil {
		return nil, e
	}
	input := requestOverhead + definitionTokens(req.Tools)
	if req.Instructions != nil {
		input += textTokens(*req.Instructions)
	}
	var s string
	var items []json.RawMessage
	switch {
	case isNull(req.Input):
		return nil, invalidParam("input", "Missing required parameter: 'input'.")
	case json.Unmarshal(req.Input, &s) == nil:
		input += messageOverhead + textTokens(s)
	case json.Unmarshal(req.Input, &items) == nil:
		for i, it := range items {
			var item struct {
				Content json.RawMessage `json:"content"`
			}
			if t := bytes.TrimSpace(it); len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &item) != nil {
				return nil, invalidParam(fmt.Sprintf("input[%d]", i), "Invalid 'input[%d]': expected an object.", i)
			}
			if item.Content == nil {
				input += messageOverhead + rawTokens(it) // function_call_output and other items
				continue
			}
			n, ok := contentTokens(item.Content)
			if !ok {
				return nil, invalidParam(fmt.Sprintf("input[%d].content", i), "Invalid type for 'input[%d].content': expected a string or an array of content parts.", i)
			}
			input += messageOverhead + n
		}
	default:
		return nil, invalidParam("input", "Invalid type for 'input': expected a string or an array of input items.")
	}
	mc := &modelCall{model: model, input: input, stream: req.Stream}
	if req.MaxOutputTokens != nil {
		mc.statedMax = *req.MaxOutputTokens
	}
	return mc, nil
}

type responseObject struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Error              *struct{}          `json:"error"`
	IncompleteDetails  *incompleteDetails `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int64             `json:"max_output_tokens"`
	Model              string             `json:"model"`
	Output             []responseItem     `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Usage              *responsesUsage    `json:"usage"`
}

type incompleteDetails struct {
	Reason string `json:"reason"`
}

type responseItem struct {
	ID      string       `json:"id"`
	Type    string       `json:"type"`
	Status  string       `json:"status"`
	Role    string       `json:"role"`
	Content []outputText `json:"content"`
}

type outputText struct {
	Type        string     `json:"type"`
	Text        string     `json:"text"`
	Annotations []struct{} `json:"annotations"`
}

type responsesUsage struct {
	InputTokens         int64         `json:"input_tokens"`
	InputTokensDetails  cachedDetails `json:"input_tokens_details"`
	OutputTokens        int64         `json:"output_tokens"`
	OutputTokensDetails reasonDetails `json:"output_tokens_details"`
	TotalTokens         int64         `json:"total_tokens"`
}

// responseEvent is every streaming event of the Responses API; each kind uses a
// subset of the fields.
type responseEvent struct {
	Type           string          `json:"type"`
	SequenceNumber int             `json:"sequence_number"`
	Response       *responseObject `json:"response,omitempty"`
	OutputIndex    *int            `json:"output_index,omitempty"`
	ItemID         string          `json:"item_id,omitempty"`
	ContentIndex   *int            `json:"content_index,omitempty"`
	Item           *responseItem   `json:"item,omitempty"`
	Part           *outputText     `json:"part,omitempty"`
	Delta          *string         `json:"delta,omitempty"`
	Text           *string         `json:"text,omitempty"`
	Code           string          `json:"code,omitempty"`
	Message        string          `json:"message,omitempty"`
}

type responsesResponder struct {
	instructions *string
	maxOutput    *int64
	id, itemID   string
	seq          int
}

func (r *responsesResponder) ids(g *generation) {
	if r.id == "" {
		r.id, r.itemID = g.idr("resp_"), g.idr("msg_")
	}
}

func (r *responsesResponder) object(g *generation, final bool) *responseObject {
	r.ids(g)
	o := &responseObject{ID: r.id, Object: "response", CreatedAt: g.created.Unix(), Status: "in_progress",
		Instructions: r.instructions, MaxOutputTokens: r.maxOutput, Model: g.model, Output: []responseItem{}, ParallelToolCalls: true}
	if final {
		o.Status = "completed"
		if g.truncated {
			o.Status, o.IncompleteDetails = "incomplete", &incompleteDetails{Reason: "max_output_tokens"}
		}
		o.Output = []responseItem{*r.item(g, g.text(), "completed")}
		o.Usage = &responsesUsage{InputTokens: g.input, OutputTokens: g.output(), TotalTokens: g.input + g.output()}
	}
	return o
}

func (r *responsesResponder) item(g *generation, text, status string) *responseItem {
	r.ids(g)
	it := &responseItem{ID: r.itemID, Type: "message", Status: status, Role: "assistant", Content: []outputText{}}
	if status == "completed" {
		it.Content = []outputText{{Type: "output_text", Text: text, Annotations: []struct{}{}}}
	}
	return it
}

func (r *responsesResponder) body(g *generation) any { return r.object(g, true) }

func (r *responsesResponder) emit(sw *streamWriter, e responseEvent) {
	e.SequenceNumber = r.seq
	r.seq++
	sw.event(e.Type, e)
}

var zero = 0

func (r *responsesResponder) open(sw *streamWriter, g *generation) {
	r.emit(sw, responseEvent{Type: "response.created", Response: r.object(g, false)})
	r.emit(sw, responseEvent{Type: "response.in_progress", Response: r.object(g, false)})
	r.emit(sw, responseEvent{Type: "response.output_item.added", OutputIndex: &zero, Item: r.item(g, "", "in_progress")})
	r.emit(sw, responseEvent{Type: "response.content_part.added", ItemID: r.itemID, OutputIndex: &zero, ContentIndex: &zero,
		Part: &outputText{Type: "output_text", Annotations: []struct{}{}}})
}

func (r *responsesResponder) delta(sw *streamWriter, g *generation, i int) {
	r.emit(sw, responseEvent{Type: "response.output_text.delta", ItemID: r.itemID, OutputIndex: &zero, ContentIndex: &zero, Delta: &g.pieces[i]})
}

func (r *responsesResponder) close(sw *streamWriter, g *generation) {
	text := g.text()
	r.emit(sw, responseEvent{Type: "response.output_text.done", ItemID: r.itemID, OutputIndex: &zero, ContentIndex: &zero, Text: &text})
	r.emit(sw, responseEvent{Type: "response.content_part.done", ItemID: r.itemID, OutputIndex: &zero, ContentIndex: &zero,
		Part: &outputText{Type: "output_text", Text: text, Annotations: []struct{}{}}})
	r.emit(sw, responseEvent{Type: "response.output_item.done", OutputIndex: &zero, Item: r.item(g, text, "completed")})
	final := r.object(g, true)
	kind := "response.completed"
	if final.Status == "incomplete" {
		kind = "response.incomplete"
	}
	r.emit(sw, responseEvent{Type: kind, Response: final})
}

func (r *responsesResponder) fail(sw *streamWriter, _ *generation) {
	r.emit(sw, responseEvent{Type: "error", Code: "server_error", Message: "The server had an error while processing your request. Sorry about that!"})
}

// --- model listings ---

func handleModels(c *reqCtx) {
	names := c.acct.modelNames()
	switch c.acct.provider {
	case ProviderAnthropic:
		out := anthropicModelList{Data: []anthropicModel{}}
		for _, n := range names {
			out.Data = append(out.Data, anthropicModelInfo(n))
		}
		if len(names) > 0 {
			out.FirstID, out.LastID = &names[0], &names[len(names)-1]
		}
		writeJSON(c.w, http.StatusOK, out)
	case ProviderGemini:
		out := geminiModelList{Models: []geminiModel{}}
		for _, n := range names {
			out.Models = append(out.Models, c.geminiModelInfo(n))
		}
		writeJSON(c.w, http.StatusOK, out)
	default:
		out := openaiModelList{Object: "list", Data: []openaiModel{}}
		for _, n := range names {
			out.Data = append(out.Data, c.openaiModelInfo(n))
		}
		writeJSON(c.w, http.StatusOK, out)
	}
}

// handleModel describes one model; every name is served (unlisted models get a pool
// of their own), so every name is found.
func handleModel(c *reqCtx) {
	switch c.acct.provider {
	case ProviderAnthropic:
		writeJSON(c.w, http.StatusOK, anthropicModelInfo(c.model))
	case ProviderGemini:
		writeJSON(c.w, http.StatusOK, c.geminiModelInfo(c.model))
	default:
		writeJSON(c.w, http.StatusOK, c.openaiModelInfo(c.model))
	}
}

// modelNames lists the configured model names, then those seen since, by name.
func (a *account) modelNames() []string {
	names := append([]string(nil), a.names...)
	for _, p := range a.allPools()[len(a.pools):] {
		names = append(names, p.name)
	}
	return names
}

// modelsCreated is the creation time the listings show: fixed, so bodies are stable.
const modelsCreated = 1_700_000_000

type openaiModelList struct {
	Object string        `json:"object"`
	Data   []openaiModel `json:"data"`
}

type openaiModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (c *reqCtx) openaiModelInfo(name string) openaiModel {
	owner := "openai"
	if c.acct.provider == ProviderDeepSeek {
		owner = "deepseek"
	}
	return openaiModel{ID: name, Object: "model", Created: modelsCreated, OwnedBy: owner}
}
