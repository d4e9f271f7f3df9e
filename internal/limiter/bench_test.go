package limiter

import (
	"context"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// benchEngine has one pool with RPM, TPM and concurrency limits high enough that every
// admission in a benchmark run fits: the common path, a pool with room.
func benchEngine(b *testing.B) *Engine {
	b.Helper()
	e := New(Options{})
	e.Apply(testConfig([]string{"k"}, limiterconfig.Limits{RequestsPerMinute: 1 << 50, TokensPerMinute: 1 << 60, MaxConcurrency: 1 << 20}, limiterconfig.Queue{}))
	return e
}

// BenchmarkLocalDecision is the local limit decision: look the pool up by provider
// and model, try-admit a request of 1,000 tokens against RPM+TPM+concurrency, release.
func BenchmarkLocalDecision(b *testing.B) {
	e := benchEngine(b)
	d := Demand{InputTokens: 600, OutputTokens: 400}
	b.ReportAllocs()
	for b.Loop() {
		t, err := e.Pool("openai", "gpt-x")
		if err != nil {
			b.Fatal(err)
		}
		r, ok := t.TryAdmit(d)
		if !ok {
			b.Fatal("refused")
		}
		r.release()
	}
}

// BenchmarkLocalDecisionParallel is the same from every core at once on one pool,
// the worst case for its mutex.
func BenchmarkLocalDecisionParallel(b *testing.B) {
	e := benchEngine(b)
	d := Demand{InputTokens: 600, OutputTokens: 400}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t, _ := e.Pool("openai", "gpt-x")
			r, ok := t.Admit(context.Background(), d, 5, time.Second)
			if ok != nil {
				b.Error(ok)
				return
			}
			r.release()
		}
	})
}

// BenchmarkAdmitSettleRelease is a whole request's engine work: admit, settle the
// tokens against usage (which reads the clock), release.
func BenchmarkAdmitSettleRelease(b *testing.B) {
	e := benchEngine(b)
	d := Demand{InputTokens: 600, OutputTokens: 400}
	a := Attempt{Status: 200, Usage: Usage{InputTokens: 600, OutputTokens: 150}, UsageKnown: true}
	b.ReportAllocs()
	for b.Loop() {
		t, _ := e.Pool("openai", "gpt-x")
		r, _ := t.Admit(context.Background(), d, 5, time.Second)
		r.End(a)
	}
}

// BenchmarkXRateAllow is the baseline: one golang.org/x/time/rate Allow.
func BenchmarkXRateAllow(b *testing.B) {
	l := rate.NewLimiter(rate.Limit(1e15), 1<<50)
	b.ReportAllocs()
	for b.Loop() {
		if !l.Allow() {
			b.Fatal("refused")
		}
	}
}
