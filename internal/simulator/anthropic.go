package simulator

import (
	"encoding/json"
	"fmt"
	"time"
)

type anthropicRequest struct {
	Model     *string `json:"model"`
	MaxTokens *int64  `json:"max_tokens"`
	Messages  []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	System json.RawMessage `json:"system"`
	Tools  json.RawMessage `json:"tools"`
	Stream bool            `json:"stream"`
}

// anthropicPreamble refuses requests without the anthropic-version header, as the
// API does; the official SDKs always send it, so its absence means a proxy dropped it.
func (c *reqCtx) anthropicPreamble() bool {
	if c.r.Header.Get("anthropic-version") == "" {
		c.failAccount(ReasonBadRequest, invalidParam("", "anthropic-version: header is required"))
		return false
	}
	return true
}

// anthropicRequest reads a Messages API request and finds its model's pool; when it
// cannot, it has answered and ok is false.
func (c *reqCtx) anthropicRequest() (req anthropicRequest, pl *pool, model string, ok bool) {
	if !c.anthropicPreamble() || !c.decode(&req) {
		return req, nil, "", false
	}
	pl, model, ok = c.requirePool(req.Model, "model: Field required")
	return req, pl, model, ok
}

func handleMessages(c *reqCtx) {
	req, pl, model, ok := c.anthropicRequest()
	if !ok {
		return
	}
	input, e := req.inputTokens()
	if e == nil {
		switch {
		case req.MaxTokens == nil:
			e = invalidParam("max_tokens", "max_tokens: Field required")
		case *req.MaxTokens < 1:
			e = invalidParam("max_tokens", "max_tokens: Input should be greater than or equal to 1")
		}
	}
	if e != nil {
		c.failPool(pl, ReasonBadRequest, e)
		return
	}
	c.serve(pl, &modelCall{model: model, input: input, statedMax: *req.MaxTokens, stream: req.Stream, render: &anthropicResponder{}})
}

func handleCountTokens(c *reqCtx) {
	req, pl, _, ok := c.anthropicRequest()
	if !ok {
		return
	}
	input, e := req.inputTokens()
	c.countTokens(pl, "input_tokens", input, e)
}

func (req *anthropicRequest) inputTokens() (int64, *apiError) {
	if len(req.Messages) == 0 {
		return 0, invalidParam("messages", "messages: Field required")
	}
	system, ok := contentTokens(req.System)
	if !ok {
		return 0, invalidParam("system", "system: Input should be a valid string or a list of text blocks")
	}
	n := requestOverhead + system + definitionTokens(req.Tools)
	for i, m := range req.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return 0, invalidParam(fmt.Sprintf("messages.%d.role", i), "messages.%d.role: Input should be 'user' or 'assistant'", i)
		}
		t, ok := contentTokens(m.Content)
		if !ok || isNull(m.Content) {
			return 0, invalidParam(fmt.Sprintf("messages.%d.content", i), "messages.%d.content: Input should be a valid string or a list of content blocks", i)
		}
		n += messageOverhead + t
	}
	return n, nil
}

type anthropicMessage struct {
	ID           string           `json:"id"`
	Type         string           `json:"type"`
	Role         string           `json:"role"`
	Model        string           `json:"model"`
	Content      []anthropicBlock `json:"content"`
	StopReason   *string          `json:"stop_reason"`
	StopSequence *string          `json:"stop_sequence"`
	Usage        anthropicUsage   `json:"usage"`
}

type anthropicBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type anthropicUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
}

// anthropicEvent is every streaming event; each type uses a subset of the fields.
type anthropicEvent struct {
	Type         string            `json:"type"`
	Message      *anthropicMessage `json:"message,omitempty"`
	Index        *int              `json:"index,omitempty"`
	ContentBlock *anthropicBlock   `json:"content_block,omitempty"`
	Delta        any               `json:"delta,omitempty"`
	Usage        *outputUsage      `json:"usage,omitempty"`
	Error        *anthropicError   `json:"error,omitempty"`
}

type textDelta struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type stopDelta struct {
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

type outputUsage struct {
	OutputTokens int64 `json:"output_tokens"`
}

func stopReason(truncated bool) *string {
	r := "end_turn"
	if truncated {
		r = "max_tokens"
	}
	return &r
}

type anthropicResponder struct{ id string }

func (r *anthropicResponder) message(g *generation) *anthropicMessage {
	if r.id == "" {
		r.id = g.idr("msg_")
	}
	return &anthropicMessage{ID: r.id, Type: "message", Role: "assistant", Model: g.model, Content: []anthropicBlock{},
		Usage: anthropicUsage{InputTokens: g.input}}
}

func (r *anthropicResponder) body(g *generation) any {
	m := r.message(g)
	m.Content = []anthropicBlock{{Type: "text", Text: g.text()}}
	m.StopReason = stopReason(g.truncated)
	m.Usage.OutputTokens = g.output()
	return m
}

func (r *anthropicResponder) open(sw *streamWriter, g *generation) {
	m := r.message(g)
	// The API reports one output token at message_start; message_delta has the total.
	m.Usage.OutputTokens = 1
	sw.event("message_start", anthropicEvent{Type: "message_start", Message: m})
	sw.event("content_block_start", anthropicEvent{Type: "content_block_start", Index: &zero, ContentBlock: &anthropicBlock{Type: "text"}})
	sw.event("ping", anthropicEvent{Type: "ping"})
}

func (r *anthropicResponder) delta(sw *streamWriter, g *generation, i int) {
	sw.event("content_block_delta", anthropicEvent{Type: "content_block_delta", Index: &zero, Delta: textDelta{Type: "text_delta", Text: g.pieces[i]}})
}

func (r *anthropicResponder) close(sw *streamWriter, g *generation) {
	sw.event("content_block_stop", anthropicEvent{Type: "content_block_stop", Index: &zero})
	sw.event("message_delta", anthropicEvent{Type: "message_delta", Delta: stopDelta{StopReason: stopReason(g.truncated)},
		Usage: &outputUsage{OutputTokens: g.output()}})
	sw.event("message_stop", anthropicEvent{Type: "message_stop"})
}

func (r *anthropicResponder) fail(sw *streamWriter, _ *generation) {
	sw.event("error", anthropicEvent{Type: "error", Error: &anthropicError{Type: "overloaded_error", Message: "Overloaded"}})
}

type anthropicModelList struct {
	Data    []anthropicModel `json:"data"`
	HasMore bool             `json:"has_more"`
	FirstID *string          `json:"first_id"`
	LastID  *string          `json:"last_id"`
}

type anthropicModel struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
	CreatedAt   string `json:"created_at"`
}

func anthropicModelInfo(name string) anthropicModel {
	return anthropicModel{Type: "model", ID: name, DisplayName: name, CreatedAt: time.Unix(modelsCreated, 0).UTC().Format(time.RFC3339)}
}
