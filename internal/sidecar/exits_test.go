package sidecar

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testkit"
)

const streamBody = `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Say hello"}],"max_tokens":50}`

// exitEnv is one OpenAI account at the simulator behind a provider with the given
// limits, queue wait and policy.
func exitEnv(t *testing.T, faults simulator.Faults, limits limiterconfig.Limits, queueWait time.Duration, policy func(*limiterconfig.Policy)) *env {
	t.Helper()
	return upstreamEnv(t, 9, simUpstream{persona: "openai", typ: limiterconfig.ProviderOpenAI, key: simOpenAIKey,
		faults: faults, limits: limits, queueWait: queueWait, policy: policy})
}

// outcomes are the requests the sidecar finished, by outcome, from its metrics: a
// request finished twice or never shows up in the sum.
func outcomes(t *testing.T, s *Server) map[string]float64 {
	t.Helper()
	got := map[string]float64{}
	for _, m := range series(t, s, prefix+"requests_total") {
		got[labelValue(m, "outcome")] += m.GetCounter().GetValue()
	}
	return got
}

// assertSettled checks that every admission was ended exactly once (nothing is in
// flight, and the engine counted one settled attempt per call the simulator saw)
// and that every request gave its body bytes back.
func (e *env) assertSettled() {
	e.t.Helper()
	var sent int64
	for _, a := range e.sim.Stats().Accounts {
		sent += a.Requests
	}
	var attempts int64
	for _, a := range e.state().Engine.Accounts {
		if a.InFlight != 0 {
			e.t.Errorf("%s/%s: %d in flight after every request ended", a.Provider, a.Pool, a.InFlight)
		}
		attempts += a.Counters.Attempts
	}
	if attempts != sent {
		e.t.Errorf("engine settled %d attempts, the simulator saw %d calls", attempts, sent)
	}
	if held := e.srv.bytes.held.Load(); held != 0 {
		e.t.Errorf("%d body bytes still held after every request ended", held)
	}
}

func TestEveryExitEndsTheRequestOnce(t *testing.T) {
	roomy := limiterconfig.Limits{RequestsPerMinute: 1000}
	oneAMinute := limiterconfig.Limits{RequestsPerMinute: 1}
	cases := []struct {
		name      string
		faults    simulator.Faults
		limits    limiterconfig.Limits
		queueWait time.Duration
		policy    func(*limiterconfig.Policy)
		run       func(t *testing.T, e *env)
		want      map[string]float64
	}{
		{name: "unknown route", limits: roomy, queueWait: time.Second,
			run:  func(t *testing.T, e *env) { e.post("/v1/nothing", nil, "{}") },
			want: map[string]float64{outcomeNotFound: 1}},
		{name: "malformed body", limits: roomy, queueWait: time.Second,
			run:  func(t *testing.T, e *env) { e.post("/v1/chat/completions", nil, "{") },
			want: map[string]float64{outcomeBadRequest: 1}},
		{name: "success", limits: roomy, queueWait: time.Second,
			run:  func(t *testing.T, e *env) { e.post("/v1/chat/completions", nil, chatBody) },
			want: map[string]float64{outcomeSuccess: 1}},
		{name: "streamed success", limits: roomy, queueWait: time.Second,
			run:  func(t *testing.T, e *env) { e.post("/v1/chat/completions", nil, streamBody) },
			want: map[string]float64{outcomeSuccess: 1}},
		{name: "retried, then the error returned", limits: roomy, queueWait: time.Second,
			faults: simulator.Faults{ErrorRates: map[string]float64{"500": 1}},
			policy: func(p *limiterconfig.Policy) { p.FailureThreshold = 100 },
			run:    func(t *testing.T, e *env) { e.post("/v1/chat/completions", nil, chatBody) },
			want:   map[string]float64{outcomeUpstreamError: 1}},
		{name: "unreachable upstream", limits: roomy, queueWait: time.Second,
			faults: simulator.Faults{ResetRate: 1},
			policy: func(p *limiterconfig.Policy) { p.FailureThreshold = 100 },
			run:    func(t *testing.T, e *env) { e.post("/v1/chat/completions", nil, chatBody) },
			want:   map[string]float64{outcomeUnavailable: 1}},
		{name: "circuit open", limits: roomy, queueWait: time.Second,
			faults: simulator.Faults{ErrorRates: map[string]float64{"500": 1}},
			policy: func(p *limiterconfig.Policy) {
				p.FailureThreshold, p.Retry.MaxRetries = 1, 0
				p.RecoveryTimeout = limiterconfig.Duration(time.Minute)
			},
			run: func(t *testing.T, e *env) {
				e.post("/v1/chat/completions", nil, chatBody)
				e.post("/v1/chat/completions", nil, chatBody)
			},
			want: map[string]float64{outcomeUpstreamError: 1, outcomeCircuitOpen: 1}},
		{name: "queue timeout", limits: oneAMinute, queueWait: time.Millisecond,
			run: func(t *testing.T, e *env) {
				e.post("/v1/chat/completions", nil, chatBody)
				e.post("/v1/chat/completions", nil, chatBody)
			},
			want: map[string]float64{outcomeSuccess: 1, outcomeRateLimited: 1}},
		{name: "canceled while queued", limits: oneAMinute, queueWait: time.Minute,
			run: func(t *testing.T, e *env) {
				e.post("/v1/chat/completions", nil, chatBody)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.proxy.URL+"/v1/chat/completions", strings.NewReader(chatBody))
					resp, err := http.DefaultClient.Do(req)
					if err == nil {
						resp.Body.Close()
					}
					done <- err
				}()
				testkit.Eventually(t, 30*time.Second, "the second request to queue", testkit.True(func() bool { return e.srv.engine.Snapshot().Queues[0].Depth == 1 }))
				cancel()
				if err := <-done; err == nil {
					t.Error("the canceled request got an answer")
				}
				testkit.Eventually(t, 30*time.Second, "the canceled request to end", testkit.True(func() bool { return outcomes(t, e.srv)[outcomeCanceled] > 0 }))
			},
			want: map[string]float64{outcomeSuccess: 1, outcomeCanceled: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := exitEnv(t, c.faults, c.limits, c.queueWait, c.policy)
			c.run(t, e)
			if diff := cmp.Diff(c.want, outcomes(t, e.srv)); diff != "" {
				t.Errorf("finished requests by outcome (-want +got):\n%s", diff)
			}
			e.assertSettled()
		})
	}
}

// TestResponseHeadersSayWhatTheSidecarDid: every answer says how long the request
// queued and how often it was retried, and an answer the sidecar already retried
// (or refused for an open breaker) tells the official SDKs not to retry it again,
// while a local 429 stays retryable.
func TestResponseHeadersSayWhatTheSidecarDid(t *testing.T) {
	roomy := limiterconfig.Limits{RequestsPerMinute: 1000}
	type want struct{ status, retries, shouldRetry string }
	cases := []struct {
		name      string
		faults    simulator.Faults
		limits    limiterconfig.Limits
		queueWait time.Duration
		policy    func(*limiterconfig.Policy)
		requests  int
		want      want // of the last request
	}{
		{name: "success", limits: roomy, queueWait: time.Second, requests: 1,
			want: want{"200", "0", ""}},
		{name: "retried, then the error returned", limits: roomy, queueWait: time.Second, requests: 1,
			faults: simulator.Faults{ErrorRates: map[string]float64{"500": 1}},
			policy: func(p *limiterconfig.Policy) { p.FailureThreshold, p.Retry.MaxRetries = 100, 2 },
			want:   want{"500", "2", "false"}},
		{name: "circuit open", limits: roomy, queueWait: time.Second, requests: 2,
			faults: simulator.Faults{ErrorRates: map[string]float64{"500": 1}},
			policy: func(p *limiterconfig.Policy) {
				p.FailureThreshold, p.Retry.MaxRetries = 1, 0
				p.RecoveryTimeout = limiterconfig.Duration(time.Minute)
			},
			want: want{"503", "0", "false"}},
		{name: "queue timeout", limits: limiterconfig.Limits{RequestsPerMinute: 1}, queueWait: time.Millisecond, requests: 2,
			want: want{"429", "0", ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := exitEnv(t, tc.faults, tc.limits, tc.queueWait, tc.policy)
			var r reply
			for range tc.requests {
				r, _ = e.post("/v1/chat/completions", nil, chatBody)
			}
			got := want{strconv.Itoa(r.StatusCode), r.Header.Get(RetriesHeader), r.Header.Get(shouldRetryHeader)}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("status, retries, x-should-retry (-want +got):\n%s", diff)
			}
			if q := r.Header.Get(QueuedHeader); q == "" {
				t.Errorf("no %s header", QueuedHeader)
			} else if _, err := strconv.Atoi(q); err != nil {
				t.Errorf("%s = %q: %v", QueuedHeader, q, err)
			}
		})
	}
}
