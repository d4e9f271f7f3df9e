package limiter

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Snapshot is the engine's state at one moment: what /state serves and what the
// hub client (internal/hubclient) sends to the manager. Slices are sorted for stable output.
type Snapshot struct {
	At       time.Time         `json:"at"`
	Accounts []AccountSnapshot `json:"pools"`
	Queues   []QueueSnapshot   `json:"queues"`
	Breakers []BreakerSnapshot `json:"breakers"`
	// Failovers count the fallback chain's moves since the process started;
	// LastFailover is the latest.
	Failovers    []FailoverSnapshot `json:"failovers"`
	LastFailover *FailoverSnapshot  `json:"lastFailover,omitempty"`
}

// AccountSnapshot is one account: (provider, key ID, pool).
type AccountSnapshot struct {
	Provider string          `json:"provider"`
	Key      string          `json:"key"`
	Pool     string          `json:"pool"`
	Limits   []LimitSnapshot `json:"limits"`
	InFlight int64           `json:"inFlight"`
	// MaxConcurrency is 0 when unlimited.
	MaxConcurrency int64 `json:"maxConcurrency,omitempty"`
	RequestsToday  int64 `json:"requestsToday"`
	RequestsPerDay int64 `json:"requestsPerDay,omitempty"`
	TokensToday    int64 `json:"tokensToday"`
	TokensPerDay   int64 `json:"tokensPerDay,omitempty"`
	// Throttle is the factor upstream 429s put on the rates (1 = none).
	Throttle float64 `json:"throttle"`
	// HeldFor is how long admission stays paused for an upstream Retry-After.
	HeldFor  time.Duration   `json:"heldForNanos,omitempty"`
	Counters AccountCounters `json:"counters"`
	// LastHeaders is the latest provider rate-limit report, when learning is on.
	LastHeaders *HeaderSample `json:"lastHeaders,omitempty"`
}

// LimitSnapshot is one per-minute limit: its layers and the bucket.
type LimitSnapshot struct {
	Kind string `json:"kind"`
	// Configured and Learned are per minute as configured / as the provider reported;
	// 0 when absent. Lease is a SetLimit cap.
	Configured int64      `json:"configured,omitempty"`
	Learned    int64      `json:"learned,omitempty"`
	Lease      *LeaseSnap `json:"lease,omitempty"`
	// RatePerMinute and Burst are the effective bucket after margin, learning,
	// throttling and lease; Level is what it holds now (negative = debt).
	RatePerMinute float64 `json:"ratePerMinute"`
	Burst         float64 `json:"burst"`
	Level         float64 `json:"level"`
	// Utilisation is the used fraction of the burst, 0..1 (more when in debt).
	Utilisation float64 `json:"utilisation"`
}

// LeaseSnap is a SetLimit cap.
type LeaseSnap struct {
	RatePerSecond float64 `json:"ratePerSecond"`
	Burst         float64 `json:"burst"`
}

// AccountCounters count since the process started.
type AccountCounters struct {
	// Attempts are upstream calls made; Retries the ones followed by another attempt.
	Attempts      int64 `json:"attempts"`
	Retries       int64 `json:"retries"`
	InputTokens   int64 `json:"inputTokens"`
	OutputTokens  int64 `json:"outputTokens"`
	Upstream429   int64 `json:"upstream429"`
	Upstream5xx   int64 `json:"upstream5xx"`
	UpstreamOther int64 `json:"upstreamOtherErrors"`
	// Unanswered are attempts without a response: connection errors, timeouts.
	Unanswered     int64 `json:"unanswered"`
	ReservedTokens int64 `json:"reservedTokens"`
	RefundedTokens int64 `json:"refundedTokens"`
	OverrunTokens  int64 `json:"overrunTokens"`
}

// HeaderSample is the latest observation of provider headers.
type HeaderSample struct {
	At      time.Time               `json:"at"`
	Windows map[string]WindowSample `json:"windows"`
}

// WindowSample is one reported window; absent values are omitted.
type WindowSample struct {
	Limit     *int64 `json:"limit,omitempty"`
	Remaining *int64 `json:"remaining,omitempty"`
}

// QueueSnapshot is the queue of one pool (provider, pool).
type QueueSnapshot struct {
	Provider string `json:"provider"`
	Pool     string `json:"pool"`
	Depth    int    `json:"depth"`
	Admitted int64  `json:"admitted"`
	Queued   int64  `json:"queued"`
	Rejected int64  `json:"rejected"`
	// RejectedInputTokens and RejectedOutputTokens are the rejected requests'
	// reserved tokens (prompt estimate; output budget).
	RejectedInputTokens  int64 `json:"rejectedInputTokens"`
	RejectedOutputTokens int64 `json:"rejectedOutputTokens"`
	// RetriesRefused counts retries the pool's retry budget did not allow.
	RetriesRefused int64 `json:"retriesRefused"`
	// UrgentPriority is the most urgent priority waiting (1 interactive .. 9
	// batch), 0 when none waits: the manager's allocator weighs shares by it.
	UrgentPriority int `json:"urgentPriority,omitempty"`
}

// Snapshot captures the state of every pool, account and breaker.
func (e *Engine) Snapshot() Snapshot {
	e.mu.Lock()
	pools := make([]*Pool, 0, len(e.pools))
	for _, p := range e.pools {
		pools = append(pools, p)
	}
	breakers := make([]*Breaker, 0, len(e.breakers))
	for _, b := range e.breakers {
		breakers = append(breakers, b)
	}
	e.mu.Unlock()

	s := Snapshot{At: e.clock.Wall(e.clock.Now()), Accounts: []AccountSnapshot{}, Queues: []QueueSnapshot{}, Breakers: []BreakerSnapshot{}}
	for _, p := range pools {
		depth, urgent := p.queueState()
		s.Queues = append(s.Queues, QueueSnapshot{
			Provider: p.Provider, Pool: p.Name, Depth: depth, UrgentPriority: urgent,
			Admitted: p.admitted.Load(), Queued: p.queued.Load(), Rejected: p.rejected.Load(),
			RejectedInputTokens: p.rejectedInput.Load(), RejectedOutputTokens: p.rejectedOutput.Load(),
			RetriesRefused: p.retriesRefused.Load(),
		})
		for _, a := range p.Accounts() {
			s.Accounts = append(s.Accounts, a.Snapshot())
		}
	}
	for _, b := range breakers {
		s.Breakers = append(s.Breakers, b.Snapshot())
	}
	s.Failovers, s.LastFailover = e.failovers.snapshot()
	slices.SortFunc(s.Queues, func(a, b QueueSnapshot) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Pool, b.Pool))
	})
	slices.SortFunc(s.Accounts, func(a, b AccountSnapshot) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Key, b.Key))
	})
	slices.SortFunc(s.Breakers, func(a, b BreakerSnapshot) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Model, b.Model))
	})
	return s
}

// Snapshot captures this account.
func (p *Account) Snapshot() AccountSnapshot {
	c := &p.counters
	s := AccountSnapshot{
		Provider: p.Provider, Key: p.Key, Pool: p.Pool,
		Limits: []LimitSnapshot{},
		Counters: AccountCounters{
			Attempts: c.attempts.Load(), Retries: c.retries.Load(),
			InputTokens: c.inputTokens.Load(), OutputTokens: c.outputTokens.Load(),
			Upstream429: c.upstream429.Load(), Upstream5xx: c.upstream5xx.Load(), UpstreamOther: c.upstreamOther.Load(), Unanswered: c.unanswered.Load(),
			ReservedTokens: c.reservedTokens.Load(), RefundedTokens: c.refundedTokens.Load(), OverrunTokens: c.overrunTokens.Load(),
		},
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	p.fastTakes = 0
	p.rollDaysLocked(now)
	s.InFlight = p.inFlightLocked()
	s.MaxConcurrency = p.maxConc
	s.RequestsToday, s.RequestsPerDay = p.dayReqs.used, p.dayReqs.limit
	s.TokensToday, s.TokensPerDay = p.dayTokens.used, p.dayTokens.limit
	s.Throttle = p.throttle
	if p.holdUntil > now {
		s.HeldFor = time.Duration(p.holdUntil - now)
	}
	for _, k := range Kinds {
		b := &p.buckets[k]
		e := p.external[k]
		if !b.Limited() && p.configured[k] == 0 && p.learned[k] == 0 && !e.set {
			continue
		}
		l := LimitSnapshot{Kind: k.String(), Configured: p.configured[k], Learned: p.learned[k]}
		if e.set {
			l.Lease = &LeaseSnap{RatePerSecond: e.ratePerSecond, Burst: e.burst}
		}
		if b.Limited() {
			// Rounded: limits are set per minute, and /60*60 should not show as noise.
			l.RatePerMinute = math.Round(b.RatePerSecond()*60*1e6) / 1e6
			l.Burst = b.Burst()
			l.Level = b.Level(now)
			if l.Burst > 0 {
				l.Utilisation = math.Max(0, 1-l.Level/l.Burst)
			}
		}
		s.Limits = append(s.Limits, l)
	}
	if p.lastSeen.ok {
		hs := &HeaderSample{At: p.clock.Wall(p.lastSeen.at), Windows: map[string]WindowSample{}}
		for _, k := range Kinds {
			w := p.lastSeen.obs.Windows[k]
			var ws WindowSample
			if w.HasLimit {
				ws.Limit = &w.Limit
			}
			if w.HasRemaining {
				ws.Remaining = &w.Remaining
			}
			if ws.Limit != nil || ws.Remaining != nil {
				hs.Windows[k.String()] = ws
			}
		}
		s.LastHeaders = hs
	}
	return s
}
