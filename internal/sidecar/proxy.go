package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
	"github.com/aiquota/aiquota/internal/translate"
)

const (
	// PriorityHeader carries the request's priority, 1 (interactive) .. 9 (batch).
	PriorityHeader = "X-Aiquota-Priority"
	// ServedByHeader names the provider and model that answered.
	ServedByHeader = "X-Aiquota-Served-By"
	// FallbacksHeader lists the chain entries a request moved on from, in order,
	// each with the reason: "provider/model (kind), ...".
	FallbacksHeader = "X-Aiquota-Fallbacks"
	// DroppedHeader names the app's request fields a translation left out or
	// narrowed to fit the entry that served.
	DroppedHeader = "X-Aiquota-Dropped"
	// QueuedHeader is the time the request waited for capacity, in milliseconds,
	// and RetriesHeader the upstream retries the sidecar made for it: an app (or
	// its logs) sees why an answer was slow without the sidecar's metrics.
	QueuedHeader  = "X-Aiquota-Queued-Ms"
	RetriesHeader = "X-Aiquota-Retries"
	// shouldRetryHeader is read by the official OpenAI and Anthropic SDKs before
	// their own retry rules: "false" stops them retrying what the sidecar has
	// already retried (or refused for a reason a retry within seconds cannot fix),
	// so their retries do not stack on the sidecar's.
	shouldRetryHeader = "X-Should-Retry"
	// maxErrorBody bounds how much of an upstream error body is read to classify it.
	maxErrorBody = 64 << 10
	// maxUsageBody bounds how much of a non-streamed success is kept to read usage;
	// past it the reservation stands as the charge.
	maxUsageBody = 16 << 20
	// maxPooledBody is the largest kept-response buffer returned to the pool.
	maxPooledBody = 1 << 20
	// pooledBodySize is the size of the pooled request-body buffers: most requests
	// fit, and a body of unknown length starts in one.
	pooledBodySize = 32 << 10
	// keptStep is the least the kept copy of a response grows by.
	keptStep = 64 << 10
)

var (
	bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, pooledBodySize); return &b }}
	keptPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	copyPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
)

func putKept(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBody {
		b.Reset()
		keptPool.Put(b)
	}
}

// hopHeaders are connection-scoped and never forwarded (RFC 9110 7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders deletes the connection-scoped headers from h: the standard ones
// and those its Connection header names, which concern this hop only
// (RFC 9110 7.6.1).
func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// exchange is one app request on its way through the sidecar.
type exchange struct {
	s       *Server
	live    *liveConfig
	w       http.ResponseWriter
	r       *http.Request
	dialect provider.Dialect
	op      provider.Operation
	req     provider.Request
	// routes are the chain's entries that may serve the request, in order (nil
	// without a chain: then route is the only one); route is the one being
	// tried, last whether it is the final one, and moves the entries moved on
	// from (see walk).
	routes   []route
	route    route
	last     bool
	moves    []move
	tr       *translate.Translation // the request for an entry of another dialect
	budget   time.Duration          // the chain's wait budget at this request's priority
	priority int
	pool     limiterconfig.Pool
	policy   limiterconfig.Policy
	body     []byte // the body read from the app
	// rw, when set, rewrites the body on its way upstream without copying it;
	// segs is its result, made once for every attempt.
	rw      *provider.Rewrite
	segs    [][]byte
	segsLen int64
	strip   bool // the limiter added include_usage and strips its chunk

	start                            time.Time
	upstreamTime, queued, retryDelay time.Duration
	retries                          int             // upstream retries made so far
	firstByte                        time.Time       // the first streamed bytes relayed to the app
	settled                          limiter.Attempt // the last attempt's settlement
	wrote                            bool            // response headers sent to the app
	outcome                          string
	// bodyLeaked is set when a transport failed a request: it may still read the
	// body afterwards (see http.RoundTripper), so the buffer must not be reused.
	bodyLeaked bool
	// heldBytes are taken from the server's byte budget and given back when the
	// request ends.
	heldBytes int64
	// learnKey names the pool whose prompt estimate learns from this request's
	// charged usage ("" when its counter is exact); estimate is the raw estimate.
	learnKey string
	estimate int64
}

// serveProxy runs one app request. Every path through it ends in exactly one
// outcome, returned by serve and recorded once by the deferred finish, whatever
// happens (a panic included); every admission it makes is ended by the attempt that
// made it (see attempt).
func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request) {
	x := &exchange{s: s, w: w, r: r, start: time.Now(), live: s.live.Load()}
	defer x.finish()
	defer x.recoverPanic()
	x.outcome = x.serve()
}

func (x *exchange) serve() string {
	d, op, pathModel, ok := provider.Route(x.r.Method, x.r.URL.Path)
	x.dialect, x.op = d, op
	if !ok {
		return x.fail(outcomeNotFound, &provider.Error{Status: http.StatusNotFound, Code: "not_found",
			Message: fmt.Sprintf("the aiquota limiter does not proxy %s %s", x.r.Method, x.r.URL.Path)})
	}
	if x.live == nil {
		writeNotReady(x.w, d)
		x.wrote = true
		return outcomeUnavailable
	}
	defer func() { x.s.bytes.release(x.heldBytes) }()
	body, outcome, ok := x.readBody()
	if !ok {
		return outcome
	}
	if cap(body) == pooledBodySize {
		defer func() {
			if !x.bodyLeaked {
				body = body[:0]
				bodyPool.Put(&body)
			}
		}()
	}
	req, err := provider.ParseRequest(d, op, pathModel, body)
	if err != nil {
		var re *provider.RequestError
		if errors.As(err, &re) {
			return x.fail(outcomeBadRequest, &provider.Error{Status: re.Status, Code: "invalid_request", Param: re.Param, Message: re.Message})
		}
		return x.fail(outcomeBadRequest, &provider.Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "the aiquota limiter could not read this request"})
	}
	x.req = req
	var first route
	first, x.routes, err = x.live.resolve(d, op, req.Model)
	if err != nil {
		return x.fail(outcomeNotFound, &provider.Error{Status: http.StatusNotFound, Code: "model_not_found", Param: "model", Message: err.Error()})
	}
	x.body = body
	if !op.Limited() {
		// Not translatable (see resolve): the first entry is of the app's dialect.
		if outcome, ok := x.use(first); !ok {
			return outcome
		}
		return x.forwardOnce()
	}
	return x.walk(first)
}

// readBody reads the request body into memory taken from the server's byte budget
// first: exactly Content-Length bytes when the app states it, else a buffer that
// doubles (up to the limit) as the body arrives, each growth paid for before it is
// allocated. It answers 413 above the limit, 503 when the budget stays spent, and
// 408 when the body does not arrive in time; when it returns false the request is
// over with the outcome it returns.
func (x *exchange) readBody() ([]byte, string, bool) {
	limit := x.s.opts.MaxBodyBytes
	tooLarge := func() ([]byte, string, bool) {
		return nil, x.fail(outcomeBadRequest, &provider.Error{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
			Message: fmt.Sprintf("request body is larger than the aiquota limiter's %d-byte limit", limit)}), false
	}
	cl := x.r.ContentLength
	if cl > limit {
		return tooLarge()
	}
	if x.r.Body == nil || x.r.Body == http.NoBody || cl == 0 {
		return nil, "", true
	}
	// The deadline is on the connection, so a body that trickles in a byte at a time
	// cannot hold the request (and its memory) open past it. It is lifted once the
	// body is in: the connection's reads then only watch for the app leaving.
	rc := http.NewResponseController(x.w)
	if rc.SetReadDeadline(time.Now().Add(x.s.opts.BodyReadTimeout)) == nil {
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	size := int64(pooledBodySize)
	if cl > 0 {
		size = cl
	}
	if outcome, ok := x.holdBytes(size); !ok {
		// The body stays unread: the connection cannot be reused.
		x.w.Header().Set("Connection", "close")
		return nil, outcome, false
	}
	var buf []byte
	if size == pooledBodySize {
		buf = (*bodyPool.Get().(*[]byte))[:0]
	} else {
		buf = make([]byte, 0, size)
	}
	var err error
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit || cl > 0 {
				// A stated length is enforced by the server: a body that goes on
				// past it fails the read, so a full buffer here holds all of it.
				if cl > 0 {
					break
				}
				return tooLarge()
			}
			grown := min(2*int64(cap(buf)), limit+1)
			if outcome, ok := x.holdBytes(grown - int64(cap(buf))); !ok {
				x.w.Header().Set("Connection", "close")
				return nil, outcome, false
			}
			buf = append(make([]byte, 0, grown), buf...)
		}
		var n int
		n, err = x.r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			break
		}
	}
	switch {
	case err == nil || errors.Is(err, io.EOF):
		if int64(len(buf)) > limit {
			return tooLarge()
		}
		return buf, "", true
	}
	// A body that could not be read gets an answer, never the empty 200 of a handler
	// that writes nothing, and the connection is closed: its framing is lost.
	outcome := outcomeBadRequest
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		outcome = outcomeBodyTimeout
	case x.r.Context().Err() != nil:
		outcome = outcomeCanceled
	}
	x.w.Header().Set("Connection", "close")
	return nil, x.fail(outcome, &provider.Error{Status: http.StatusRequestTimeout, Code: "request_timeout",
		Message: fmt.Sprintf("the aiquota limiter could not read the request body within %s: %v", x.s.opts.BodyReadTimeout, err)}), false
}

// holdBytes takes n more bytes from the server's byte budget for this request,
// waiting up to the configured time; when they do not free up it answers 503 with
// Retry-After in the app's dialect and returns false.
func (x *exchange) holdBytes(n int64) (string, bool) {
	err := x.s.bytes.acquire(x.r.Context(), n, x.s.opts.BodyMemoryWait)
	if err == nil {
		x.heldBytes += n
		return "", true
	}
	var busy *errBodyMemory
	if !errors.As(err, &busy) {
		return outcomeCanceled, false
	}
	return x.fail(outcomeOverloaded, &provider.Error{Status: http.StatusServiceUnavailable, Code: "overloaded",
		Message: err.Error(), RetryAfter: time.Second}), false
}

// entry runs a quota-consuming request at one entry: translation, context
// pre-check, breaker, admission, attempts with retries, settlement. It returns the
// request's outcome, or the failure kind for which it moves to the next entry.
func (x *exchange) entry(rt route) (string, string) {
	if outcome, ok := x.use(rt); !ok {
		return outcome, ""
	}
	up := x.route.up
	x.learnKey = "" // an estimate learns only for the entry that counted it
	if outcome, move, ok := x.translate(); !ok {
		return outcome, move
	}
	// Counted for the entry's model: each entry reserves what it would be charged.
	counter := x.s.counters.get(x.pool.Tokenizer, x.route.model)
	prompt, err := provider.PromptTokens(x.r.Context(), counter, &x.req)
	if err != nil { // the app went away while its prompt was counted
		return outcomeCanceled, ""
	}
	if exceedsContext(prompt, x.req.MaxOutputTokens, x.pool.ContextWindow) {
		if x.canMove(limiterconfig.FailureContextLengthExceeded) {
			return "", limiterconfig.FailureContextLengthExceeded
		}
		return x.fail(outcomeContextLength, &provider.Error{Status: http.StatusBadRequest, Code: "context_length_exceeded", Param: "messages",
			Message: fmt.Sprintf("this request needs about %d prompt tokens plus %d output tokens, more than %s's context window of %d tokens (checked by the aiquota limiter)",
				prompt, x.req.MaxOutputTokens, x.route.model, x.pool.ContextWindow)}), ""
	}
	if counter == provider.Estimate && x.op != provider.OpEmbeddings {
		// The context check above keeps the raw estimate: the correction errs high.
		x.learnKey, x.estimate = up.cfg.Name+"/"+x.pool.Name, prompt
		prompt = x.s.learner.correct(x.learnKey, prompt)
	}
	// Each of n choices may use the whole output budget.
	reserveOut := x.req.MaxOutputTokens
	if reserveOut == 0 && x.op != provider.OpEmbeddings {
		reserveOut = x.pool.MaxOutputTokens
	}
	reserveOut = mulSaturating(reserveOut, max(1, x.req.Choices))
	demand := limiter.Demand{InputTokens: prompt, OutputTokens: reserveOut}
	if x.tr == nil && x.dialect == provider.DialectOpenAI && x.req.Stream && !x.req.StreamUsageRequested &&
		(x.op == provider.OpChatCompletions || x.op == provider.OpCompletions) {
		rw := x.rw
		if rw == nil {
			rw = provider.NewRewrite(x.body)
		}
		if err := rw.EnableStreamUsage(); err == nil {
			x.rw, x.strip = rw, true
		}
	}
	pool, err := x.s.engine.Pool(up.cfg.Name, x.route.model)
	if err == nil {
		var breaker *limiter.Breaker
		if breaker, err = x.s.engine.Breaker(up.cfg.Name, x.route.model); err == nil {
			return x.attempts(pool, breaker, demand)
		}
	}
	return x.fail(outcomeNotFound, &provider.Error{Status: http.StatusNotFound, Code: "model_not_found", Param: "model", Message: "aiquota limiter: " + err.Error()}), ""
}

// exceedsContext reports a prompt plus stated output budget that cannot fit the
// window. An unstated budget is not assumed: the provider then generates what
// fits, so only a prompt that fills the window alone is refused.
func exceedsContext(prompt, statedOutput, window int64) bool {
	return window > 0 && (prompt >= window || statedOutput > window-prompt)
}

// mulSaturating multiplies non-negative counts without wrapping around.
func mulSaturating(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// attempts sends the request until it succeeds, fails for good, runs out of
// retries, or moves to the next entry (returning the failure kind); every attempt
// is admitted through the buckets afresh.
func (x *exchange) attempts(pool *limiter.Pool, breaker *limiter.Breaker, demand limiter.Demand) (string, string) {
	ctx := x.r.Context()
	pool.NoteRequest()
	first := time.Now()
	for n := 0; ; n++ {
		st := x.attempt(ctx, pool, breaker, demand, n, first)
		if st.outcome != "" || st.move != "" {
			return st.outcome, st.move
		}
		if !x.sleep(ctx, st.retryIn) {
			return outcomeCanceled, ""
		}
	}
}

// step is where an attempt left the request: over with an outcome, moving to the
// next entry for the failure kind move, or to be retried after retryIn.
type step struct {
	outcome string
	move    string
	retryIn time.Duration
}

// attempt takes a breaker permit and an admission and makes one upstream call. Its
// deferred calls give the permit its verdict and end the reservation, so each is
// settled exactly once on every way out, the retry included (a retry is a new
// attempt with a new permit and a new admission).
func (x *exchange) attempt(ctx context.Context, pool *limiter.Pool, breaker *limiter.Breaker, demand limiter.Demand, n int, first time.Time) step {
	up := x.route.up
	permit, err := breaker.Allow()
	if err != nil {
		return x.refused(err)
	}
	// What the breaker learns: nothing (the permit is given back) unless the upstream
	// answered or failed on its own.
	record, kind, status := false, "", 0
	defer func() {
		if record {
			permit.Record(kind, status)
		} else {
			permit.Cancel()
		}
	}()
	maxWait := x.s.engine.Queue().MaxWait.D()
	if n > 0 {
		// A retry's wait for capacity counts toward the policy's total bound.
		maxWait = min(maxWait, limiter.MaxTotal(x.policy.Retry)-time.Since(first))
	}
	if !x.last {
		// A later entry may have the capacity this one lacks.
		maxWait = min(maxWait, x.budget-time.Since(first))
	}
	qStart := time.Now()
	res, err := pool.Admit(ctx, demand, x.priority, maxWait)
	waited := time.Since(qStart)
	x.queued += waited
	x.s.metrics.queueWait.With(up.cfg.Name, pool.Name).Observe(waited.Seconds())
	if err != nil {
		return x.refused(err)
	}
	var settled limiter.Attempt
	defer func() { res.End(settled) }()
	r := x.send(ctx, res, up.keys[res.Account().Key])
	defer r.close()
	settled, x.settled = r.settled, r.settled
	if x.learnKey != "" && settled.UsageKnown && r.done {
		x.s.learner.learn(x.learnKey, x.estimate, settled.Usage.InputTokens)
	}
	// An app that leaves cuts the upstream call short (its context is the call's):
	// that says nothing about the upstream, so the breaker, the retry decision and
	// the failure counters hear nothing of it.
	if r.outcome == outcomeCanceled || (!r.done && ctx.Err() != nil) {
		settled.Canceled = true
		return step{outcome: outcomeCanceled}
	}
	if r.done {
		record, kind, status = true, r.kind, r.status
		return step{outcome: r.outcome}
	}
	// Not sent to the app: a failure, to retry or to return.
	record, kind, status = true, r.kind, r.status
	if r.retryable {
		delay, ok := limiter.NextRetry(x.policy.Retry, limiter.RetryInput{
			Attempt: n, Kind: r.kind, RetryAfter: r.retryAfter, HasRetryAfter: r.hasRetryAfter,
			Elapsed: time.Since(first), Jitter: rand.Float64(),
		})
		// A retry later than the chain's wait budget gives way to the next entry.
		// The retry budget is asked last, so that only retries made spend it.
		if ok && x.retryHere(r.kind, time.Since(first)+delay) && pool.AllowRetry() {
			settled.Retried = true
			x.retries++
			x.s.metrics.retries.With(up.cfg.Name, pool.Name, r.kind).Inc()
			x.s.metrics.retryDelay.With(up.cfg.Name, pool.Name).Observe(delay.Seconds())
			return step{retryIn: delay}
		}
	}
	if x.canMove(r.kind) {
		return step{move: r.kind}
	}
	return step{outcome: x.returnFailure(r)}
}

func (x *exchange) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	start := time.Now()
	defer func() { x.retryDelay += time.Since(start) }()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// attemptResult is one upstream attempt that did not reach the app (done=false), or
// the note that it did (done=true; the response is written, and outcome is the
// request's). settled is what the attempt's reservation is ended with.
type attemptResult struct {
	done          bool
	outcome       string
	settled       limiter.Attempt
	status        int // 0 without a response
	kind          string
	code          string // the upstream's error code
	retryable     bool
	retryAfter    time.Duration
	hasRetryAfter bool
	resp          *http.Response
	prefix        []byte // the error body read for classification
	err           error
	watch         *watchdog
}

func (r *attemptResult) close() {
	if r.resp != nil {
		r.resp.Body.Close()
	}
	if r.watch != nil {
		r.watch.stop()
	}
}

// watchdog cancels an attempt when the upstream is silent too long: until the
// response headers, then between body reads. A healthy stream, however long, and
// DeepSeek's keep-alive lines keep it fed.
type watchdog struct {
	timer   *time.Timer
	fired   atomic.Bool
	timeout time.Duration
	cancel  context.CancelFunc
}

func newWatchdog(timeout time.Duration, cancel context.CancelFunc) *watchdog {
	w := &watchdog{timeout: timeout, cancel: cancel}
	w.timer = time.AfterFunc(timeout, func() {
		w.fired.Store(true)
		cancel()
	})
	return w
}

func (w *watchdog) feed() { w.timer.Reset(w.timeout) }

func (w *watchdog) stop() {
	w.timer.Stop()
	w.cancel()
}

// send makes one attempt under res. A success is streamed or copied to the app; a
// failure comes back for the retry decision.
func (x *exchange) send(ctx context.Context, res limiter.Reservation, key string) attemptResult {
	up := x.route.up
	actx, cancel := context.WithCancel(ctx)
	wd := newWatchdog(x.policy.RequestTimeout.D(), cancel)
	req, err := x.upstreamRequest(actx, key)
	if err != nil {
		wd.stop()
		return attemptResult{kind: limiterconfig.FailureConnection, err: err}
	}
	sent := time.Now()
	resp, err := x.s.transport.RoundTrip(req)
	if err != nil {
		x.bodyLeaked = true
		x.upstreamTime += time.Since(sent)
		wd.stop()
		if x.appGone(wd) {
			return attemptResult{outcome: outcomeCanceled, err: err}
		}
		kind := limiterconfig.FailureConnection
		if wd.fired.Load() {
			kind = limiterconfig.FailureTimeout
		}
		x.s.metrics.upstreamStatus.With(up.cfg.Name, x.pool.Name, res.Account().Key, "0").Inc()
		return attemptResult{kind: kind, retryable: true, err: err}
	}
	wd.feed()
	now := time.Now()
	if up.cfg.LearnFromHeaders {
		if obs, ok := observation(up.cfg.Type, provider.ParseRateLimits(up.cfg.Type, resp.Header, now)); ok {
			res.Account().Observe(obs)
		}
	}
	x.s.metrics.upstreamStatus.With(up.cfg.Name, x.pool.Name, res.Account().Key, statusLabel(resp.StatusCode)).Inc()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		prefix, _ := io.ReadAll(io.LimitReader(&fedReader{r: resp.Body, wd: wd}, maxErrorBody))
		x.upstreamTime += time.Since(sent)
		o := provider.Classify(up.cfg.Type, resp.StatusCode, resp.Header, prefix, time.Now())
		if o.Kind == limiterconfig.FailureRateLimited && o.Retryable {
			res.Account().Throttle(o.RetryAfter)
		}
		return attemptResult{status: resp.StatusCode, kind: o.Kind, code: o.Code, retryable: o.Retryable,
			retryAfter: o.RetryAfter, hasRetryAfter: o.HasRetryAfter, resp: resp, prefix: prefix, watch: wd,
			settled: limiter.Attempt{Status: resp.StatusCode}}
	}
	if x.tr != nil && !x.tr.Stream {
		r := x.relayTranslated(resp, wd)
		resp.Body.Close()
		wd.stop()
		x.upstreamTime += time.Since(sent)
		return r
	}
	outcome, kind, usage, usageOK := x.relay(resp, wd)
	resp.Body.Close()
	wd.stop()
	x.upstreamTime += time.Since(sent)
	return attemptResult{done: true, outcome: outcome, status: resp.StatusCode, kind: kind,
		settled: limiter.Attempt{Status: resp.StatusCode, Usage: usage, UsageKnown: usageOK}}
}

// upstreamRequest builds the provider request: endpoint plus the incoming path and
// query (credentials removed), the app's headers minus hop-by-hop and credentials,
// the provider's auth.
func (x *exchange) upstreamRequest(ctx context.Context, key string) (*http.Request, error) {
	up := x.route.up
	u := *up.endpoint
	path, rawQuery := x.r.URL.Path, x.r.URL.RawQuery
	switch {
	case x.tr != nil:
		path, rawQuery = x.tr.Path, x.tr.RawQuery
	case x.route.rewrite && x.dialect == provider.DialectGemini:
		// Gemini names the model in the path, not the body.
		path = strings.Replace(path, "/models/"+x.req.Model+":", "/models/"+x.route.model+":", 1)
	}
	u.Path = up.endpoint.Path + path
	u.RawPath = ""
	h := x.r.Header.Clone()
	removeHopHeaders(h)
	h.Del(PriorityHeader)
	// Go's transport then asks for gzip itself and decompresses, so usage can be read.
	h.Del("Accept-Encoding")
	h.Del("Content-Length")
	if x.tr != nil {
		x.tr.UpstreamHeader(h)
	}
	if rawQuery != "" {
		q, _ := url.ParseQuery(rawQuery)
		provider.ApplyAuth(h, q, up.cfg.Type, key)
		u.RawQuery = q.Encode()
	} else {
		provider.ApplyAuth(h, nil, up.cfg.Type, key)
	}
	var body io.Reader = http.NoBody
	n := int64(len(x.body))
	switch {
	case x.tr != nil:
		body, n = bytes.NewReader(x.tr.Body), int64(len(x.tr.Body))
	case x.rw != nil:
		if x.segs == nil {
			x.segs, x.segsLen = x.rw.Segments()
		}
		body, n = newSegmentsReader(x.segs), x.segsLen
	case n > 0:
		body = bytes.NewReader(x.body)
	}
	req, err := http.NewRequestWithContext(ctx, x.r.Method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build upstream request: %w", err)
	}
	req.Header = h
	req.ContentLength = n
	return req, nil
}

// relay copies a successful response to the app: streams event by event with a
// flush each, other bodies as they arrive while keeping a bounded copy for usage.
// It returns the request's outcome, the failure kind if the body broke off, and the
// usage.
func (x *exchange) relay(resp *http.Response, wd *watchdog) (outcome, kind string, u limiter.Usage, ok bool) {
	stream := x.req.Stream || isEventStream(resp.Header)
	h := x.w.Header()
	x.answerHeader(h, resp.Header)
	if stream {
		h.Del("Content-Length") // events may be stripped
	}
	x.w.WriteHeader(resp.StatusCode)
	x.wrote = true
	outcome = outcomeSuccess

	bp := copyPool.Get().(*[]byte)
	defer copyPool.Put(bp)
	buf := *bp
	body := &fedReader{r: resp.Body, wd: wd}
	flusher, _ := x.w.(http.Flusher)
	var tracker streamFilter
	var kept *bytes.Buffer
	keep := !stream
	var keptHeld int64
	switch {
	case stream && x.tr != nil:
		tracker = x.tr.NewStream(time.Now())
	case stream:
		tracker = provider.NewStreamTracker(x.dialect, x.strip)
	default:
		kept = keptPool.Get().(*bytes.Buffer)
		defer putKept(kept)
	}
	var readErr, writeErr error
	for readErr == nil && writeErr == nil {
		var n int
		n, readErr = body.Read(buf)
		if n == 0 {
			continue
		}
		chunk := buf[:n]
		if tracker != nil {
			chunk = tracker.Write(chunk)
		} else if keep {
			keep, keptHeld = x.keep(kept, chunk, keptHeld)
		}
		if len(chunk) > 0 {
			_, writeErr = x.w.Write(chunk)
			if stream && flusher != nil && writeErr == nil {
				flusher.Flush()
				x.noteFirstByte()
			}
		}
	}
	if tracker != nil && writeErr == nil {
		if tail := tracker.Flush(); len(tail) > 0 {
			_, writeErr = x.w.Write(tail)
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
	var pu provider.Usage
	if tracker != nil {
		pu, ok = tracker.Usage()
		if fk, _, failed := tracker.Failed(); failed {
			kind = fk
			outcome = outcomeStreamFailed
		}
	} else if keep {
		pu, ok = provider.ParseUsage(x.dialect, kept.Bytes())
	}
	switch {
	case writeErr != nil || (readErr != nil && !errors.Is(readErr, io.EOF) && x.appGone(wd)):
		outcome, kind = outcomeCanceled, ""
	case readErr != nil && !errors.Is(readErr, io.EOF):
		outcome = outcomeStreamFailed
		kind = limiterconfig.FailureConnection
		if wd.fired.Load() {
			kind = limiterconfig.FailureTimeout
		}
	}
	return outcome, kind, engineUsage(x.route.up.dialect, pu), ok
}

// keep appends chunk to the bounded copy of a response kept to read its usage,
// paying for growth from the byte budget without waiting: when the bytes are not
// free, or the copy would pass maxUsageBody, the copy is dropped and the
// reservation stands as the charge. It returns whether the copy is still kept and
// the bytes it holds.
func (x *exchange) keep(kept *bytes.Buffer, chunk []byte, held int64) (bool, int64) {
	need := int64(kept.Len() + len(chunk))
	if need > maxUsageBody {
		kept.Reset()
		return false, held
	}
	if need > held {
		grown := min(max(2*held, need, keptStep), maxUsageBody)
		if !x.s.bytes.tryAcquire(grown - held) {
			kept.Reset()
			return false, held
		}
		x.heldBytes += grown - held
		kept.Grow(int(grown) - kept.Len())
		held = grown
	}
	kept.Write(chunk)
	return true, held
}

// engineUsage maps provider usage onto the engine's: for Anthropic, cache reads do
// not count toward the input-token limit, so they are left out.
func engineUsage(d provider.Dialect, u provider.Usage) limiter.Usage {
	in := u.InputTokens
	if d == provider.DialectAnthropic {
		in = max(0, in-u.CachedInputTokens)
	}
	return limiter.Usage{InputTokens: in, OutputTokens: u.OutputTokens}
}

// appGone reports a call cut short because the app left, not because the upstream
// failed or fell silent: the app's context ended and the watchdog did not fire.
func (x *exchange) appGone(wd *watchdog) bool {
	return x.r.Context().Err() != nil && !wd.fired.Load()
}

func isEventStream(h http.Header) bool {
	ct := h.Get("Content-Type")
	return len(ct) >= 17 && ct[:17] == "text/event-stream"
}

// fedReader feeds the watchdog on every read that returns data.
type fedReader struct {
	r  io.Reader
	wd *watchdog
}

func (f *fedReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.wd.feed()
	}
	return n, err
}

// returnFailure hands a failure that is not retried to the app: the provider's
// own response unchanged, or a 502/504 in the app's dialect when there was none.
func (x *exchange) returnFailure(r attemptResult) string {
	defer r.close()
	if r.resp != nil && (x.tr != nil || len(x.moves) > 0) {
		// The app gets its own dialect, and what the chain tried, in one message.
		e := translate.UpstreamError(x.dialect, x.route.up.cfg.Type, r.status, r.prefix,
			provider.Outcome{Kind: r.kind, Code: r.code, RetryAfter: r.retryAfter, HasRetryAfter: r.hasRetryAfter})
		e.Message = x.route.name() + ": " + e.Message
		x.w.Header().Set(ServedByHeader, x.route.name())
		return x.fail(outcomeUpstreamError, e)
	}
	if r.resp == nil {
		status, code := http.StatusBadGateway, "upstream_unreachable"
		if r.kind == limiterconfig.FailureTimeout {
			status, code = http.StatusGatewayTimeout, "upstream_timeout"
		}
		msg := fmt.Sprintf("aiquota limiter: %s did not answer", x.route.up.cfg.Name)
		if r.err != nil {
			msg += ": " + r.err.Error()
		}
		return x.fail(outcomeUnavailable, &provider.Error{Status: status, Code: code, Message: msg})
	}
	h := x.w.Header()
	x.answerHeader(h, r.resp.Header)
	h.Del("Content-Length")
	// The sidecar retried what was worth retrying; the SDK must not add its own.
	h.Set(shouldRetryHeader, "false")
	x.w.WriteHeader(r.resp.StatusCode)
	x.wrote = true
	_, err := x.w.Write(r.prefix)
	if err == nil {
		bp := copyPool.Get().(*[]byte)
		_, _ = io.CopyBuffer(x.w, &fedReader{r: r.resp.Body, wd: r.watch}, *bp)
		copyPool.Put(bp)
	}
	return outcomeUpstreamError
}

// forwardOnce proxies an operation that uses no quota (model lists, token counts):
// one attempt, no queue, no retries.
func (x *exchange) forwardOnce() string {
	up := x.route.up
	x.pool = up.cfg.PoolFor(x.route.model)
	x.policy = x.live.policyFor(up, x.route.model)
	key := up.keys[up.cfg.Keys[0].ID] // validation guarantees a key
	ctx, cancel := context.WithCancel(x.r.Context())
	wd := newWatchdog(x.policy.RequestTimeout.D(), cancel)
	defer wd.stop()
	req, err := x.upstreamRequest(ctx, key)
	if err == nil {
		sent := time.Now()
		var resp *http.Response
		resp, err = x.s.transport.RoundTrip(req)
		x.bodyLeaked = err != nil
		if err != nil && x.appGone(wd) {
			return outcomeCanceled
		}
		if err == nil {
			defer resp.Body.Close()
			wd.feed()
			outcome, _, _, _ := x.relay(resp, wd)
			x.upstreamTime += time.Since(sent)
			if resp.StatusCode > 299 && outcome == outcomeSuccess {
				outcome = outcomeUpstreamError
			}
			return outcome
		}
	}
	return x.returnFailure(attemptResult{kind: limiterconfig.FailureConnection, err: err})
}

// reject answers a local refusal from the engine.
func (x *exchange) reject(err error) string {
	var rej *limiter.RejectError
	if !errors.As(err, &rej) {
		// The app went away while queued.
		return outcomeCanceled
	}
	e := &provider.Error{Code: rej.Reason.String(), Message: rej.Error(), RetryAfter: rej.RetryAfter}
	outcome := outcomeRateLimited
	switch rej.Reason {
	case limiter.ReasonCircuitOpen:
		e.Status = http.StatusServiceUnavailable
		outcome = outcomeCircuitOpen
	case limiter.ReasonPoolRemoved:
		e.Status, e.RetryAfter = http.StatusServiceUnavailable, time.Second
		outcome = outcomeUnavailable
	case limiter.ReasonTooLarge:
		// Retrying can never help, so not a 429 that SDKs would retry.
		e.Status = http.StatusBadRequest
	default:
		e.Status = http.StatusTooManyRequests
	}
	return x.fail(outcome, e)
}

// fail answers the app with a local error in its dialect and returns outcome.
func (x *exchange) fail(outcome string, e *provider.Error) string {
	h := x.w.Header()
	x.annotate(h)
	// A local 429 (no capacity within the queue's wait) carries Retry-After and
	// stays retryable; an open breaker or an upstream that failed the sidecar's
	// own retries is not worth the SDK's.
	if outcome == outcomeCircuitOpen || x.retries > 0 || len(x.moves) > 0 {
		h.Set(shouldRetryHeader, "false")
	}
	if len(x.moves) > 0 {
		e.Message = fmt.Sprintf("%s (the fallback chain tried %s first)", e.Message, x.fallbacks())
	}
	provider.WriteError(x.w, x.dialect, e)
	x.wrote = true
	return outcome
}

// annotate sets the headers that tell the app what the sidecar did: how long the
// request queued and how often it was retried.
func (x *exchange) annotate(h http.Header) {
	h.Set(QueuedHeader, strconv.FormatInt(x.queued.Milliseconds(), 10))
	h.Set(RetriesHeader, strconv.Itoa(x.retries))
	if len(x.moves) > 0 {
		h.Set(FallbacksHeader, x.fallbacks())
	}
}

// finish records the request's metrics. serveProxy defers it, so it runs exactly
// once per request, after the outcome is known.
func (x *exchange) finish() {
	providerName, poolName := "", ""
	if x.route.up != nil {
		providerName, poolName = x.route.up.cfg.Name, x.pool.Name
	}
	m := x.s.metrics
	m.requests.With(providerName, poolName, x.outcome).Inc()
	if x.route.up != nil && x.upstreamTime > 0 {
		m.upstreamLatency.With(providerName, poolName).Observe(x.upstreamTime.Seconds())
	}
	added := time.Since(x.start) - x.upstreamTime - x.queued - x.retryDelay
	m.addedLatency.Observe(max(0, added).Seconds())
	x.observeEnd()
}

// recoverPanic is the last resort: a bug must not take the sidecar down with it.
// Tests (fuzzing included) check that no input gets here.
func (x *exchange) recoverPanic() {
	v := recover()
	if v == nil {
		return
	}
	if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
		x.outcome = outcomeCanceled
		panic(v)
	}
	x.outcome = outcomeInternalError
	x.s.metrics.panics.Inc()
	x.s.panics.Add(1)
	x.s.log.Error("proxy handler panic", "panic", fmt.Sprint(v), "path", x.r.URL.Path, "stack", string(debug.Stack()))
	if !x.wrote {
		provider.WriteError(x.w, x.dialect, &provider.Error{Status: http.StatusInternalServerError, Code: "internal_error", Message: "aiquota limiter internal error"})
	}
}

func reported(w provider.Window) bool { return w.HasLimit || w.HasRemaining }

// otherAtMost reports whether the other of the input and output windows shows at
// most n remaining, so that a combined remaining of n may be its own.
func otherAtMost(o limiter.Observation, k limiter.Kind, n int64) bool {
	other := limiter.KindInputTokens
	if k == limiter.KindInputTokens {
		other = limiter.KindOutputTokens
	}
	w := o.Windows[other]
	return w.HasRemaining && w.Remaining <= n
}

// observation maps provider rate-limit headers onto the engine's kinds. Anthropic's
// combined "tokens" window is the most restrictive of its input and output limits
// when those are sent (see the cases below).
func observation(providerType string, rl provider.RateLimits) (limiter.Observation, bool) {
	var o limiter.Observation
	set := func(k limiter.Kind, w provider.Window) {
		o.Windows[k] = limiter.Window{Limit: w.Limit, Remaining: w.Remaining, HasLimit: w.HasLimit, HasRemaining: w.HasRemaining}
	}
	set(limiter.KindRequests, rl.Requests)
	set(limiter.KindInputTokens, rl.InputTokens)
	set(limiter.KindOutputTokens, rl.OutputTokens)
	split := reported(rl.InputTokens) || reported(rl.OutputTokens)
	switch {
	case providerType != limiterconfig.ProviderAnthropic || !split:
		// Anthropic's combined window, alone, is an account on a combined TPM.
		set(limiter.KindTokens, rl.Tokens)
	case rl.Tokens.HasRemaining:
		// Beside the input and output windows it is the most restrictive of them,
		// so it adds nothing to two reported windows; when one is missing and the
		// combined remaining is below the other's, it is the missing one's remaining.
		// Its limit is neither's, so it is not learned.
		for _, k := range []limiter.Kind{limiter.KindInputTokens, limiter.KindOutputTokens} {
			if w := &o.Windows[k]; !w.HasRemaining && !otherAtMost(o, k, rl.Tokens.Remaining) {
				w.Remaining, w.HasRemaining = rl.Tokens.Remaining, true
			}
		}
	}
	for _, w := range o.Windows {
		if w.HasLimit || w.HasRemaining {
			return o, true
		}
	}
	return o, false
}
