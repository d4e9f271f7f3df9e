package provider

import (
	"bytes"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// maxEventBytes bounds what a StreamTracker buffers of one event (or, for a
// Gemini JSON-array stream, one element). Larger events are forwarded untouched
// and not parsed; every provider's usage and error events are far smaller.
const maxEventBytes = 1 << 20

// maxEventNameBytes bounds an SSE event name; real ones are under 40 bytes.
const maxEventNameBytes = 64

// StreamTracker sits on the byte stream of a streamed response going to the app.
// Write consumes upstream bytes and returns the bytes to forward now; the tracker
// reads Server-Sent Events (html.spec.whatwg.org, "Server-sent events": LF, CRLF
// or CR line ends, ": comment" lines, blank lines that end an event, events split
// across writes anywhere) and, for Gemini, also the bare JSON array that
// streamGenerateContent sends without alt=sse.
//
// It accumulates usage (the OpenAI final usage chunk or Responses
// response.completed; Anthropic message_start input plus message_delta output;
// Gemini usageMetadata, cumulative in each chunk) and notices error events
// (Anthropic `event: error`, OpenAI `{"error":...}` data, Gemini error objects).
//
// With stripUsageChunk, the OpenAI usage-only chunk (empty choices plus usage) is
// removed from what is forwarded: the limiter asked for it, the app did not. Only
// then does the tracker hold bytes back, and only those of the one event still
// incomplete; without stripping, Write returns p itself.
//
// A StreamTracker is for one stream and one goroutine.
type StreamTracker struct {
	dialect Dialect
	strip   bool
	mode    streamMode

	// SSE parsing state.
	line      Bounded  // a line begun in an earlier Write; Over drops its content
	pendingCR bool     // the last Write ended in CR; a leading LF belongs to it
	ev        SSEEvent // the current event

	// Stripping state: the bytes of the current, undecided event (bounded; an
	// event that outgrows the bound is forwarded and passes through).
	held        []byte
	passThrough bool
	lastDropped bool   // the last decided event was stripped
	out         []byte // reused output buffer

	// Gemini JSON-array state.
	depth    int
	inString bool
	escaped  bool
	elem     Bounded // the current element

	usage    Usage
	hasUsage bool
	done     bool
	failed   bool
	failKind string
	failMsg  string
	failCode string
}

type streamMode uint8

const (
	modeUndecided streamMode = iota
	modeSSE
	modeArray
)

// NewStreamTracker returns a tracker for a response in dialect d.
func NewStreamTracker(d Dialect, stripUsageChunk bool) *StreamTracker {
	return &StreamTracker{dialect: d, strip: stripUsageChunk && d == DialectOpenAI}
}

// Usage returns the usage the stream reported so far; ok is false if it reported
// none (an OpenAI stream without include_usage, or one cut short).
func (t *StreamTracker) Usage() (Usage, bool) { return t.usage, t.hasUsage }

// Done reports whether the stream reached its provider's normal end: [DONE] or
// response.completed (OpenAI), message_stop (Anthropic), a finishReason (Gemini).
// A stream that ends without it was cut short, and its usage may be partial.
func (t *StreamTracker) Done() bool { return t.done }

// Failed reports an error event in the stream: kind is a limiterconfig.Failure*
// kind (serverError when the provider's type is unknown), message the provider's
// message (bounded).
func (t *StreamTracker) Failed() (kind string, message string, ok bool) {
	return t.failKind, t.failMsg, t.failed
}

// FailedCode is the provider's code or type for the error Failed reports, e.g.
// overloaded_error.
func (t *StreamTracker) FailedCode() string { return t.failCode }

// Write consumes upstream bytes and returns those to forward now: p itself unless
// an event is being held or stripped. The returned slice may be a buffer the
// tracker reuses; it is valid until the next call to Write or Flush.
func (t *StreamTracker) Write(p []byte) (forward []byte) {
	if len(p) == 0 {
		return p
	}
	if t.mode == modeUndecided {
		i := skipSpace(p, 0)
		if i == len(p) {
			// Only blank keep-alive lines so far; they are harmless either way,
			// but the SSE parser must see them to stay in step.
			if t.dialect != DialectGemini {
				t.mode = modeSSE
			} else {
				return p
			}
		} else if p[i] == '[' && t.dialect == DialectGemini {
			t.mode = modeArray
		} else {
			t.mode = modeSSE
		}
	}
	if t.mode == modeArray {
		t.scanArray(p)
		return p
	}
	if !t.strip {
		t.scanSSE(p, nil)
		return p
	}
	return t.writeStripping(p)
}

// Flush ends the stream: an event left without its closing blank line is still
// read for usage (the app's SSE client will drop it), and when stripping, its held
// bytes are returned unless it is the usage chunk.
func (t *StreamTracker) Flush() (forward []byte) {
	if t.mode != modeSSE {
		return nil
	}
	if len(t.line.B) > 0 && !t.line.Over {
		t.ev.Line(t.line.B)
	}
	t.line.Reset()
	keep := t.dispatch()
	if !t.strip || len(t.held) == 0 {
		return nil
	}
	held := t.held
	t.held = nil
	if !keep {
		return nil
	}
	return held
}

// writeStripping forwards whole events, dropping usage-only chunks, and holds the
// incomplete event at the end of p until a later Write completes it.
func (t *StreamTracker) writeStripping(p []byte) []byte {
	var (
		out      []byte // unused (built false) while the output is p[directAt:keepEnd]
		built    bool
		directAt int  // start of the direct output in p
		keepEnd  int  // end of the direct output in p
		segStart int  // start in p of the undecided event's bytes
		prefix   bool // the undecided event began in an earlier Write
	)
	prefix = len(t.held) > 0 || t.passThrough
	if t.pendingCR && p[0] == '\n' && !prefix {
		// The LF completes the CRLF that ended the last event: it goes, or
		// not, with that event.
		if t.lastDropped {
			directAt = 1
		}
		keepEnd, segStart = 1, 1
	}
	emit := func(b []byte) {
		if !built {
			out = append(t.out[:0], p[directAt:keepEnd]...)
			built = true
		}
		out = append(out, b...)
	}
	t.scanSSE(p, func(end int, keep bool) {
		switch {
		case t.passThrough:
			// The head of this event went out already; send the rest.
			t.passThrough = false
			if built {
				out = append(out, p[segStart:end]...)
			} else {
				keepEnd = end
			}
		case prefix:
			if keep {
				emit(t.held)
				out = append(out, p[segStart:end]...)
			} else if !built {
				out, built = t.out[:0], true
			}
			t.held = t.held[:0]
		case !built && keep && segStart == keepEnd:
			keepEnd = end
		case keep:
			emit(p[segStart:end])
		default:
			if !built {
				out = append(t.out[:0], p[directAt:keepEnd]...)
				built = true
			}
		}
		prefix = false
		t.lastDropped = !keep
		segStart = end
	})
	// While nothing was dropped, the output is contiguous in p and ends where
	// the undecided event begins: forwarding the rest just extends it.
	forwardRest := func() {
		if built {
			out = append(out, p[segStart:]...)
		} else {
			keepEnd = len(p)
		}
	}
	rest := p[segStart:]
	switch {
	case len(rest) == 0:
	case t.passThrough:
		forwardRest()
	case len(t.held)+len(rest) > maxEventBytes:
		// Too big to hold: forward what there is and let the rest through.
		if len(t.held) > 0 {
			emit(t.held)
			t.held = t.held[:0]
		}
		forwardRest()
		t.passThrough = true
		t.ev.Over = true
	default:
		t.held = append(t.held, rest...)
	}
	if !built {
		return p[directAt:keepEnd]
	}
	t.out = out[:0]
	return out
}

// scanSSE splits p into lines, carrying partial lines across calls, and calls
// boundary with the offset just past each blank line that ends an event, and
// whether to keep that event.
func (t *StreamTracker) scanSSE(p []byte, boundary func(end int, keep bool)) {
	i := 0
	if t.pendingCR {
		t.pendingCR = false
		if p[0] == '\n' {
			i = 1
		}
	}
	for i < len(p) {
		rest := p[i:]
		n := bytes.IndexByte(rest, '\n')
		seg := rest
		if n >= 0 {
			seg = rest[:n]
		}
		term := 1
		if c := bytes.IndexByte(seg, '\r'); c >= 0 {
			n = c
			switch {
			case c+1 < len(rest) && rest[c+1] == '\n':
				term = 2
			case c+1 == len(rest):
				t.pendingCR = true
			}
		}
		if n < 0 {
			t.line.Append(rest)
			return
		}
		var line []byte
		if len(t.line.B) > 0 || t.line.Over {
			t.line.Append(rest[:n])
			if !t.line.Over {
				line = t.line.B
			}
		} else {
			line = rest[:n]
		}
		blank := n == 0 && len(t.line.B) == 0 && !t.line.Over
		if !blank {
			if line == nil {
				t.ev.Over = true // an oversize line: the event cannot be parsed
			} else {
				t.ev.Line(line)
			}
		}
		t.line.Reset()
		i += n + term
		if blank {
			keep := t.dispatch()
			if boundary != nil {
				boundary(i, keep)
			}
		}
	}
}

// dispatch ends the current event, reads it, and reports whether to forward it.
func (t *StreamTracker) dispatch() (keep bool) {
	keep = true
	if t.ev.HasData && !t.ev.Over {
		keep = !t.readEvent(t.ev.Name, t.ev.Data)
	}
	t.ev.Reset()
	return keep
}

// readEvent reads one event's data and reports whether it is a usage-only chunk
// to strip.
func (t *StreamTracker) readEvent(name, data []byte) (strip bool) {
	switch t.dialect {
	case DialectAnthropic:
		t.readAnthropic(name, data)
	case DialectGemini:
		t.readGemini(data)
	default:
		return t.readOpenAI(name, data)
	}
	return false
}

// The members of a stream event the tracker reads, by dialect.
var (
	usageAndError        = []string{"usage", "error"}
	openAIEventFields    = []string{"usage", "error", "choices", "type", "response"}
	anthropicEventFields = []string{"usage", "error", "type", "message"}
	geminiEventFields    = []string{"usageMetadata", "error", "candidates"}
)

func (t *StreamTracker) readOpenAI(name, data []byte) (strip bool) {
	if string(data) == "[DONE]" {
		t.done = true
		return false
	}
	// Most events are content deltas; skip them without walking their JSON.
	switch string(name) {
	case "":
		if !openAIMayMatter(data) {
			return false
		}
	case "response.completed", "response.incomplete", "response.failed", "error":
	default:
		return false
	}
	var m [5][]byte
	collect(data, openAIEventFields, m[:])
	usage, errObj, choices, typ, response := m[0], m[1], m[2], m[3], m[4]
	evType := name
	if len(evType) == 0 {
		evType = str(typ)
	}
	switch string(evType) {
	case "response.completed", "response.incomplete", "response.failed":
		// The Responses API reports usage on the final response object.
		var rm [2][]byte
		collect(response, usageAndError, rm[:])
		ru, re := rm[0], rm[1]
		if u, ok := openAIUsage(ru); ok {
			t.usage, t.hasUsage = u, true
		}
		if string(evType) == "response.failed" {
			t.fail(parseErrorObject(DialectOpenAI, re))
		} else {
			t.done = true
		}
		return false
	case "error":
		if errObj != nil {
			t.fail(parseErrorObject(DialectOpenAI, errObj))
		} else {
			t.fail(parseErrorObject(DialectOpenAI, data)) // Responses: {"type":"error","code","message"}
		}
		return false
	}
	if errObj != nil && kindOf(errObj) != kindNull {
		t.fail(parseErrorObject(DialectOpenAI, errObj))
		return false
	}
	if u, ok := openAIUsage(usage); ok {
		t.usage, t.hasUsage = u, true
		return t.strip && isEmptyArray(choices)
	}
	return false
}

// openAIMayMatter is a cheap filter run before walking an event's JSON: content
// deltas have no "usage" object, no "error" and no "type". Three vectorised
// substring searches cost less than one walk of the JSON.
func openAIMayMatter(data []byte) bool {
	return hasObjectMember(data, `"usage"`) || bytes.Contains(data, []byte(`"error"`)) || bytes.Contains(data, []byte(`"type"`))
}

// hasObjectMember reports whether data has a member named key (quoted) whose
// value is an object, at any depth.
func hasObjectMember(data []byte, key string) bool {
	for {
		i := bytes.Index(data, []byte(key))
		if i < 0 {
			return false
		}
		data = data[i+len(key):]
		j := skipSpace(data, 0)
		if j < len(data) && data[j] == ':' {
			if j = skipSpace(data, j+1); j < len(data) && data[j] == '{' {
				return true
			}
		}
	}
}

func isEmptyArray(v []byte) bool {
	return len(v) >= 2 && v[0] == '[' && skipSpace(v, 1) == len(v)-1
}

func (t *StreamTracker) readAnthropic(name, data []byte) {
	switch string(name) {
	case "", "message_start", "message_delta", "message_stop", "error":
	default:
		return // content blocks and pings carry nothing the limiter needs
	}
	var m [4][]byte
	collect(data, anthropicEventFields, m[:])
	usage, errObj, typ, message := m[0], m[1], m[2], m[3]
	evType := name
	if len(evType) == 0 {
		evType = str(typ)
	}
	switch string(evType) {
	case "message_start":
		collect(message, usageAndError[:1], m[:1]) // m[0] is still the event's usage
		usage = m[0]
		var f [4]int64
		if _, ok := usageFields(usage, anthropicUsageFields, f[:]); ok {
			t.usage = Usage{InputTokens: f[0] + f[2] + f[3], OutputTokens: f[1], CachedInputTokens: f[3]}
			t.hasUsage = true
		}
	case "message_delta":
		// Counts here are cumulative. Output always comes here; input only
		// from some gateways, whose message_start says 0.
		var f [4]int64
		present, ok := usageFields(usage, anthropicUsageFields, f[:])
		if !ok {
			return
		}
		if present&2 != 0 {
			t.usage.OutputTokens = f[1]
		}
		if in := f[0] + f[2] + f[3]; in > 0 {
			t.usage.InputTokens, t.usage.CachedInputTokens = in, f[3]
		}
		t.hasUsage = true
	case "message_stop":
		t.done = true
	case "error":
		t.fail(parseErrorObject(DialectAnthropic, errObj))
	}
}

func (t *StreamTracker) readGemini(data []byte) {
	var m [3][]byte
	collect(data, geminiEventFields, m[:])
	usage, errObj, candidates := m[0], m[1], m[2]
	if u, ok := geminiUsageMetadata(usage); ok {
		t.usage, t.hasUsage = u, true
	}
	if errObj != nil {
		t.fail(parseErrorObject(DialectGemini, errObj))
	}
	eachElement(candidates, func(_ int, c []byte) bool {
		eachMember(c, func(k []byte, esc bool, v []byte) bool {
			if keyIs(k, esc, "finishReason") && kindOf(v) == kindString {
				t.done = true
			}
			return true
		})
		return true
	})
}

// scanArray follows a Gemini JSON-array stream, reading each top-level element.
func (t *StreamTracker) scanArray(p []byte) {
	start := -1 // where the current element began in p; -1 if in an earlier Write
	for i := 0; i < len(p); i++ {
		c := p[i]
		if t.inString {
			switch {
			case t.escaped:
				t.escaped = false
			case c == '\\':
				t.escaped = true
			case c == '"':
				t.inString = false
			}
			continue
		}
		switch c {
		case '"':
			t.inString = true
		case '{', '[':
			t.depth++
			if t.depth == 2 {
				start = i
				t.elem.Reset()
			}
		case '}', ']':
			if t.depth == 2 {
				t.finishElement(p, start, i+1)
				start = -1
			}
			if t.depth > 0 {
				t.depth--
			}
		}
	}
	if t.depth >= 2 {
		from := 0
		if start >= 0 {
			from = start
		}
		t.elem.Append(p[from:])
	}
}

func (t *StreamTracker) finishElement(p []byte, start, end int) {
	elem := p[max(start, 0):end]
	if start < 0 {
		t.elem.Append(elem)
		if t.elem.Over {
			t.elem.Reset()
			return
		}
		elem = t.elem.B
	}
	if len(elem) <= maxEventBytes {
		t.readGemini(elem)
	}
	t.elem.Reset()
}

// fail records the first error the stream reports.
func (t *StreamTracker) fail(pe providerError) {
	if t.failed {
		return
	}
	t.failed = true
	t.failCode = pe.code
	t.failMsg = pe.message
	t.failKind = streamFailureKind(pe)
}

// streamFailureKind maps a mid-stream error to a failure kind by its code alone:
// the stream's status was 200 long before.
func streamFailureKind(pe providerError) string {
	switch pe.code {
	case "overloaded_error", "UNAVAILABLE", "service_unavailable", "overloaded":
		return limiterconfig.FailureUnavailable
	case "rate_limit_error", "rate_limit_exceeded", "RESOURCE_EXHAUSTED", "tokens", "requests":
		return limiterconfig.FailureRateLimited
	case "insufficient_quota":
		return limiterconfig.FailureQuotaExhausted
	case "DEADLINE_EXCEEDED", "timeout":
		return limiterconfig.FailureTimeout
	}
	if isContextLength(pe) {
		return limiterconfig.FailureContextLengthExceeded
	}
	return limiterconfig.FailureServerError
}
