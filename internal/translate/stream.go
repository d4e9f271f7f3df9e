package translate

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
)

// maxEventBytes bounds one upstream event (and one tool call's arguments held for
// a Gemini app); provider's StreamTracker has the same bound.
const maxEventBytes = 1 << 20

// maxBlocks bounds the content blocks or tool calls of one answer that a stream
// keeps track of; a stream with more is failed rather than followed.
const maxBlocks = 4096

// Stream translates a streamed answer incrementally: Write takes the upstream's
// bytes as they arrive, in any chunking, and returns the app-dialect bytes that
// every complete upstream event produced, so each event goes out as soon as it is
// whole. Keep-alive comments, blank lines and pings produce nothing. Only a
// Gemini app's tool call is held until complete (Gemini sends calls whole), and the
// Responses API's closing events repeat the text they carried.
//
// The app always gets a well-formed stream of its dialect: an upstream error
// event becomes the app dialect's error event, and a stream that ends early (see
// Flush) ends with one. Usage, Done and Failed report what the upstream said,
// read by a provider.StreamTracker for the target's dialect, the same as for an
// untranslated stream, so settlement and the breaker do not depend on
// translation.
//
// A Stream is for one answer and one goroutine.
type Stream struct {
	t        *Translation
	created  int64
	tracker  *provider.StreamTracker
	upstream sseReader
	em       emitter

	scratch []byte // one upstream event, rebuilt for the tracker
	out     []byte // reused output

	id, model jstr // the answer's, copied from the upstream
	began     bool
	ended     bool   // the app's stream is complete: ended or failed
	failMsg   string // why the translation itself failed the stream

	// Anthropic upstream: what each content block index is, for its deltas:
	// a tool call's index, or blockText / blockOther.
	blocks []int
	tools  int
	// Gemini upstream: calls so far per candidate, and whether it finished.
	geminiCalls    []int
	geminiFinished int
}

const (
	blockText  = -1
	blockOther = -2
)

// NewStream starts translating a streamed answer; created stamps the chunks of
// dialects that carry a creation time.
func (t *Translation) NewStream(created time.Time) *Stream {
	s := &Stream{t: t, created: created.Unix(), tracker: provider.NewStreamTracker(t.target, false)}
	switch t.appOp {
	case provider.OpChatCompletions:
		s.em = &chatEmitter{}
	case provider.OpResponses:
		s.em = &responsesEmitter{}
	case provider.OpMessages:
		s.em = &anthropicEmitter{}
	default:
		s.em = &geminiEmitter{sse: t.appSSE}
	}
	return s
}

// Usage is the usage the upstream reported so far (provider.StreamTracker.Usage).
func (s *Stream) Usage() (provider.Usage, bool) { return s.tracker.Usage() }

// Done reports that the upstream reached its normal end.
func (s *Stream) Done() bool { return s.tracker.Done() }

// Failed reports an error event from the upstream, as StreamTracker.Failed, or a
// stream that could not be translated (an oversized or garbled event), as a
// serverError.
func (s *Stream) Failed() (kind, message string, ok bool) {
	if kind, msg, ok := s.tracker.Failed(); ok {
		return kind, msg, true
	}
	if s.ended && !s.tracker.Done() && s.failMsg != "" {
		return limiterconfig.FailureServerError, s.failMsg, true
	}
	return "", "", false
}

// Write consumes upstream bytes and returns what to send the app now. The slice is
// reused: it is valid until the next Write or Flush.
func (s *Stream) Write(p []byte) []byte {
	s.out = s.out[:0]
	if s.ended {
		return s.out
	}
	s.upstream.feed(p, s.event)
	return s.out
}

// Flush ends the stream when the upstream body ended (normally or not) and returns
// the last bytes for the app. An upstream that did not reach its end gets an error
// event in the app's dialect, so the app does not take a cut answer for a whole
// one. Gemini streams have no closing event: theirs ends at the body's end once
// every candidate has finished.
func (s *Stream) Flush() []byte {
	s.out = s.out[:0]
	if s.ended {
		return s.out
	}
	s.upstream.flush(s.event)
	if s.ended {
		return s.out
	}
	if s.t.target == provider.DialectGemini && s.began && s.geminiFinished > 0 && s.geminiFinished >= len(s.geminiCalls) {
		s.end()
		return s.out
	}
	s.failLocal("the provider's stream ended before the answer was complete")
	return s.out
}

// event handles one complete upstream event.
func (s *Stream) event(name, data []byte, oversize bool) {
	if s.ended {
		return
	}
	if oversize {
		s.failLocal("the provider sent an event larger than the limiter translates")
		return
	}
	s.track(name, data)
	if kind, msg, failed := s.tracker.Failed(); failed {
		s.fail(streamError(s.t.app, kind, s.tracker.FailedCode(), msg))
		return
	}
	// Tokens are copied into the app's events as they are; the walker that finds
	// them does not check what it skips.
	if !json.Valid(data) && (s.t.target != provider.DialectOpenAI || string(data) != "[DONE]") {
		s.failLocal("the provider sent a stream event that is not valid JSON")
		return
	}
	switch s.t.target {
	case provider.DialectOpenAI:
		s.readOpenAI(data)
	case provider.DialectAnthropic:
		s.readAnthropic(name, data)
	default:
		s.readGemini(data)
	}
}

// track feeds the event to the tracker as one SSE event, so that what it has seen
// is exactly the events translated so far, whatever the chunking.
func (s *Stream) track(name, data []byte) {
	b := s.scratch[:0]
	if len(name) > 0 {
		b = append(append(append(b, "event: "...), name...), '\n')
	}
	for {
		line, rest, more := bytes.Cut(data, []byte{'\n'})
		b = append(append(append(b, "data: "...), line...), '\n')
		if !more {
			break
		}
		data = rest
	}
	b = append(b, '\n')
	s.scratch = b
	s.tracker.Write(b)
}

// begin sends the app's opening events once the answer's id and model are known.
func (s *Stream) begin(id, model []byte) {
	if s.began {
		return
	}
	s.began = true
	if kindOf(id) == kindString && !jstr(id).empty() {
		s.id = append(jstr(nil), id...)
	} else {
		s.id = fallbackID(time.Unix(s.created, 0))
	}
	if kindOf(model) == kindString {
		s.model = append(jstr(nil), model...)
	}
	s.em.begin(s)
}

func (s *Stream) end() {
	if !s.began {
		s.begin(nil, nil)
	}
	u, ok := s.tracker.Usage()
	s.em.end(s, u, ok)
	s.ended = true
}

func (s *Stream) fail(e *provider.Error) {
	if !s.began {
		s.begin(nil, nil)
	}
	s.em.fail(s, e)
	s.ended = true
}

// failLocal fails the stream for a reason of the translation's own.
func (s *Stream) failLocal(msg string) {
	s.failMsg = msg
	s.fail(&provider.Error{Status: http.StatusBadGateway, Code: "upstream_stream_error", Message: "aiquota limiter: " + msg})
}

// sse wraps data as one SSE event for the app, with an event name if given.
func (s *Stream) sse(name string, data func([]byte) []byte) {
	if name != "" {
		s.out = append(append(append(s.out, "event: "...), name...), '\n')
	}
	s.out = append(s.out, "data: "...)
	s.out = data(s.out)
	s.out = append(s.out, '\n', '\n')
}

// ---- reading the upstream ----

func (s *Stream) readOpenAI(data []byte) {
	if string(data) == "[DONE]" {
		s.end()
		return
	}
	fs, ok := pickObject(data, "id", "model", "choices")
	id, model, choices := fs[0], fs[1], fs[2]
	if !ok {
		s.failLocal("the provider sent a stream event that is not a JSON object")
		return
	}
	s.begin(id, model)
	provider.EachElement(choices, func(i int, c []byte) bool {
		ci, delta, finish := indexed(i, c, "delta", "finish_reason")
		_ = eachMember(delta, func(k, v []byte) error {
			switch string(k) {
			case "content", "refusal":
				if kindOf(v) == kindString && !jstr(v).empty() {
					s.em.text(s, ci, jstr(v))
				}
			case "tool_calls":
				provider.EachElement(v, func(j int, tc []byte) bool {
					s.openAIToolDelta(ci, j, tc)
					return !s.ended
				})
			}
			return nil
		})
		if !absent(finish) && !s.ended {
			s.em.finish(s, ci, openAIFinish(finish), nil)
		}
		return !s.ended
	})
}

func (s *Stream) openAIToolDelta(ci, j int, tc []byte) {
	idx := j
	var id, fn []byte
	_ = eachMember(tc, func(k, v []byte) error {
		switch string(k) {
		case "index":
			if n, ok := provider.JSONInt(v, maxBlocks); ok {
				idx = int(n)
			}
		case "id":
			id = v
		case "function":
			fn = v
		}
		return nil
	})
	fs := pick(fn, "name", "arguments")
	name, args := fs[0], fs[1]
	if kindOf(id) == kindString && kindOf(name) == kindString {
		s.em.toolStart(s, ci, idx, jstr(id), jstr(name))
	}
	if kindOf(args) == kindString && !jstr(args).empty() && !s.ended {
		s.em.toolArgs(s, ci, idx, jstr(args))
	}
}

func (s *Stream) readAnthropic(name, data []byte) {
	fs := pick(data, "type", "message", "index", "content_block", "delta")
	typ, message, index, block, delta := fs[0], fs[1], fs[2], fs[3], fs[4]
	ev := string(name)
	if ev == "" {
		ev = jstr(typ).String()
	}
	switch ev {
	case "message_start":
		fs := pick(message, "id", "model")
		id, model := fs[0], fs[1]
		s.begin(id, model)
	case "content_block_start":
		s.begin(nil, nil)
		bi, ok := provider.JSONInt(index, maxBlocks)
		if !ok || int(bi) != len(s.blocks) {
			s.failLocal("the provider's content blocks are out of order")
			return
		}
		fs := pick(block, "type", "id", "name", "text")
		btyp, id, tname, text := fs[0], fs[1], fs[2], fs[3]
		switch t := jstr(btyp); {
		case t.is("text"):
			s.blocks = append(s.blocks, blockText)
			if kindOf(text) == kindString && !jstr(text).empty() {
				s.em.text(s, 0, jstr(text))
			}
		case t.is("tool_use") && kindOf(id) == kindString && kindOf(tname) == kindString:
			s.blocks = append(s.blocks, s.tools)
			s.em.toolStart(s, 0, s.tools, jstr(id), jstr(tname))
			s.tools++
		default:
			s.blocks = append(s.blocks, blockOther) // thinking stays with Anthropic
		}
	case "content_block_delta":
		bi, ok := provider.JSONInt(index, maxBlocks)
		if !ok || int(bi) >= len(s.blocks) {
			s.failLocal("the provider sent a delta for a content block it did not start")
			return
		}
		fs := pick(delta, "type", "text", "partial_json")
		dtyp, text, partial := fs[0], fs[1], fs[2]
		switch b := s.blocks[bi]; {
		case b == blockText && jstr(dtyp).is("text_delta") && kindOf(text) == kindString && !jstr(text).empty():
			s.em.text(s, 0, jstr(text))
		case b >= 0 && jstr(dtyp).is("input_json_delta") && kindOf(partial) == kindString && !jstr(partial).empty():
			s.em.toolArgs(s, 0, b, jstr(partial))
		}
	case "message_delta":
		s.begin(nil, nil)
		fs := pick(delta, "stop_reason", "stop_sequence")
		reason, seq := fs[0], fs[1]
		if !absent(reason) {
			if kindOf(seq) != kindString {
				seq = nil
			}
			s.em.finish(s, 0, anthropicFinish(reason), jstr(seq))
		}
	case "message_stop":
		s.end()
	}
}

func (s *Stream) readGemini(data []byte) {
	fs, ok := pickObject(data, "responseId", "modelVersion", "candidates", "promptFeedback")
	id, model, candidates, feedback := fs[0], fs[1], fs[2], fs[3]
	if !ok {
		s.failLocal("the provider sent a stream event that is not a JSON object")
		return
	}
	s.begin(id, model)
	n := 0
	provider.EachElement(candidates, func(i int, c []byte) bool {
		n++
		s.geminiCandidateDelta(i, c)
		return !s.ended
	})
	if n == 0 && len(s.geminiCalls) == 0 {
		blocked := false
		_ = eachMember(feedback, func(k, v []byte) error {
			blocked = blocked || string(k) == "blockReason" && !absent(v)
			return nil
		})
		if blocked {
			s.geminiCalls = append(s.geminiCalls, 0)
			s.geminiFinished++
			s.em.finish(s, 0, finishContentFilter, nil)
		}
	}
}

// indexed reads a streamed choice or candidate, the i-th of its event: its index
// (i unless it says otherwise), its bodyKey member and its finishKey member.
func indexed(i int, c []byte, bodyKey, finishKey string) (ci int, body, finish []byte) {
	ci = i
	_ = eachMember(c, func(k, v []byte) error {
		switch string(k) {
		case "index":
			if n, ok := provider.JSONInt(v, 127); ok {
				ci = int(n)
			}
		case bodyKey:
			body = v
		case finishKey:
			finish = v
		}
		return nil
	})
	return ci, body, finish
}

func (s *Stream) geminiCandidateDelta(i int, c []byte) {
	ci, content, finish := indexed(i, c, "content", "finishReason")
	for len(s.geminiCalls) <= ci {
		s.geminiCalls = append(s.geminiCalls, 0)
	}
	partsRaw := pick(content, "parts")[0]
	provider.EachElement(partsRaw, func(_ int, p []byte) bool {
		fs := pick(p, "text", "thought", "functionCall")
		text, thought, call := fs[0], fs[1], fs[2]
		switch {
		case kindOf(text) == kindString && !isTrue(thought) && !jstr(text).empty():
			s.em.text(s, ci, jstr(text))
		case kindOf(call) == kindObject:
			s.geminiCall(ci, call)
		}
		return !s.ended
	})
	if !absent(finish) && !s.ended {
		s.geminiFinished++
		s.em.finish(s, ci, geminiFinish(finish, s.geminiCalls[ci] > 0), nil)
	}
}

// geminiCall passes on a whole function call: its start, then all its arguments
// as one delta.
func (s *Stream) geminiCall(ci int, call []byte) {
	fs := pick(call, "name", "args", "id")
	name, args, id := fs[0], fs[1], fs[2]
	if kindOf(name) != kindString {
		s.failLocal("the provider sent a function call without a name")
		return
	}
	if kindOf(args) != kindObject {
		args = []byte("{}")
	}
	idx := s.geminiCalls[ci]
	if idx >= maxBlocks {
		s.failLocal("the provider sent too many function calls")
		return
	}
	s.geminiCalls[ci]++
	if kindOf(id) != kindString || jstr(id).empty() {
		id = geminiCallID(s.id, time.Unix(s.created, 0), idx)
	}
	s.em.toolStart(s, ci, idx, jstr(id), jstr(name))
	var buf [256]byte
	s.em.toolArgs(s, ci, idx, appendRawString(nil, compactInto(buf[:0], args)))
}

// ---- the SSE reader ----

// sseReader splits a byte stream into Server-Sent Events (html.spec.whatwg.org,
// "Server-sent events": LF, CRLF or CR line ends, comment lines, events ended by a
// blank line), whatever the chunking.
type sseReader struct {
	line      provider.Bounded // a line begun in an earlier feed
	pendingCR bool
	ev        provider.SSEEvent
}

// feed reads p and calls dispatch for every event it completes.
func (r *sseReader) feed(p []byte, dispatch func(name, data []byte, oversize bool)) {
	if r.pendingCR {
		r.pendingCR = false
		if len(p) > 0 && p[0] == '\n' {
			p = p[1:]
		}
	}
	for len(p) > 0 {
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			r.line.Append(p)
			return
		}
		seg := p[:i]
		switch {
		case p[i] == '\n':
			p = p[i+1:]
		case i+1 < len(p) && p[i+1] == '\n':
			p = p[i+2:]
		case i+1 == len(p):
			r.pendingCR = true
			p = p[i+1:]
		default:
			p = p[i+1:]
		}
		line := seg
		if len(r.line.B) > 0 || r.line.Over {
			r.line.Append(seg)
			line = r.line.B
		}
		r.processLine(line, r.line.Over, dispatch)
		r.line.Reset()
	}
}

// flush handles an event left without its closing blank line at the end of the
// body; the providers end every event properly, but a proxy may not.
func (r *sseReader) flush(dispatch func(name, data []byte, oversize bool)) {
	if len(r.line.B) > 0 || r.line.Over {
		r.processLine(r.line.B, r.line.Over, dispatch)
		r.line.Reset()
	}
	r.processLine(nil, false, dispatch)
}

func (r *sseReader) processLine(line []byte, over bool, dispatch func(name, data []byte, oversize bool)) {
	if over {
		r.ev.Over = true
		return
	}
	if len(line) == 0 {
		if r.ev.HasData || r.ev.Over {
			dispatch(r.ev.Name, r.ev.Data, r.ev.Over)
		}
		r.ev.Reset()
		return
	}
	r.ev.Line(line)
}
