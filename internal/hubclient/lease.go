package hubclient

import (
	"math"
	"time"

	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/limiter"
)

// LeaseEngine is the part of the limiter engine leases act on.
type LeaseEngine interface {
	Account(provider, keyID, pool string) (*limiter.Account, bool)
	RestoreToday(provider, pool, day string, requests, tokens int64)
	DayKnown()
}

type acctKey struct{ provider, pool, key string }

// held is a lease this sidecar enforces.
type held struct {
	grants  hubapi.Grants
	expires time.Time // on this sidecar's clock: from when the report was sent
	holders int
	lapsed  bool // expired without renewal: the fallback share is in force
}

// demandSample is what one account had counted at the previous report.
type demandSample struct {
	attempts, input, output           int64
	rejected, rejectedIn, rejectedOut int64
}

// leases applies the manager's leases to the engine, lets them lapse to a static
// share when not renewed, and measures each account's demand between reports.
type leases struct {
	engine LeaseEngine
	held   map[acctKey]*held
	prev   map[acctKey]demandSample
	prevAt time.Time
	known  bool // the manager has answered once: daily use is known
}

func newLeases(e LeaseEngine) *leases {
	return &leases{engine: e, held: map[acctKey]*held{}, prev: map[acctKey]demandSample{}}
}

// annotate adds demand and the lease in force to the report's accounts.
func (l *leases) annotate(r *hubapi.Report, snap limiter.Snapshot, now time.Time) {
	queues := map[[2]string]limiter.QueueSnapshot{}
	for _, q := range snap.Queues {
		queues[[2]string{q.Provider, q.Pool}] = q
	}
	keys := map[[2]string]int64{}
	for _, a := range r.Accounts {
		keys[[2]string{a.Provider, a.Pool}]++
	}
	minutes := now.Sub(l.prevAt).Minutes()
	next := make(map[acctKey]demandSample, len(r.Accounts))
	for i := range r.Accounts {
		a := &r.Accounts[i]
		k := acctKey{a.Provider, a.Pool, a.Key}
		q := queues[[2]string{a.Provider, a.Pool}]
		cur := demandSample{attempts: a.Counters.Requests, input: a.Counters.InputTokens, output: a.Counters.OutputTokens,
			rejected: q.Rejected, rejectedIn: q.RejectedInputTokens, rejectedOut: q.RejectedOutputTokens}
		next[k] = cur
		d := &hubapi.Demand{Queued: int64(q.Depth) / keys[[2]string{a.Provider, a.Pool}], Priority: min(max(q.UrgentPriority, 0), 9)}
		if p, ok := l.prev[k]; ok && minutes > 0 && cur.attempts >= p.attempts {
			attempts := float64(cur.attempts - p.attempts)
			// Refused requests are demand too, with the tokens they would have
			// reserved: without them an account that admitted nothing yet (a daily
			// token cap leased at zero) would never be asked for. A pool's refusals
			// are split over its keys.
			split := float64(keys[[2]string{a.Provider, a.Pool}])
			refused := float64(max(0, cur.rejected-p.rejected)) / split
			d.RequestsPerMinute = (attempts + refused) / minutes
			d.InputTokensPerMinute = (float64(max(0, cur.input-p.input)) + float64(max(0, cur.rejectedIn-p.rejectedIn))/split) / minutes
			d.OutputTokensPerMinute = (float64(max(0, cur.output-p.output)) + float64(max(0, cur.rejectedOut-p.rejectedOut))/split) / minutes
		}
		a.Demand = d
		if h := l.held[k]; h != nil && !h.lapsed {
			a.Lease = h.grants
		}
	}
	l.prev, l.prevAt = next, now
}

// apply installs the manager's answer to a report sent at sentAt.
func (l *leases) apply(rep *hubapi.Report, resp *hubapi.Response, sentAt time.Time) {
	got := map[acctKey]bool{}
	for _, ls := range resp.Leases {
		k := acctKey{ls.Provider, ls.Pool, ls.Key}
		a, ok := l.engine.Account(ls.Provider, ls.Key, ls.Pool)
		if !ok {
			continue
		}
		got[k] = true
		applyGrants(a, ls.Grants)
		l.held[k] = &held{grants: ls.Grants, expires: sentAt.Add(ls.TTL.D()), holders: max(1, ls.Holders)}
	}
	// Every pool the manager counted, not only the report's accounts: an account
	// created after this answer (the pool of unlisted models, at its first
	// request) starts from it too.
	for _, t := range resp.Today {
		l.engine.RestoreToday(t.Provider, t.Pool, t.Day, t.Requests, t.Tokens)
	}
	for _, ra := range rep.Accounts {
		k := acctKey{ra.Provider, ra.Pool, ra.Key}
		if got[k] {
			continue
		}
		a, ok := l.engine.Account(ra.Provider, ra.Key, ra.Pool)
		if !ok {
			continue
		}
		// No lease: this manager does not lease accounts. The configured limits
		// apply, from what the account used today.
		if l.held[k] != nil {
			clearGrants(a)
			delete(l.held, k)
		}
	}
	// Only a manager that knows the day's use says so; until then daily caps stay
	// closed.
	if resp.DayKnown && !l.known {
		l.engine.DayKnown()
		l.known = true
	}
}

// lapse replaces leases not renewed by now with a static share: each limit over
// the account's known holders, less the margin; daily caps admit nothing more
// (fail closed: the manager may have granted the rest of the day to others).
// It returns when the next lease expires (zero when none is held).
func (l *leases) lapse(now time.Time, limits map[acctKey]hubapi.Limits, margin map[acctKey]float64) time.Time {
	var next time.Time
	for k, h := range l.held {
		if h.lapsed {
			continue
		}
		if now.Before(h.expires) {
			if next.IsZero() || h.expires.Before(next) {
				next = h.expires
			}
			continue
		}
		a, ok := l.engine.Account(k.provider, k.key, k.pool)
		if !ok {
			delete(l.held, k)
			continue
		}
		h.lapsed = true
		lim, m := limits[k], margin[k]
		share := func(v int64) float64 { return float64(v) * (1 - m) / float64(h.holders) }
		g := hubapi.Grants{}
		for _, kind := range hubapi.LimitKinds {
			if v := lim.PerMinute(kind); v > 0 {
				g[kind] = share(v)
			}
		}
		if lim.MaxConcurrency > 0 {
			g[hubapi.LimitMaxConcurrency] = max(1, math.Floor(share(lim.MaxConcurrency)))
		}
		if lim.RequestsPerDay > 0 {
			g[hubapi.LimitRequestsPerDay] = 0
		}
		if lim.TokensPerDay > 0 {
			g[hubapi.LimitTokensPerDay] = 0
		}
		applyGrants(a, g)
	}
	return next
}

// applyGrants sets an account's lease caps; kinds absent from g are not leased.
func applyGrants(a *limiter.Account, g hubapi.Grants) {
	for _, k := range limiter.Kinds {
		if v, ok := g[k.String()]; ok {
			a.SetLimit(k, v/60, v)
		} else {
			a.ClearLimit(k)
		}
	}
	conc := int64(-1)
	if v, ok := g[hubapi.LimitMaxConcurrency]; ok {
		conc = int64(v)
	}
	a.SetConcurrencyLease(conc)
	day := [2]int64{-1, -1}
	for i, kind := range []string{hubapi.LimitRequestsPerDay, hubapi.LimitTokensPerDay} {
		if v, ok := g[kind]; ok {
			day[i] = int64(v)
		}
	}
	a.SetDailyLease(day[0], day[1])
}

func clearGrants(a *limiter.Account) { applyGrants(a, nil) }

// wantsMore reports whether any account has requests waiting: the next report
// then goes out soon, so that shares follow demand without a fast fixed period.
func wantsMore(r *hubapi.Report) bool {
	for _, q := range r.Queues {
		if q.Depth > 0 {
			return true
		}
	}
	return false
}
