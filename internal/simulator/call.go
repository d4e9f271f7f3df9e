package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// keepAliveInterval spaces DeepSeek-style keep-alive lines.
const keepAliveInterval = 250 * time.Millisecond

// modelCall is a parsed request to a model, ready for admission.
type modelCall struct {
	model string
	input int64
	// statedMax is the most output tokens the request allows; 0: it does not say.
	statedMax int64
	// windowTokens, when set, is what must fit the context window instead of input
	// (embeddings: the longest single input).
	windowTokens int64
	// noOutput marks requests that generate nothing (embeddings).
	noOutput bool
	stream   bool
	render   responder
}

// responder renders one route's responses.
type responder interface {
	// body is the non-streaming response.
	body(g *generation) any
	// open, delta, close and fail write a stream: its start, output token i, its
	// regular end, and the persona's mid-stream error.
	open(sw *streamWriter, g *generation)
	delta(sw *streamWriter, g *generation, i int)
	close(sw *streamWriter, g *generation)
	fail(sw *streamWriter, g *generation)
}

// generation is the response being produced.
type generation struct {
	created time.Time
	model   string
	input   int64
	pieces  []string // the planned output, one token each
	// truncated: the output stopped at the request's max tokens or the window.
	truncated bool
	// idr draws the response's ids (its own, its items' and messages') deterministically.
	idr func(prefix string) string
}

func (g *generation) output() int64 { return int64(len(g.pieces)) }

func (g *generation) text() string { return strings.Join(g.pieces, "") }

// serve runs a parsed call against pool pl: injected faults, the context window,
// admission, latency, generation and settlement.
func (c *reqCtx) serve(pl *pool, mc *modelCall) {
	s, a := c.s, c.acct
	fs := a.faults.Load()

	// Draw every fault decision up front, in a fixed order, so the decisions depend
	// only on the seed and the sequence number, never on which branch runs.
	fr := requestRNG(s.seed, a.index, c.seq, purposeFault)
	uStatus, uBody, uStream, uWhere := unit(&fr), unit(&fr), unit(&fr), unit(&fr)

	if fs.inOutage(c.now) {
		status := http.StatusServiceUnavailable
		if a.provider == ProviderAnthropic {
			status = 529
		}
		c.failPool(pl, ReasonInjectedFault, &apiError{kind: kindUnavailable, status: status, fault: "outage"})
		return
	}
	if code := fs.drawError(uStatus); code != "" {
		c.failPool(pl, ReasonInjectedFault, injectedError(code, mc.model))
		return
	}

	tr := requestRNG(s.seed, a.index, c.seq, purposeText)
	planned, truncated, reserve, fits := mc.plan(plannedOutput(a.latency, unit(&tr)), pl.window)
	if !fits {
		c.failPool(pl, ReasonContext, contextError(a.provider, mc, pl.window))
		return
	}

	v, t, view := pl.admit(c.now, charge{input: mc.input, output: reserve})
	c.p.setRateHeaders(c.w.Header(), view, c.now)
	if v.reason != "" {
		c.fail(&apiError{kind: kindRateLimit, status: http.StatusTooManyRequests, verdict: v, model: mc.model})
		return
	}

	// Settlement runs before the client can see the end of the response (the
	// handler returns before net/http finishes it), so Stats read after a response
	// always include it. A reset ends the response itself and settles first.
	var generated int64
	var outcome func(*PoolStats)
	settle := sync.OnceFunc(func() {
		pl.settle(s.now(), t, charge{input: mc.input, output: generated}, outcome)
	})
	defer settle()

	reset := uBody < fs.ResetRate
	malformed := !reset && uBody < fs.ResetRate+fs.MalformedRate
	midStream := mc.stream && uStream < fs.MidStreamErrorRate

	g := &generation{
		created:   c.now,
		model:     mc.model,
		input:     mc.input,
		pieces:    generateText(&tr, planned),
		truncated: truncated,
	}
	idr := requestRNG(s.seed, a.index, c.seq, purposeBodyIDs)
	g.idr = func(prefix string) string { return newID(&idr, prefix) }

	ctx := c.r.Context()
	var sw *streamWriter
	if mc.stream {
		sw = newStreamWriter(c.w, streamFormat(c))
	}
	if ka := fs.KeepAlive.D(); ka > 0 && !reset {
		if !keepAlive(ctx, c.w, sw, ka) {
			return
		}
	}
	if !sleep(ctx, a.latency.TimeToFirstToken.D()) {
		return
	}
	if reset {
		outcome = func(st *PoolStats) { st.Resets++ }
		settle()
		resetConnection(c.w)
		return
	}

	tps := a.latency.TokensPerSecond
	if !mc.stream {
		if n := len(g.pieces); n > 1 && tps > 0 && !sleep(ctx, tokenTime(n-1, tps)) {
			return
		}
		generated = g.output()
		b, err := json.Marshal(mc.render.body(g))
		if err != nil {
			// Only our own structs are encoded, so this would be a simulator bug.
			http.Error(c.w, "simulator: encode response: "+err.Error(), http.StatusInternalServerError)
			return
		}
		if malformed {
			outcome = func(st *PoolStats) { st.Malformed++ }
			b = b[:len(b)/2]
		}
		if c.w.Header().Get("Content-Type") == "" {
			c.w.Header().Set("Content-Type", "application/json")
		}
		// A failed write means the client has gone; the output was generated and
		// is settled all the same.
		_, _ = c.w.Write(b)
		return
	}

	generated, outcome = streamOut(ctx, mc, g, sw, tps, uWhere, midStream, malformed)
}

// streamOut writes a streamed answer, a token per event at tps tokens a second,
// with the drawn fault (a mid-stream error or a malformed event) at the point
// uWhere. It returns the tokens the client was sent and the fault's count, if any.
func streamOut(ctx context.Context, mc *modelCall, g *generation, sw *streamWriter, tps, uWhere float64, midStream, malformed bool) (generated int64, outcome func(*PoolStats)) {
	// The fault point: before output token `at`, or before the end when at == n.
	n := len(g.pieces)
	at := int(uWhere * float64(n+1))
	mc.render.open(sw, g)
	start := time.Now()
	for i := 0; i <= n && sw.err == nil; i++ {
		if i > 0 && tps > 0 && !sleep(ctx, time.Until(start.Add(tokenTime(i, tps)))) {
			return generated, outcome
		}
		if i == at && midStream {
			mc.render.fail(sw, g)
			return generated, func(st *PoolStats) { st.MidStreamErrors++ }
		}
		if i == at && malformed {
			outcome = func(st *PoolStats) { st.Malformed++ }
			sw.cutNext = true
		}
		if i == n {
			mc.render.close(sw, g)
			break
		}
		mc.render.delta(sw, g, i)
		if sw.err != nil {
			break
		}
		generated = int64(i + 1)
	}
	return generated, outcome
}

// plan sizes the answer: the drawn length cut to the stated maximum and to what
// the context window leaves, and what admission reserves (the stated maximum when
// there is one). fits is false when the prompt and the stated maximum exceed the
// window.
func (mc *modelCall) plan(drawn, window int64) (planned int64, truncated bool, reserve int64, fits bool) {
	planned = drawn
	if mc.noOutput {
		planned = 0
	}
	if mc.statedMax > 0 && mc.statedMax < planned {
		planned, truncated = mc.statedMax, true
	}
	fit := mc.input
	if mc.windowTokens > 0 {
		fit = mc.windowTokens
	}
	if fit+mc.statedMax > window {
		return 0, false, 0, false
	}
	if room := window - fit; planned > room {
		planned, truncated = room, true
	}
	reserve = planned
	if mc.statedMax > 0 && !mc.noOutput {
		reserve = mc.statedMax
	}
	return planned, truncated, reserve, true
}

// injectedError renders an ErrorRates fault.
func injectedError(code, model string) *apiError {
	e := &apiError{fault: code, model: model}
	switch code {
	case FaultQuota:
		e.kind = kindQuota
	case "429":
		e.kind, e.status = kindRateLimit, http.StatusTooManyRequests
		// No limit of ours refused it (limit 0): the personas word it as the
		// provider's own overload-driven 429.
		e.verdict = verdict{reason: ReasonRPM, retryAfter: time.Second, requested: 1}
		return e
	case "503", "529":
		e.kind = kindUnavailable
	default:
		e.kind = kindServer
	}
	e.status, _ = strconv.Atoi(code)
	return e
}

// contextError words a context-window refusal as each provider does.
func contextError(provider string, mc *modelCall, window int64) *apiError {
	var msg string
	switch {
	case provider == ProviderAnthropic && mc.input > window:
		msg = fmt.Sprintf("prompt is too long: %d tokens > %d maximum", mc.input, window)
	case provider == ProviderAnthropic:
		msg = fmt.Sprintf("input length and `max_tokens` exceed context limit: %d + %d > %d, decrease input length or `max_tokens` and try again", mc.input, mc.statedMax, window)
	case provider == ProviderGemini:
		msg = fmt.Sprintf("The input token count (%d) plus max output tokens (%d) exceeds the maximum number of tokens allowed (%d).", mc.input, mc.statedMax, window)
	default:
		msg = fmt.Sprintf("This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
			window, mc.input+mc.statedMax, mc.input, mc.statedMax)
	}
	return &apiError{kind: kindContextLength, status: http.StatusBadRequest, param: "messages", message: msg}
}

// plannedOutput is the length the model "wants" to generate before any cap.
func plannedOutput(l Latency, u float64) int64 {
	n := l.OutputTokens
	if n == 0 {
		n = DefaultOutputTokens
	}
	if l.OutputJitter > 0 {
		n = int64(math.Round(float64(n) * (1 + l.OutputJitter*(2*u-1))))
	}
	return max(1, n)
}

func tokenTime(i int, tps float64) time.Duration {
	return time.Duration(float64(i) / tps * float64(time.Second))
}

// sleep waits d of real time; false if the client went away first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// keepAlive commits a 200 and sends keep-alive lines for d; false if the client
// went away.
func keepAlive(ctx context.Context, w http.ResponseWriter, sw *streamWriter, d time.Duration) bool {
	rc := http.NewResponseController(w)
	if sw != nil {
		sw.commit()
	} else {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
	}
	deadline := time.Now().Add(d)
	for {
		line := "\n"
		if sw != nil {
			line = ": keep-alive\n\n"
		}
		if _, err := w.Write([]byte(line)); err != nil {
			return false
		}
		rc.Flush()
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		if !sleep(ctx, min(left, keepAliveInterval)) {
			return false
		}
		if time.Until(deadline) <= 0 {
			return true
		}
	}
}

// resetConnection closes the client's connection without a response, with a TCP
// reset where the connection is TCP, as a crashing upstream or a load balancer would.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 or a wrapped writer cannot be hijacked: net/http's own way to abort
		// a response is this sentinel panic, which it recovers without logging.
		panic(http.ErrAbortHandler)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	conn.Close()
}

// --- streams ---

type streamKind int

const (
	streamSSE       streamKind = iota // "data: {...}\n\n", with "event:" lines where named
	streamSSECRLF                     // Gemini: the same with CRLF line ends
	streamJSONArray                   // Gemini without alt=sse: one JSON array, element by element
)

func streamFormat(c *reqCtx) streamKind {
	if c.acct.provider != ProviderGemini {
		return streamSSE
	}
	if c.r.URL.Query().Get("alt") == "sse" {
		return streamSSECRLF
	}
	return streamJSONArray
}

// streamWriter writes events and flushes each, so clients see them one by one.
type streamWriter struct {
	w         http.ResponseWriter
	rc        *http.ResponseController
	kind      streamKind
	committed bool
	events    int
	// cutNext makes the next event a truncated one and the stream's last write.
	cutNext bool
	err     error
	buf     []byte
}

func newStreamWriter(w http.ResponseWriter, kind streamKind) *streamWriter {
	return &streamWriter{w: w, rc: http.NewResponseController(w), kind: kind}
}

func (sw *streamWriter) commit() {
	if sw.committed {
		return
	}
	sw.committed = true
	h := sw.w.Header()
	if sw.kind == streamJSONArray {
		h.Set("Content-Type", "application/json; charset=UTF-8")
	} else {
		h.Set("Content-Type", "text/event-stream; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
	}
	sw.w.WriteHeader(http.StatusOK)
}

// event writes one event; name is the SSE event type, or "" for data-only events.
func (sw *streamWriter) event(name string, v any) {
	if sw.err != nil {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		sw.err = fmt.Errorf("encode stream event: %w", err) // a simulator bug: end the stream
		return
	}
	sw.commit()
	eol := "\n"
	if sw.kind == streamSSECRLF {
		eol = "\r\n"
	}
	b := sw.buf[:0]
	switch sw.kind {
	case streamJSONArray:
		if sw.events == 0 {
			b = append(b, '[')
		} else {
			b = append(b, ",\r\n"...)
		}
	default:
		if name != "" {
			b = append(b, "event: "...)
			b = append(b, name...)
			b = append(b, eol...)
		}
		b = append(b, "data: "...)
	}
	if sw.cutNext {
		b = append(b, data[:len(data)/2]...)
		sw.write(b)
		sw.err = errStreamCut
		return
	}
	b = append(b, data...)
	if sw.kind != streamJSONArray {
		b = append(b, eol...)
		b = append(b, eol...)
	}
	sw.events++
	sw.write(b)
}

// raw writes a literal SSE line such as "data: [DONE]".
func (sw *streamWriter) raw(line string) {
	if sw.err != nil {
		return
	}
	sw.commit()
	sw.write([]byte(line + "\n\n"))
}

// end closes a JSON-array stream.
func (sw *streamWriter) end() {
	if sw.err != nil || sw.kind != streamJSONArray {
		return
	}
	sw.commit()
	if sw.events == 0 {
		sw.write([]byte("[]"))
		return
	}
	sw.write([]byte("]"))
}

func (sw *streamWriter) write(b []byte) {
	sw.buf = b
	if _, err := sw.w.Write(b); err != nil {
		sw.err = err
		return
	}
	if err := sw.rc.Flush(); err != nil {
		sw.err = err
	}
}

var errStreamCut = errors.New("stream cut by the malformed fault")
