package limiter

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

func testPolicy() limiterconfig.Policy {
	p := limiterconfig.DefaultPolicy()
	p.FailureThreshold = 3
	p.RecoveryTimeout = limiterconfig.Duration(10 * time.Second)
	p.HalfOpenMaxCalls = 2
	return p
}

func record(t *testing.T, b *Breaker, kind string) {
	t.Helper()
	p, err := b.Allow()
	if err != nil {
		t.Fatalf("Allow refused: %v", err)
	}
	p.Record(kind, 500)
}

func TestBreakerLifecycle(t *testing.T) {
	clock := newFakeClock(day0)
	b := newBreaker("openai", "gpt-x", testPolicy(), clock)

	// Neutral outcomes neither count nor reset; a success resets.
	record(t, b, limiterconfig.FailureServerError)
	record(t, b, limiterconfig.FailureServerError)
	record(t, b, "clientError")
	record(t, b, "")
	record(t, b, limiterconfig.FailureServerError)
	record(t, b, limiterconfig.FailureRateLimited) // not in the default failureOn
	record(t, b, limiterconfig.FailureTimeout)
	if s := b.Snapshot(); s.State != BreakerClosed || s.ConsecutiveFailures != 2 {
		t.Fatalf("state %v failures %d, want closed with 2", s.State, s.ConsecutiveFailures)
	}
	record(t, b, limiterconfig.FailureUnavailable)

	_, err := b.Allow()
	var rej *RejectError
	if !errors.As(err, &rej) || rej.Reason != ReasonCircuitOpen || rej.RetryAfter != 10*time.Second {
		t.Fatalf("open breaker: err = %v, want circuit_open with 10s", err)
	}
	clock.Advance(4 * time.Second)
	if _, err := b.Allow(); !errors.As(err, &rej) || rej.RetryAfter != 6*time.Second {
		t.Fatalf("open breaker 4s later: err = %v, want Retry-After 6s", err)
	}

	clock.Advance(6 * time.Second)
	p1, err1 := b.Allow()
	p2, err2 := b.Allow()
	_, err3 := b.Allow()
	if err1 != nil || err2 != nil || err3 == nil {
		t.Fatalf("half-open probes: %v %v %v, want two allowed then refused", err1, err2, err3)
	}
	p1.Record(limiterconfig.FailureConnection, 0) // a failed probe re-opens
	p2.Record("", 200)                            // a late success of the other probe does not close it
	if s := b.Snapshot(); s.State != BreakerOpen {
		t.Fatalf("after a failed probe: %v, want open", s.State)
	}
	clock.Advance(10 * time.Second)
	record(t, b, "")
	s := b.Snapshot()
	if s.State != BreakerClosed || s.Opens != 2 {
		t.Fatalf("after a good probe: %v with %d opens, want closed with 2", s.State, s.Opens)
	}
	type tr struct{ At, From, To string }
	var got []tr
	for _, x := range s.Transitions {
		got = append(got, tr{x.At.Sub(day0).String(), x.From.String(), x.To.String()})
	}
	want := []tr{
		{"0s", "closed", "open"},
		{"10s", "open", "halfOpen"},
		{"10s", "halfOpen", "open"},
		{"20s", "open", "halfOpen"},
		{"20s", "halfOpen", "closed"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
}

func TestNextRetry(t *testing.T) {
	policy := limiterconfig.DefaultPolicy().Retry // base 1s, max 60s, 25%, 5 retries, 503 base 30s
	cases := []struct {
		name   string
		policy limiterconfig.Retry
		in     RetryInput
		want   time.Duration
		ok     bool
	}{
		{"first retry, no jitter draw", policy, RetryInput{Attempt: 0, Kind: "serverError", Jitter: 0.5}, time.Second, true},
		{"doubles", policy, RetryInput{Attempt: 3, Kind: "serverError", Jitter: 0.5}, 8 * time.Second, true},
		{"jitter low end", policy, RetryInput{Attempt: 2, Kind: "serverError", Jitter: 0}, 3 * time.Second, true},
		{"jitter high end", policy, RetryInput{Attempt: 2, Kind: "serverError", Jitter: 1}, 5 * time.Second, true},
		{"capped at max delay", func() limiterconfig.Retry { r := policy; r.MaxRetries = 10; return r }(),
			RetryInput{Attempt: 7, Kind: "timeout", Jitter: 0.5, Elapsed: time.Second}, 60 * time.Second, true},
		{"unavailable starts long", policy, RetryInput{Attempt: 0, Kind: "unavailable", Jitter: 0.5}, 30 * time.Second, true},
		{"unavailable capped", policy, RetryInput{Attempt: 2, Kind: "unavailable", Jitter: 0.5}, 60 * time.Second, true},
		{"retry-after wins", policy, RetryInput{Attempt: 0, Kind: "unavailable", RetryAfter: 2 * time.Second, HasRetryAfter: true}, 2 * time.Second, true},
		{"retry-after ignored when the policy says so", func() limiterconfig.Retry { r := policy; r.RespectRetryAfter = false; return r }(),
			RetryInput{Attempt: 0, Kind: "rateLimited", RetryAfter: 20 * time.Second, HasRetryAfter: true, Jitter: 0.5}, time.Second, true},
		{"out of retries", policy, RetryInput{Attempt: 5, Kind: "serverError"}, 0, false},
		{"past the total bound", policy, RetryInput{Attempt: 1, Kind: "serverError", Jitter: 0.5, Elapsed: 359 * time.Second}, 0, false},
		{"explicit max total", func() limiterconfig.Retry {
			r := policy
			r.MaxTotal = limiterconfig.Duration(5 * time.Second)
			return r
		}(),
			RetryInput{Attempt: 0, Kind: "rateLimited", RetryAfter: 6 * time.Second, HasRetryAfter: true}, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := NextRetry(c.policy, c.in)
			if got != c.want || ok != c.ok {
				t.Errorf("NextRetry = %v, %v; want %v, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestParsePriority(t *testing.T) {
	cases := map[string]int{"1": 1, "9": 9, " 3\t": 3, "": 0, "0": 0, "10": 0, "x": 0, "-1": 0, "５": 0, "3 4": 0}
	for in, want := range cases {
		got, ok := ParsePriority(in)
		if got != want || ok != (want != 0) {
			t.Errorf("ParsePriority(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

func FuzzParsePriority(f *testing.F) {
	for _, s := range []string{"1", "9", " 5 ", "", "0", "10", "\x00", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := ParsePriority(s)
		if ok != (p >= MinPriority && p <= MaxPriority) {
			t.Fatalf("ParsePriority(%q) = %d, %v", s, p, ok)
		}
	})
}

// TestBreakerRemembersLastCountedFailure: only failures the policy counts are
// reported as the breaker's last failure, with their status.
func TestBreakerRemembersLastCountedFailure(t *testing.T) {
	b := newBreaker("openai", "gpt-x", testPolicy(), newFakeClock(day0))
	recordStatus := func(kind string, status int) {
		p, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		p.Record(kind, status)
	}
	if b.Snapshot().LastFailure != nil {
		t.Fatal("a fresh breaker reports a last failure")
	}
	recordStatus(limiterconfig.FailureServerError, 502)
	recordStatus(limiterconfig.FailureRateLimited, 429) // not in the default failureOn
	recordStatus("", 200)
	got := b.Snapshot().LastFailure
	if got == nil || got.Kind != limiterconfig.FailureServerError || got.Status != 502 || !got.At.Equal(day0) {
		t.Errorf("last failure %+v, want the counted 502 serverError at %v", got, day0)
	}
}
