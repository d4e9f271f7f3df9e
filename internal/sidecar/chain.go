package sidecar

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
	"github.com/aiquota/aiquota/internal/translate"
)

// reasonUntranslatable is the move past an entry the request cannot be translated
// for without changing what it asks (a *translate.UnsupportedError). It is a skip,
// not a failure of the entry, so it is named in x-aiquota-fallbacks but not
// counted as a failover.
const reasonUntranslatable = "untranslatable"

// move is one entry a request moved on from, and why: a limiterconfig.Failure*
// kind or reasonUntranslatable.
type move struct {
	from   route
	reason string
}

// walk serves a quota-consuming request from the first entry that can: it tries
// the entries resolve listed, in order, moving to the next one when an entry
// cannot take the request (breaker open, context window too small, translation
// refused, no capacity within the chain's wait budget) or fails it for a kind in
// fallbackOn after its own retries; nothing moves once the answer has begun. The
// last entry never moves on (canMove), so its outcome, in the app's dialect and
// naming what was tried, is the request's. Without a chain, first is the only
// entry.
func (x *exchange) walk(first route) string {
	x.priority = x.live.defaultPriority
	if p, ok := limiter.ParsePriority(x.r.Header.Get(PriorityHeader)); ok {
		x.priority = p
	}
	if c := x.live.cfg.Chain; c != nil {
		x.budget = c.WaitBudget(x.priority)
	}
	rt := first
	for i := 0; ; i++ {
		x.last = i >= len(x.routes)-1
		outcome, reason := x.entry(rt)
		if reason == "" {
			return outcome
		}
		x.moved(rt, x.routes[i+1], reason)
		rt = x.routes[i+1]
	}
}

// canMove reports whether a failure of kind moves the request to the next entry.
func (x *exchange) canMove(kind string) bool {
	if x.last || kind == "" {
		return false
	}
	return kind == reasonUntranslatable || slices.Contains(x.live.cfg.Chain.FallbackOn, kind)
}

// retryHere reports whether a retry due after elapsed at this entry is made here
// rather than giving way to the next entry: it is, within the chain's wait budget
// or when the failure does not move the request.
func (x *exchange) retryHere(kind string, elapsed time.Duration) bool {
	return elapsed <= x.budget || !x.canMove(kind)
}

// moved records a move from one entry to the next: for the app's headers and
// terminal error, and, when an entry failed, in the failover metric and the
// reports.
func (x *exchange) moved(from, to route, reason string) {
	x.moves = append(x.moves, move{from: from, reason: reason})
	x.s.log.Debug("request moves down the fallback chain", "from", from.name(), "to", to.name(), "reason", reason)
	if reason == reasonUntranslatable {
		return
	}
	src := x.live.cfg.Source
	x.s.metrics.failovers.With(src.Namespace+"/"+src.Name, from.name(), to.name(), reason).Inc()
	x.s.engine.NoteFailover(from.index, to.index, reason)
}

// fallbacks lists the moves for FallbacksHeader and the terminal error.
func (x *exchange) fallbacks() string {
	var b strings.Builder
	for i, m := range x.moves {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m.from.name())
		b.WriteString(" (")
		b.WriteString(m.reason)
		b.WriteString(")")
	}
	return b.String()
}

// use makes rt the entry the request is sent to: its pool and policy, and the
// model rewritten into the body when the entry speaks the app's dialect. When it
// returns false the request is over with the outcome it returns.
func (x *exchange) use(rt route) (string, bool) {
	x.route = rt
	x.pool = rt.up.cfg.PoolFor(rt.model)
	x.policy = x.live.policyFor(rt.up, rt.model)
	x.rw, x.segs, x.segsLen, x.strip, x.tr = nil, nil, 0, false, nil
	if rt.rewrite && x.r.Method == http.MethodPost {
		x.rw = provider.NewRewrite(x.body)
		if err := x.rw.SetModel(x.dialect, rt.model); err != nil {
			return x.fail(outcomeBadRequest, &provider.Error{Status: http.StatusBadRequest, Code: "invalid_request", Param: "model", Message: "the aiquota limiter could not set the model: " + err.Error()}), false
		}
	}
	return "", true
}

// translate prepares the request for an entry of another dialect. It returns
// false with the request's outcome, or with reasonUntranslatable to skip the
// entry.
func (x *exchange) translate() (outcome, move string, ok bool) {
	if !x.route.translate {
		return "", "", true
	}
	tr, err := translate.Request(translate.Source{Dialect: x.dialect, Op: x.op, RawQuery: x.r.URL.RawQuery}, x.body,
		translate.Target{ProviderType: x.route.up.cfg.Type, Model: x.route.model, MaxOutputTokens: x.pool.MaxOutputTokens})
	var (
		ue *translate.UnsupportedError
		re *provider.RequestError
	)
	switch {
	case err == nil:
		x.tr = tr
		return "", "", true
	case errors.As(err, &ue) && x.canMove(reasonUntranslatable):
		return "", reasonUntranslatable, false
	case errors.As(err, &ue):
		return x.fail(outcomeBadRequest, &provider.Error{Status: http.StatusBadRequest, Code: "invalid_request", Param: ue.Field,
			Message: "the aiquota limiter cannot send this request to " + x.route.name() + ": " + ue.Error()}), "", false
	case errors.As(err, &re):
		return x.fail(outcomeBadRequest, &provider.Error{Status: re.Status, Code: "invalid_request", Param: re.Param, Message: re.Message}), "", false
	}
	x.s.log.Error("translating a request failed", "err", err, "to", x.route.name())
	return x.fail(outcomeInternalError, &provider.Error{Status: http.StatusInternalServerError, Code: "internal_error",
		Message: "the aiquota limiter could not translate this request for " + x.route.name()}), "", false
}

// refused handles a local refusal by the breaker or the queue: a move to the next
// entry when fallbackOn allows it, else the refusal answered.
func (x *exchange) refused(err error) step {
	var rej *limiter.RejectError
	if errors.As(err, &rej) {
		kind := limiterconfig.FailureRateLimited
		switch rej.Reason {
		case limiter.ReasonCircuitOpen:
			kind = limiterconfig.FailureCircuitOpen
		case limiter.ReasonPoolRemoved:
			kind = limiterconfig.FailureUnavailable
		}
		if x.canMove(kind) {
			return step{move: kind}
		}
	}
	return step{outcome: x.reject(err)}
}

// streamFilter is what a streamed answer passes through on its way to the app:
// a provider.StreamTracker (the app's own dialect) or a translate.Stream.
type streamFilter interface {
	Write(p []byte) []byte
	Flush() []byte
	Usage() (provider.Usage, bool)
	Failed() (kind, message string, ok bool)
}

// answerHeader sets the app's response headers from the upstream's and says who
// served, what the sidecar did, and what a translation dropped.
func (x *exchange) answerHeader(h, upstream http.Header) {
	for k, vv := range upstream {
		h[k] = vv
	}
	removeHopHeaders(h)
	h.Set(ServedByHeader, x.route.name())
	x.annotate(h)
	if x.tr != nil {
		x.tr.ResponseHeader(h)
		if d := x.tr.DroppedHeader(); d != "" {
			h.Set(DroppedHeader, d)
		}
	}
}

// relayTranslated answers with a translated non-streamed answer: it is read whole
// (within the bound and byte budget of the copy kept for usage) and translated
// before anything is written, so an answer that breaks off, is too large or cannot
// be translated is a failed attempt like an upstream error (retried, or moved on
// from), never a broken answer to the app. The upstream's usage is settled either
// way.
func (x *exchange) relayTranslated(resp *http.Response, wd *watchdog) attemptResult {
	kept := keptPool.Get().(*bytes.Buffer)
	defer putKept(kept)
	bp := copyPool.Get().(*[]byte)
	defer copyPool.Put(bp)
	body := &fedReader{r: resp.Body, wd: wd}
	keep, held := true, int64(0)
	var readErr error
	for keep && readErr == nil {
		var n int
		n, readErr = body.Read(*bp)
		if n > 0 {
			keep, held = x.keep(kept, (*bp)[:n], held)
		}
	}
	r := attemptResult{status: resp.StatusCode, settled: limiter.Attempt{Status: resp.StatusCode}}
	if keep {
		var pu provider.Usage
		pu, r.settled.UsageKnown = provider.ParseUsage(x.route.up.dialect, kept.Bytes())
		r.settled.Usage = engineUsage(x.route.up.dialect, pu)
	}
	var out []byte
	switch {
	case readErr != nil && !errors.Is(readErr, io.EOF) && x.appGone(wd):
		r.outcome = outcomeCanceled
		return r
	case readErr != nil && !errors.Is(readErr, io.EOF):
		r.kind, r.err = limiterconfig.FailureConnection, readErr
		if wd.fired.Load() {
			r.kind = limiterconfig.FailureTimeout
		}
	case !keep:
		r.kind, r.err = limiterconfig.FailureServerError, errors.New("the answer is too large to translate")
	default:
		var err error
		if out, err = x.tr.Response(kept.Bytes(), time.Now()); err != nil {
			r.kind, r.err = limiterconfig.FailureServerError, fmt.Errorf("the answer could not be translated: %w", err)
		}
	}
	if r.kind != "" {
		// No response is handed on: a last failure is the sidecar's own 502 or 504.
		r.status, r.retryable = 0, true
		return r
	}
	h := x.w.Header()
	x.answerHeader(h, resp.Header)
	x.w.WriteHeader(resp.StatusCode)
	x.wrote = true
	r.done, r.outcome = true, outcomeSuccess
	if _, err := x.w.Write(out); err != nil {
		r.outcome = outcomeCanceled
	}
	return r
}
