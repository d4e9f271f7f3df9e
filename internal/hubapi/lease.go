package hubapi

import (
	"slices"
)

// Lease dimensions: the Limits field names, which are also the keys of Grants.
const (
	LimitMaxConcurrency = "maxConcurrency"
	LimitRequestsPerDay = "requestsPerDay"
	LimitTokensPerDay   = "tokensPerDay"
)

// LeaseKinds lists every key Grants may have.
var LeaseKinds = []string{
	LimitRequestsPerMinute, LimitTokensPerMinute, LimitInputTokensPerMinute, LimitOutputTokensPerMinute,
	LimitMaxConcurrency, LimitRequestsPerDay, LimitTokensPerDay,
}

// Grants are lease amounts by kind (LeaseKinds): per-minute kinds are a rate per
// minute whose burst is the same amount; maxConcurrency is slots; the daily kinds
// are ceilings on the sidecar's own count for the current UTC day. A kind absent
// is not leased (the account has no such limit); present with 0 admits none.
type Grants map[string]float64

// Demand is what one sidecar would use of one account: what the manager's lease
// allocator shares the account by.
type Demand struct {
	// Requests and tokens that arrived per minute over the last report interval:
	// admitted, queued or refused (refused requests' tokens are estimated from the
	// admitted ones).
	RequestsPerMinute     float64 `json:"requestsPerMinute"`
	InputTokensPerMinute  float64 `json:"inputTokensPerMinute"`
	OutputTokensPerMinute float64 `json:"outputTokensPerMinute"`
	// Queued is the pool's queue depth now.
	Queued int64 `json:"queued"`
	// Priority is the most urgent priority among queued requests (1 interactive ..
	// 9 batch), 0 when none waits: the allocator weighs shares by it.
	Priority int `json:"priority,omitempty"`
}

// Lease is one account's grant to one sidecar, in a Response.
type Lease struct {
	Provider string `json:"provider"`
	Pool     string `json:"pool"`
	Key      string `json:"key"`
	Grants   Grants `json:"grants"`
	// TTL is how long the lease lasts, counted by the sidecar from when it sent
	// the report this answers (so it always lets go before the manager reuses the
	// capacity).
	TTL Duration `json:"ttl"`
	// Holders is how many sidecars hold leases on the account: a sidecar whose
	// lease lapsed falls back to limit / Holders.
	Holders int `json:"holders"`
	// Learning is set while a new manager leader adopts leases before granting.
	Learning bool `json:"learning,omitempty"`
}

// PoolToday is what a (provider, pool) used today across all of the account's
// sidecars, past and present, as the manager counts it: a restarted sidecar
// starts its daily counters from it.
type PoolToday struct {
	Provider string `json:"provider"`
	Pool     string `json:"pool"`
	// Day is the UTC date counted, YYYY-MM-DD.
	Day      string `json:"day"`
	Requests int64  `json:"requests"`
	Tokens   int64  `json:"tokens"`
}

func validateGrants(v *validator, f string, g Grants) {
	if len(g) > len(LeaseKinds) {
		v.addf(f, "has %d entries, more than %d", len(g), len(LeaseKinds))
		return
	}
	for kind, x := range g {
		if !slices.Contains(LeaseKinds, kind) {
			v.addf(f, "unknown limit kind %q", truncate(kind))
		}
		v.float(f+"."+kind, x, 0, maxBucketMagnitude)
	}
}

func validateDemand(v *validator, f string, d *Demand) {
	v.float(f+".requestsPerMinute", d.RequestsPerMinute, 0, maxBucketMagnitude)
	v.float(f+".inputTokensPerMinute", d.InputTokensPerMinute, 0, maxBucketMagnitude)
	v.float(f+".outputTokensPerMinute", d.OutputTokensPerMinute, 0, maxBucketMagnitude)
	v.count(f+".queued", d.Queued)
	if d.Priority < 0 || d.Priority > 9 {
		v.addf(f+".priority", "is %d, not 0..9", d.Priority)
	}
}

// Validate checks a response's leases and day counts.
func (r *Response) Validate() error {
	v := &validator{}
	entries(v, "leases", r.Leases, MaxAccounts, func(f string, l *Lease) {
		v.name(f+".provider", l.Provider, maxNameLen)
		v.name(f+".pool", l.Pool, maxNameLen)
		v.name(f+".key", l.Key, 2*maxNameLen+1)
		validateGrants(v, f+".grants", l.Grants)
		if l.TTL <= 0 || l.TTL.D() > maxReportInterval {
			v.addf(f+".ttl", "is %v, not in (0, %v]", l.TTL.D(), maxReportInterval)
		}
		v.count(f+".holders", int64(l.Holders))
	})
	entries(v, "today", r.Today, MaxAccounts, func(f string, t *PoolToday) {
		v.name(f+".provider", t.Provider, maxNameLen)
		v.name(f+".pool", t.Pool, maxNameLen)
		v.count(f+".requests", t.Requests)
		v.count(f+".tokens", t.Tokens)
	})
	if len(v.problems) > 0 {
		return &ValidationError{Problems: v.problems, Document: "response"}
	}
	return nil
}
