package reporter

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/report"
)

// buildInput is what one report is made of.
type buildInput struct {
	cfg      *limiterconfig.Config
	hash     string
	snap     limiter.Snapshot
	pod      report.Pod
	boot     report.Boot
	seq      uint64
	sentAt   time.Time
	interval time.Duration
	final    bool
}

// build turns an engine snapshot and the configuration in force into a report.
func build(in buildInput) *report.Report {
	cfg := in.cfg
	r := &report.Report{
		SchemaVersion:  report.SchemaVersion,
		Pod:            in.pod,
		Boot:           in.boot,
		Seq:            in.seq,
		SentAt:         in.sentAt.UTC(),
		ReportInterval: report.Duration(in.interval),
		Final:          in.final,
		Config: report.Config{
			Hash: in.hash, Kind: cfg.Source.Kind, Namespace: cfg.Source.Namespace, Name: cfg.Source.Name,
			Generation: max(0, cfg.Source.Generation),
		},
	}
	if cfg.Chain != nil {
		for _, e := range cfg.Chain.Entries[:min(len(cfg.Chain.Entries), report.MaxChainEntries)] {
			pool := e.Model
			if p := providerNamed(cfg, e.Provider); p != nil {
				pool = p.PoolFor(e.Model).Name
			}
			r.Chain = append(r.Chain, report.ChainEntry{Provider: e.Provider, Model: e.Model, Pool: pool})
		}
	}
	pools := in.snap.Accounts
	if len(pools) > report.MaxPools {
		// Keep the busiest: the report stays within bounds, and what is left out is
		// what matters least to utilisation.
		pools = slices.Clone(pools)
		slices.SortStableFunc(pools, func(a, b limiter.AccountSnapshot) int { return cmp.Compare(b.Counters.Attempts, a.Counters.Attempts) })
		pools = pools[:report.MaxPools]
	}
	for _, p := range pools {
		r.Pools = append(r.Pools, poolOf(p))
	}
	for _, q := range in.snap.Queues[:min(len(in.snap.Queues), report.MaxQueues)] {
		r.Queues = append(r.Queues, report.Queue{Provider: q.Provider, Pool: q.Pool, Depth: int64(q.Depth), Admitted: q.Admitted, Queued: q.Queued, Rejected: q.Rejected})
	}
	for _, b := range in.snap.Breakers[:min(len(in.snap.Breakers), report.MaxBreakers)] {
		r.Breakers = append(r.Breakers, breakerOf(b, policyOf(cfg, b.Provider, b.Model)))
	}
	return r
}

func providerNamed(cfg *limiterconfig.Config, name string) *limiterconfig.Provider {
	for i := range cfg.Providers {
		if cfg.Providers[i].Name == name {
			return &cfg.Providers[i]
		}
	}
	return nil
}

// policyOf names the CircuitPolicy a breaker runs under, as the limiter chooses it:
// the chain entry's policy, else the provider's; "" for the built-in defaults.
func policyOf(cfg *limiterconfig.Config, provider, model string) string {
	if cfg.Chain != nil {
		for _, e := range cfg.Chain.Entries {
			if e.Provider == provider && e.Model == model && e.Policy != "" {
				return e.Policy
			}
		}
	}
	if p := providerNamed(cfg, provider); p != nil {
		return p.Policy
	}
	return ""
}

func poolOf(p limiter.AccountSnapshot) report.Pool {
	c := p.Counters
	out := report.Pool{
		Provider: p.Provider, Pool: p.Pool, Key: p.Key,
		Counters: report.Counters{
			Requests: c.Attempts, Retries: c.Retries, InputTokens: c.InputTokens, OutputTokens: c.OutputTokens,
			RateLimited: c.Upstream429, ServerErrors: c.Upstream5xx, OtherErrors: c.UpstreamOther, Unanswered: c.Unanswered,
		},
		InFlight:      max(0, p.InFlight),
		RequestsToday: p.RequestsToday,
		TokensToday:   p.TokensToday,
		Throttle:      clamp(p.Throttle, 0, 1),
		Limits:        report.Limits{MaxConcurrency: p.MaxConcurrency, RequestsPerDay: p.RequestsPerDay, TokensPerDay: p.TokensPerDay},
	}
	for _, l := range p.Limits {
		setPerMinute(&out.Limits, l.Kind, l.Configured)
		setPerMinute(&out.Learned, l.Kind, l.Learned)
		if l.RatePerMinute > 0 || l.Burst > 0 {
			out.Buckets = append(out.Buckets, report.Bucket{
				Kind:          l.Kind,
				RatePerMinute: clamp(l.RatePerMinute, 0, bucketBound),
				Burst:         clamp(l.Burst, 0, bucketBound),
				Level:         clamp(l.Level, -bucketBound, bucketBound),
			})
		}
	}
	if h := p.LastHeaders; h != nil {
		hs := &report.HeaderSample{At: h.At.UTC(), Windows: map[string]report.Window{}}
		for kind, w := range h.Windows {
			if slices.Contains(report.LimitKinds, kind) && len(hs.Windows) < report.MaxHeaderWindows {
				hs.Windows[kind] = report.Window{Limit: nonNegative(w.Limit), Remaining: nonNegative(w.Remaining)}
			}
		}
		out.Headers = hs
	}
	return out
}

// bucketBound is report's bound on bucket magnitudes.
const bucketBound = 1e15

func setPerMinute(l *report.Limits, kind string, v int64) {
	v = max(0, v)
	switch kind {
	case report.LimitRequestsPerMinute:
		l.RequestsPerMinute = v
	case report.LimitTokensPerMinute:
		l.TokensPerMinute = v
	case report.LimitInputTokensPerMinute:
		l.InputTokensPerMinute = v
	case report.LimitOutputTokensPerMinute:
		l.OutputTokensPerMinute = v
	}
}

func nonNegative(p *int64) *int64 {
	if p == nil {
		return nil
	}
	v := max(0, *p)
	return &v
}

func clamp(f, lo, hi float64) float64 {
	if math.IsNaN(f) {
		return lo
	}
	return math.Min(hi, math.Max(lo, f))
}

func stateOf(s limiter.BreakerState) string {
	switch s {
	case limiter.BreakerOpen:
		return report.BreakerOpen
	case limiter.BreakerHalfOpen:
		return report.BreakerHalfOpen
	}
	return report.BreakerClosed
}

func breakerOf(b limiter.BreakerSnapshot, policy string) report.Breaker {
	out := report.Breaker{
		Provider: b.Provider, Model: b.Model, Policy: policy, State: stateOf(b.State),
		ConsecutiveFailures: int64(max(0, b.ConsecutiveFailures)), Opens: max(0, b.Opens),
	}
	ts := b.Transitions
	if len(ts) > report.MaxTransitions {
		ts = ts[len(ts)-report.MaxTransitions:]
	}
	for _, t := range ts {
		out.Transitions = append(out.Transitions, report.Transition{At: t.At.UTC(), From: stateOf(t.From), To: stateOf(t.To)})
	}
	if n := len(ts); n > 0 {
		since := ts[n-1].At.UTC()
		out.Since = &since
	}
	if f := b.LastFailure; f != nil {
		out.LastFailure = &report.FailureSample{At: f.At.UTC(), Kind: f.Kind, Status: f.Status}
	}
	return out
}
