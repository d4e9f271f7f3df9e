package hubclient

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// buildInput is what one report is made of.
type buildInput struct {
	cfg      *limiterconfig.Config
	hash     string
	snap     limiter.Snapshot
	pod      hubapi.Pod
	boot     hubapi.Boot
	seq      uint64
	sentAt   time.Time
	interval time.Duration
	final    bool
}

// build turns an engine snapshot and the configuration in force into a report.
func build(in buildInput) *hubapi.Report {
	cfg := in.cfg
	r := &hubapi.Report{
		SchemaVersion:  hubapi.SchemaVersion,
		Pod:            in.pod,
		Boot:           in.boot,
		Seq:            in.seq,
		SentAt:         in.sentAt.UTC(),
		ReportInterval: hubapi.Duration(in.interval),
		Final:          in.final,
		Config: hubapi.Config{
			Hash: in.hash, Kind: cfg.Source.Kind, Namespace: cfg.Source.Namespace, Name: cfg.Source.Name,
			Generation: max(0, cfg.Source.Generation),
		},
	}
	if cfg.Chain != nil {
		for _, e := range cfg.Chain.Entries[:min(len(cfg.Chain.Entries), hubapi.MaxChainEntries)] {
			pool := e.Model
			if p := providerNamed(cfg, e.Provider); p != nil {
				pool = p.PoolFor(e.Model).Name
			}
			r.Chain = append(r.Chain, hubapi.ChainEntry{Provider: e.Provider, Model: e.Model, Pool: pool})
		}
	}
	accounts := in.snap.Accounts
	if len(accounts) > hubapi.MaxAccounts {
		// Keep the busiest: the report stays within bounds, and what is left out is
		// what matters least to utilisation.
		accounts = slices.Clone(accounts)
		slices.SortStableFunc(accounts, func(a, b limiter.AccountSnapshot) int { return cmp.Compare(b.Counters.Attempts, a.Counters.Attempts) })
		accounts = accounts[:hubapi.MaxAccounts]
	}
	for _, p := range accounts {
		a := accountOf(p)
		if pc := providerNamed(cfg, p.Provider); pc != nil {
			a.SafetyMarginPercent = min(max(pc.SafetyMarginPercent, 0), 100)
		}
		r.Accounts = append(r.Accounts, a)
	}
	for _, q := range in.snap.Queues[:min(len(in.snap.Queues), hubapi.MaxQueues)] {
		r.Queues = append(r.Queues, hubapi.Queue{Provider: q.Provider, Pool: q.Pool, Depth: int64(q.Depth), Admitted: q.Admitted, Queued: q.Queued, Rejected: q.Rejected})
	}
	for _, b := range in.snap.Breakers[:min(len(in.snap.Breakers), hubapi.MaxBreakers)] {
		r.Breakers = append(r.Breakers, breakerOf(b, policyOf(cfg, b.Provider, b.Model)))
	}
	// Indexes from a chain a reload has since shortened are left out: they no
	// longer name an entry.
	inChain := func(f limiter.FailoverSnapshot) bool { return f.From < len(r.Chain) && f.To < len(r.Chain) }
	for _, f := range in.snap.Failovers {
		if inChain(f) && len(r.Failovers) < hubapi.MaxFailoverCounts {
			r.Failovers = append(r.Failovers, hubapi.FailoverCount{From: f.From, To: f.To, Reason: f.Reason, Count: f.Count})
		}
	}
	if lf := in.snap.LastFailover; lf != nil && inChain(*lf) {
		r.LastFailover = &hubapi.Failover{At: lf.At.UTC(), From: lf.From, To: lf.To, Reason: lf.Reason}
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

func accountOf(p limiter.AccountSnapshot) hubapi.Account {
	c := p.Counters
	out := hubapi.Account{
		Provider: p.Provider, Pool: p.Pool, Key: p.Key,
		Counters: hubapi.Counters{
			Requests: c.Attempts, Retries: c.Retries, InputTokens: c.InputTokens, OutputTokens: c.OutputTokens,
			RateLimited: c.Upstream429, ServerErrors: c.Upstream5xx, OtherErrors: c.UpstreamOther, Unanswered: c.Unanswered,
		},
		InFlight:      max(0, p.InFlight),
		RequestsToday: p.RequestsToday,
		TokensToday:   p.TokensToday,
		Throttle:      clamp(p.Throttle, 0, 1),
		Limits:        hubapi.Limits{MaxConcurrency: p.MaxConcurrency, RequestsPerDay: p.RequestsPerDay, TokensPerDay: p.TokensPerDay},
	}
	for _, l := range p.Limits {
		setPerMinute(&out.Limits, l.Kind, l.Configured)
		setPerMinute(&out.Learned, l.Kind, l.Learned)
		if l.RatePerMinute > 0 || l.Burst > 0 {
			out.Buckets = append(out.Buckets, hubapi.Bucket{
				Kind:          l.Kind,
				RatePerMinute: clamp(l.RatePerMinute, 0, bucketBound),
				Burst:         clamp(l.Burst, 0, bucketBound),
				Level:         clamp(l.Level, -bucketBound, bucketBound),
			})
		}
	}
	if h := p.LastHeaders; h != nil {
		hs := &hubapi.HeaderSample{At: h.At.UTC(), Windows: map[string]hubapi.Window{}}
		for kind, w := range h.Windows {
			if slices.Contains(hubapi.LimitKinds, kind) && len(hs.Windows) < hubapi.MaxHeaderWindows {
				hs.Windows[kind] = hubapi.Window{Limit: nonNegative(w.Limit), Remaining: nonNegative(w.Remaining)}
			}
		}
		out.Headers = hs
	}
	return out
}

// bucketBound is report's bound on bucket magnitudes.
const bucketBound = 1e15

func setPerMinute(l *hubapi.Limits, kind string, v int64) {
	v = max(0, v)
	switch kind {
	case hubapi.LimitRequestsPerMinute:
		l.RequestsPerMinute = v
	case hubapi.LimitTokensPerMinute:
		l.TokensPerMinute = v
	case hubapi.LimitInputTokensPerMinute:
		l.InputTokensPerMinute = v
	case hubapi.LimitOutputTokensPerMinute:
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
		return hubapi.BreakerOpen
	case limiter.BreakerHalfOpen:
		return hubapi.BreakerHalfOpen
	}
	return hubapi.BreakerClosed
}

func breakerOf(b limiter.BreakerSnapshot, policy string) hubapi.Breaker {
	out := hubapi.Breaker{
		Provider: b.Provider, Model: b.Model, Policy: policy, State: stateOf(b.State),
		ConsecutiveFailures: int64(max(0, b.ConsecutiveFailures)), Opens: max(0, b.Opens),
	}
	ts := b.Transitions
	if len(ts) > hubapi.MaxTransitions {
		ts = ts[len(ts)-hubapi.MaxTransitions:]
	}
	for _, t := range ts {
		out.Transitions = append(out.Transitions, hubapi.Transition{At: t.At.UTC(), From: stateOf(t.From), To: stateOf(t.To)})
	}
	if n := len(ts); n > 0 {
		since := ts[n-1].At.UTC()
		out.Since = &since
	}
	if f := b.LastFailure; f != nil {
		out.LastFailure = &hubapi.FailureSample{At: f.At.UTC(), Kind: f.Kind, Status: f.Status}
	}
	return out
}
