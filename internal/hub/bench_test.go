package hub

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
)

// BenchmarkIngest folds in reports of a 5,000-sidecar fleet (two pools and two
// breakers each, like a chain's sidecar) and reports the time per report and the
// aggregator's retained memory per sidecar once each has a minute of history.
func BenchmarkIngest(b *testing.B) {
	const fleet = 5000
	clk := newFakeClock(t0)
	a := NewAggregator(clk.now, 3)
	sims := make([]*sim, fleet)
	for i := range sims {
		s := newSim(fmt.Sprintf("p%04d", i), t0)
		s.config = hubapi.Config{Kind: hubapi.KindFallbackChain, Namespace: fmt.Sprintf("ns%02d", i%50), Name: fmt.Sprintf("fc-%d", i%4)}
		s.chain = []hubapi.ChainEntry{{Provider: "pq-a", Model: "gpt-4o", Pool: "gpt-4o"}, {Provider: "pq-b", Model: "gpt-4o-mini", Pool: "gpt-4o-mini"}}
		for _, p := range []string{"pq-a", "pq-b"} {
			pl := s.account(p, map[string]string{"pq-a": "gpt-4o", "pq-b": "gpt-4o-mini"}[p], "keys/api-key")
			pl.Limits = hubapi.Limits{RequestsPerMinute: 1000, TokensPerMinute: 1_000_000, MaxConcurrency: 100}
			pl.Buckets = []hubapi.Bucket{{Kind: hubapi.LimitRequestsPerMinute, RatePerMinute: 980, Burst: 980, Level: 500}}
			since := t0
			s.breakers[breakerKey{p, pl.Pool}] = &hubapi.Breaker{Provider: p, Model: pl.Pool, Policy: "cbp", State: hubapi.BreakerClosed, Since: &since,
				Transitions: []hubapi.Transition{{At: t0, From: hubapi.BreakerClosed, To: hubapi.BreakerOpen}, {At: t0, From: hubapi.BreakerOpen, To: hubapi.BreakerClosed}}}
		}
		sims[i] = s
	}
	round := func() {
		clk.advance(10 * time.Second)
		for _, s := range sims {
			s.use("pq-a", "gpt-4o", 10, 1200, 300)
			if err := a.Ingest(s.report(clk.t)); err != nil {
				b.Fatal(err)
			}
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 7 { // a minute of history for every sidecar
		round()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	retained := float64(after.HeapAlloc-before.HeapAlloc) / fleet

	reports := make([]*hubapi.Report, fleet)
	b.ResetTimer()
	for i := range b.N {
		if i%fleet == 0 {
			b.StopTimer()
			clk.advance(10 * time.Second)
			for j, s := range sims {
				s.use("pq-a", "gpt-4o", 10, 1200, 300)
				reports[j] = s.report(clk.t)
			}
			b.StartTimer()
		}
		if err := a.Ingest(reports[i%fleet]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(retained, "retained-B/sidecar") // after ResetTimer, which clears metrics
}

// BenchmarkViews computes the status of every resource a 5,000-sidecar fleet feeds
// (what a flush pass does besides reading the cache and patching): one op is one
// whole pass.
func BenchmarkViews(b *testing.B) {
	const fleet = 5000
	clk := newFakeClock(t0)
	a := NewAggregator(clk.now, 3)
	for i := range fleet {
		ns, chain := fmt.Sprintf("ns%02d", i%50), (i/50)%4
		pa, pb := fmt.Sprintf("pq-%02d", 2*chain), fmt.Sprintf("pq-%02d", 2*chain+1)
		s := newSim(fmt.Sprintf("p%04d", i), t0)
		s.config = hubapi.Config{Kind: hubapi.KindFallbackChain, Namespace: ns, Name: fmt.Sprintf("fc-%d", chain)}
		s.pod.Namespace = ns
		s.chain = []hubapi.ChainEntry{{Provider: pa, Model: "gpt-4o", Pool: "gpt-4o"}, {Provider: pb, Model: "gpt-4o-mini", Pool: "gpt-4o-mini"}}
		for j := range 7 {
			clk.t = t0.Add(time.Duration(j*10) * time.Second)
			s.use(pa, "gpt-4o", 10, 1200, 300)
			s.use(pb, "gpt-4o-mini", 2, 200, 50)
			if err := a.Ingest(s.report(clk.t)); err != nil {
				b.Fatal(err)
			}
		}
	}
	keys := a.Due()
	b.ResetTimer()
	for range b.N {
		for _, k := range keys {
			switch k.Kind {
			case kindQuota:
				a.quotaView(k, emptyQuota())
			case kindChain:
				a.chainView(k, &quotav1alpha1.FallbackChainStatus{})
			case kindPolicy:
				a.policyView(k)
			}
		}
	}
	b.ReportMetric(float64(len(keys)), "resources")
}
