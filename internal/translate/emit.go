package translate

import (
	"bytes"
	"encoding/json"

	"github.com/aiquota/aiquota/internal/provider"
)

// emitter writes the app's dialect of a stream from dialect-neutral events. Tokens
// passed in are valid during the call only.
type emitter interface {
	begin(s *Stream)
	text(s *Stream, c int, tok jstr)
	toolStart(s *Stream, c, i int, id, name jstr)
	toolArgs(s *Stream, c, i int, frag jstr)
	finish(s *Stream, c int, f finishReason, seq jstr)
	end(s *Stream, u provider.Usage, ok bool)
	fail(s *Stream, e *provider.Error)
}

// ---- OpenAI Chat Completions chunks ----

type chatEmitter struct {
	prefix []byte   // {"id":..,"object":"chat.completion.chunk","created":..,"model":..,"choices":[
	roled  []uint64 // choices whose first delta (with the role) went out, as bits
}

func (e *chatEmitter) begin(s *Stream) {
	b := append(e.prefix[:0], `{"id":`...)
	b = append(b, s.id...)
	b = append(b, `,"object":"chat.completion.chunk","created":`...)
	b = appendInt(b, s.created)
	b = append(b, `,"model":`...)
	b = appendModel(b, s.model)
	e.prefix = append(b, `,"choices":[`...)
}

// chunk writes one chunk for choice c: the delta's members (without braces) and a
// finish reason ("" for null).
func (e *chatEmitter) chunk(s *Stream, c int, delta func([]byte) []byte, finish string) {
	s.sse("", func(b []byte) []byte {
		b = append(b, e.prefix...)
		b = append(b, `{"index":`...)
		b = appendInt(b, int64(c))
		b = append(b, `,"delta":{`...)
		if e.firstDelta(c) {
			b = append(b, `"role":"assistant"`...)
			if delta != nil {
				b = append(b, ',')
			}
		}
		if delta != nil {
			b = delta(b)
		}
		b = append(b, `},"logprobs":null,"finish_reason":`...)
		if finish == "" {
			b = append(b, "null"...)
		} else {
			b = append(append(append(b, '"'), finish...), '"')
		}
		return append(b, "}]}"...)
	})
}

// firstDelta reports (once) that choice c has had no delta yet.
func (e *chatEmitter) firstDelta(c int) bool {
	w := c / 64
	for len(e.roled) <= w {
		e.roled = append(e.roled, 0)
	}
	bit := uint64(1) << (c % 64)
	if e.roled[w]&bit != 0 {
		return false
	}
	e.roled[w] |= bit
	return true
}

func (e *chatEmitter) text(s *Stream, c int, tok jstr) {
	e.chunk(s, c, func(b []byte) []byte { return append(append(b, `"content":`...), tok...) }, "")
}

func (e *chatEmitter) toolStart(s *Stream, c, i int, id, name jstr) {
	e.chunk(s, c, func(b []byte) []byte {
		b = append(b, `"tool_calls":[{"index":`...)
		b = appendInt(b, int64(i))
		b = append(append(b, `,"id":`...), id...)
		b = append(append(b, `,"type":"function","function":{"name":`...), name...)
		return append(b, `,"arguments":""}}]`...)
	}, "")
}

func (e *chatEmitter) toolArgs(s *Stream, c, i int, frag jstr) {
	e.chunk(s, c, func(b []byte) []byte {
		b = append(b, `"tool_calls":[{"index":`...)
		b = appendInt(b, int64(i))
		b = append(append(b, `,"function":{"arguments":`...), frag...)
		return append(b, "}}]"...)
	}, "")
}

func (e *chatEmitter) finish(s *Stream, c int, f finishReason, _ jstr) {
	e.chunk(s, c, nil, chatFinish(f))
}

func (e *chatEmitter) end(s *Stream, u provider.Usage, _ bool) {
	if s.t.includeUsage {
		s.sse("", func(b []byte) []byte {
			b = append(b, e.prefix...)
			b = append(b, `],"usage":`...)
			b = appendChatUsage(b, u)
			return append(b, '}')
		})
	}
	s.sse("", func(b []byte) []byte { return append(b, "[DONE]"...) })
}

func (e *chatEmitter) fail(s *Stream, pe *provider.Error) {
	_, body := provider.ErrorBody(provider.DialectOpenAI, pe)
	s.sse("", func(b []byte) []byte { return append(b, body...) })
}

// ---- Anthropic Messages events ----

type anthropicEmitter struct {
	blocks int // content blocks started
	open   int // the open block's kind: 0 none, blockText, or a tool index + 1
	reason finishReason
	seq    []byte
}

func (e *anthropicEmitter) begin(s *Stream) {
	u, _ := s.tracker.Usage()
	s.sse("message_start", func(b []byte) []byte {
		b = append(b, `{"type":"message_start","message":{"id":`...)
		b = append(b, s.id...)
		b = append(b, `,"type":"message","role":"assistant","model":`...)
		b = appendModel(b, s.model)
		b = append(b, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":`...)
		b = appendAnthropicUsage(b, provider.Usage{InputTokens: u.InputTokens, CachedInputTokens: u.CachedInputTokens})
		return append(b, "}}"...)
	})
}

func (e *anthropicEmitter) closeBlock(s *Stream) {
	if e.open == 0 {
		return
	}
	e.open = 0
	s.sse("content_block_stop", func(b []byte) []byte {
		b = append(b, `{"type":"content_block_stop","index":`...)
		b = appendInt(b, int64(e.blocks-1))
		return append(b, '}')
	})
}

func (e *anthropicEmitter) delta(s *Stream, kind string, field string, tok jstr) {
	s.sse("content_block_delta", func(b []byte) []byte {
		b = append(b, `{"type":"content_block_delta","index":`...)
		b = appendInt(b, int64(e.blocks-1))
		b = append(append(append(b, `,"delta":{"type":"`...), kind...), `","`...)
		b = append(append(append(b, field...), `":`...), tok...)
		return append(b, "}}"...)
	})
}

func (e *anthropicEmitter) text(s *Stream, _ int, tok jstr) {
	if e.open != blockText {
		e.closeBlock(s)
		e.open = blockText
		e.blocks++
		s.sse("content_block_start", func(b []byte) []byte {
			b = append(b, `{"type":"content_block_start","index":`...)
			b = appendInt(b, int64(e.blocks-1))
			return append(b, `,"content_block":{"type":"text","text":""}}`...)
		})
	}
	e.delta(s, "text_delta", "text", tok)
}

func (e *anthropicEmitter) toolStart(s *Stream, _, i int, id, name jstr) {
	e.closeBlock(s)
	e.open = i + 1
	e.blocks++
	s.sse("content_block_start", func(b []byte) []byte {
		b = append(b, `{"type":"content_block_start","index":`...)
		b = appendInt(b, int64(e.blocks-1))
		b = append(b, `,"content_block":{"type":"tool_use","id":`...)
		b = appendToolID(b, id)
		b = append(append(b, `,"name":`...), name...)
		return append(b, `,"input":{}}}`...)
	})
}

func (e *anthropicEmitter) toolArgs(s *Stream, _, i int, frag jstr) {
	if e.open != i+1 {
		// Anthropic's blocks cannot interleave; no provider streams calls so.
		s.failLocal("the provider interleaved the arguments of several tool calls")
		return
	}
	e.delta(s, "input_json_delta", "partial_json", frag)
}

func (e *anthropicEmitter) finish(s *Stream, _ int, f finishReason, seq jstr) {
	e.closeBlock(s)
	e.reason = f
	e.seq = append(e.seq[:0], seq...)
}

func (e *anthropicEmitter) end(s *Stream, u provider.Usage, _ bool) {
	e.closeBlock(s)
	s.sse("message_delta", func(b []byte) []byte {
		b = append(b, `{"type":"message_delta","delta":{"stop_reason":"`...)
		b = append(b, anthropicStop(e.reason)...)
		b = append(b, `","stop_sequence":`...)
		if e.reason == finishStopSequence && len(e.seq) > 2 {
			b = append(b, e.seq...)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `},"usage":`...)
		b = appendAnthropicUsage(b, u)
		return append(b, '}')
	})
	s.sse("message_stop", func(b []byte) []byte { return append(b, `{"type":"message_stop"}`...) })
}

func (e *anthropicEmitter) fail(s *Stream, pe *provider.Error) {
	_, body := provider.ErrorBody(provider.DialectAnthropic, pe)
	s.sse("error", func(b []byte) []byte { return append(b, body...) })
}

// ---- Gemini GenerateContentResponse chunks ----

// geminiEmitter writes SSE (alt=sse) or a JSON array, as the app asked. Function
// calls are held until whole: Gemini sends each call complete, with its arguments
// as an object.
type geminiEmitter struct {
	sse      bool
	elements int
	pending  []geminiPending // per candidate
	finishes []finishReason  // per candidate, finishUnknown until it finishes
}

type geminiPending struct {
	active bool
	name   []byte
	args   []byte // decoded JSON text
}

func (e *geminiEmitter) begin(*Stream) {}

// element writes one GenerateContentResponse.
func (e *geminiEmitter) element(s *Stream, body func([]byte) []byte) {
	if e.sse {
		s.sse("", body)
		return
	}
	if e.elements == 0 {
		s.out = append(s.out, '[')
	} else {
		s.out = append(s.out, ",\r\n"...)
	}
	e.elements++
	s.out = body(s.out)
}

func (e *geminiEmitter) trailer(s *Stream, b []byte) []byte {
	b = append(b, `,"modelVersion":`...)
	b = appendModel(b, s.model)
	b = append(b, `,"responseId":`...)
	return append(append(b, s.id...), '}')
}

// candidate writes a chunk of one candidate holding one part.
func (e *geminiEmitter) candidate(s *Stream, c int, part func([]byte) []byte) {
	e.element(s, func(b []byte) []byte {
		b = append(b, `{"candidates":[{"content":{"role":"model","parts":[`...)
		b = part(b)
		b = append(b, `]},"index":`...)
		b = appendInt(b, int64(c))
		return e.trailer(s, append(b, "}]"...))
	})
}

func (e *geminiEmitter) pendingFor(c int) *geminiPending {
	for len(e.pending) <= c {
		e.pending = append(e.pending, geminiPending{})
	}
	return &e.pending[c]
}

func (e *geminiEmitter) flushCall(s *Stream, c int) {
	if c >= len(e.pending) || !e.pending[c].active {
		return
	}
	p := &e.pending[c]
	p.active = false
	args := bytes.TrimSpace(p.args)
	if len(args) == 0 {
		args = []byte("{}")
	}
	if !json.Valid(args) || args[0] != '{' {
		s.failLocal("the provider's tool call arguments are not a JSON object")
		return
	}
	e.candidate(s, c, func(b []byte) []byte {
		b = append(append(b, `{"functionCall":{"name":`...), p.name...)
		b = append(append(b, `,"args":`...), args...)
		return append(b, "}}"...)
	})
}

func (e *geminiEmitter) text(s *Stream, c int, tok jstr) {
	e.flushCall(s, c)
	if s.ended {
		return
	}
	e.candidate(s, c, func(b []byte) []byte {
		return append(append(append(b, `{"text":`...), tok...), '}')
	})
}

func (e *geminiEmitter) toolStart(s *Stream, c, _ int, _, name jstr) {
	e.flushCall(s, c)
	p := e.pendingFor(c)
	p.active = true
	p.name = append(p.name[:0], name...)
	p.args = p.args[:0]
}

func (e *geminiEmitter) toolArgs(s *Stream, c, _ int, frag jstr) {
	p := e.pendingFor(c)
	if !p.active {
		return
	}
	dec := frag.String()
	if len(p.args)+len(dec) > maxEventBytes {
		s.failLocal("a tool call's arguments are larger than the limiter translates")
		return
	}
	p.args = append(p.args, dec...)
}

func (e *geminiEmitter) finish(s *Stream, c int, f finishReason, _ jstr) {
	e.flushCall(s, c)
	for len(e.finishes) <= c {
		e.finishes = append(e.finishes, finishUnknown)
	}
	e.finishes[c] = f
}

func (e *geminiEmitter) end(s *Stream, u provider.Usage, ok bool) {
	for c := range e.pending {
		e.flushCall(s, c)
		if s.ended {
			return
		}
	}
	e.element(s, func(b []byte) []byte {
		b = append(b, `{"candidates":[`...)
		n := 0
		for c, f := range e.finishes {
			if f == finishUnknown {
				continue
			}
			if n > 0 {
				b = append(b, ',')
			}
			n++
			b = append(b, `{"content":{"role":"model","parts":[{"text":""}]},"finishReason":"`...)
			b = append(b, geminiFinishName(f)...)
			b = append(b, `","index":`...)
			b = appendInt(b, int64(c))
			b = append(b, '}')
		}
		b = append(b, ']')
		if ok {
			b = append(b, `,"usageMetadata":`...)
			b = appendGeminiUsage(b, u)
		}
		return e.trailer(s, b)
	})
	if !e.sse {
		s.out = append(s.out, ']')
	}
}

func (e *geminiEmitter) fail(s *Stream, pe *provider.Error) {
	_, body := provider.ErrorBody(provider.DialectGemini, pe)
	e.element(s, func(b []byte) []byte { return append(b, body...) })
	if !e.sse {
		s.out = append(s.out, ']')
	}
}

// ---- OpenAI Responses events ----

// responsesEmitter writes the Responses API's event stream
// (platform.openai.com/docs/api-reference/responses-streaming). Its closing events
// (output_text.done, output_item.done, response.completed) repeat the whole
// output, so the items are kept as they stream.
type responsesEmitter struct {
	seq    int64
	items  []responsesItem
	open   bool // the last item is still streaming
	reason finishReason
}

type responsesItem struct {
	call     bool
	id       []byte // item id, a string token
	callID   []byte // function_call call_id token
	name     []byte
	contents []byte // text or arguments: JSON string content, escaped
}

func (e *responsesEmitter) event(s *Stream, typ string, body func([]byte) []byte) {
	s.sse(typ, func(b []byte) []byte {
		b = append(append(append(b, `{"type":"`...), typ...), `","sequence_number":`...)
		b = appendInt(b, e.seq)
		e.seq++
		return append(body(b), '}')
	})
}

// response writes the response object in a state.
func (e *responsesEmitter) response(s *Stream, b []byte, status string, errObj []byte, u *provider.Usage) []byte {
	b = append(b, `{"id":`...)
	b = responsesID(b, "resp_", s.id)
	b = append(b, `,"object":"response","created_at":`...)
	b = appendInt(b, s.created)
	b = append(append(append(b, `,"status":"`...), status...), '"')
	b = append(b, `,"error":`...)
	if errObj != nil {
		b = append(b, errObj...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"incomplete_details":`...)
	if status == "incomplete" {
		_, inc := responsesStatus(e.reason)
		b = append(b, inc...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"model":`...)
	b = appendModel(b, s.model)
	b = append(b, `,"output":[`...)
	for i := range e.items {
		if i > 0 {
			b = append(b, ',')
		}
		b = e.appendItem(b, &e.items[i], "completed")
	}
	b = append(b, `],"parallel_tool_calls":true,"tool_choice":"auto","tools":[],"usage":`...)
	if u != nil {
		b = appendResponsesUsage(b, *u)
	} else {
		b = append(b, "null"...)
	}
	return append(b, '}')
}

func (e *responsesEmitter) appendItem(b []byte, it *responsesItem, status string) []byte {
	if it.call {
		b = append(b, `{"type":"function_call","id":`...)
		b = append(b, it.id...)
		b = append(append(b, `,"call_id":`...), it.callID...)
		b = append(append(b, `,"name":`...), it.name...)
		b = append(append(append(b, `,"arguments":"`...), it.contents...), '"')
		return append(append(append(b, `,"status":"`...), status...), `"}`...)
	}
	b = append(b, `{"type":"message","id":`...)
	b = append(b, it.id...)
	b = append(append(append(b, `,"status":"`...), status...), `","role":"assistant","content":[`...)
	if status == "completed" {
		b = e.appendTextPart(b, it)
	}
	return append(b, "]}"...)
}

func (e *responsesEmitter) appendTextPart(b []byte, it *responsesItem) []byte {
	b = append(append(append(b, `{"type":"output_text","text":"`...), it.contents...), '"')
	return append(b, `,"annotations":[],"logprobs":[]}`...)
}

func (e *responsesEmitter) begin(s *Stream) {
	for _, typ := range []string{"response.created", "response.in_progress"} {
		e.event(s, typ, func(b []byte) []byte {
			return e.response(s, append(b, `,"response":`...), "in_progress", nil, nil)
		})
	}
}

// itemHead writes the item_id and output_index members of an item's events.
func (e *responsesEmitter) itemHead(b []byte) []byte {
	it := &e.items[len(e.items)-1]
	b = append(append(b, `,"item_id":`...), it.id...)
	b = append(b, `,"output_index":`...)
	return appendInt(b, int64(len(e.items)-1))
}

func (e *responsesEmitter) addItem(s *Stream, it responsesItem) {
	e.closeItem(s)
	e.items = append(e.items, it)
	e.open = true
	e.event(s, "response.output_item.added", func(b []byte) []byte {
		b = append(b, `,"output_index":`...)
		b = appendInt(b, int64(len(e.items)-1))
		b = append(b, `,"item":`...)
		return e.appendItem(b, &e.items[len(e.items)-1], "in_progress")
	})
}

func (e *responsesEmitter) closeItem(s *Stream) {
	if !e.open {
		return
	}
	e.open = false
	it := &e.items[len(e.items)-1]
	if it.call {
		e.event(s, "response.function_call_arguments.done", func(b []byte) []byte {
			b = e.itemHead(b)
			b = append(append(b, `,"name":`...), it.name...)
			return append(append(append(b, `,"arguments":"`...), it.contents...), '"')
		})
	} else {
		e.event(s, "response.output_text.done", func(b []byte) []byte {
			b = append(e.itemHead(b), `,"content_index":0,"text":"`...)
			return append(append(b, it.contents...), `","logprobs":[]`...)
		})
		e.event(s, "response.content_part.done", func(b []byte) []byte {
			b = append(e.itemHead(b), `,"content_index":0,"part":`...)
			return e.appendTextPart(b, it)
		})
	}
	e.event(s, "response.output_item.done", func(b []byte) []byte {
		b = append(b, `,"output_index":`...)
		b = appendInt(b, int64(len(e.items)-1))
		b = append(b, `,"item":`...)
		return e.appendItem(b, it, "completed")
	})
}

func (e *responsesEmitter) text(s *Stream, c int, tok jstr) {
	if c != 0 {
		return // the Responses API has one output
	}
	if !e.open || e.items[len(e.items)-1].call {
		id := responsesID(nil, "msg_", s.id)
		id = append(id[:len(id)-1], '_')
		id = append(appendInt(id, int64(len(e.items))), '"')
		e.addItem(s, responsesItem{id: id})
		e.event(s, "response.content_part.added", func(b []byte) []byte {
			b = append(e.itemHead(b), `,"content_index":0,"part":`...)
			return append(b, `{"type":"output_text","text":"","annotations":[],"logprobs":[]}`...)
		})
	}
	it := &e.items[len(e.items)-1]
	it.contents = append(it.contents, tok.interior()...)
	e.event(s, "response.output_text.delta", func(b []byte) []byte {
		b = append(e.itemHead(b), `,"content_index":0,"delta":`...)
		return append(append(b, tok...), `,"logprobs":[]`...)
	})
}

func (e *responsesEmitter) toolStart(s *Stream, c, _ int, id, name jstr) {
	if c != 0 {
		return
	}
	e.addItem(s, responsesItem{
		call:   true,
		id:     responsesID(nil, "fc_", id),
		callID: append([]byte(nil), id...),
		name:   append([]byte(nil), name...),
	})
}

func (e *responsesEmitter) toolArgs(s *Stream, c, _ int, frag jstr) {
	if c != 0 || !e.open || !e.items[len(e.items)-1].call {
		return
	}
	it := &e.items[len(e.items)-1]
	it.contents = append(it.contents, frag.interior()...)
	e.event(s, "response.function_call_arguments.delta", func(b []byte) []byte {
		return append(append(e.itemHead(b), `,"delta":`...), frag...)
	})
}

func (e *responsesEmitter) finish(s *Stream, c int, f finishReason, _ jstr) {
	if c != 0 {
		return
	}
	e.closeItem(s)
	e.reason = f
}

func (e *responsesEmitter) end(s *Stream, u provider.Usage, _ bool) {
	e.closeItem(s)
	status, _ := responsesStatus(e.reason)
	typ := "response.completed"
	if status == "incomplete" {
		typ = "response.incomplete"
	}
	e.event(s, typ, func(b []byte) []byte {
		return e.response(s, append(b, `,"response":`...), status, nil, &u)
	})
}

func (e *responsesEmitter) fail(s *Stream, pe *provider.Error) {
	e.closeItem(s)
	errObj := append([]byte(`{"code":`), appendString(nil, pe.Code)...)
	errObj = append(append(errObj, `,"message":`...), appendString(nil, pe.Message)...)
	errObj = append(errObj, '}')
	e.event(s, "response.failed", func(b []byte) []byte {
		return e.response(s, append(b, `,"response":`...), "failed", errObj, nil)
	})
}
