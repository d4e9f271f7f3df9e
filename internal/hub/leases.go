package hub

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/aiquota/aiquota/internal/allocator"
	"github.com/aiquota/aiquota/internal/hubapi"
)

// Lease defaults.
const (
	// DefaultLeaseTTL is how long a lease lasts unrenewed: three default report
	// intervals, so that one or two lost reports do not lapse it.
	DefaultLeaseTTL = 30 * time.Second
	// DefaultLeaseReserve is the fraction of each limit kept for newcomers. Small:
	// what it holds back is idle whenever no pod is new, and at 5% it held
	// steady goodput near 95% of the account (make bench-quota, equal demand:
	// 95.7% at 5%, 100.3% at 2%).
	DefaultLeaseReserve = 0.02
	// expireEvery bounds how often answering a report also sweeps expired holders.
	expireEvery = time.Second
)

// Leases answers reports with the sidecar's account leases (internal/allocator)
// and with what its pools used today. Only the leader answers reports, and its
// allocator starts with its first answer, in learning mode: a new leader adopts
// the leases sidecars report before it grants anything new.
type Leases struct {
	// Enabled turns leases on (--account-leases); off, answers carry only the
	// pools' use today and every sidecar enforces its configured limits.
	Enabled bool
	TTL     time.Duration
	Reserve float64
	Now     func() time.Time

	// Record, when set, keeps the grant horizon on record (see HorizonRecord and
	// Start); Log reports failures to keep it.
	Record interface {
		Load(ctx context.Context) (time.Time, error)
		Store(ctx context.Context, until time.Time, ttl time.Duration) error
	}
	Log logr.Logger

	mu        sync.Mutex
	alloc     *allocator.Allocator
	recorded  bool // the term's horizon is on record
	lastSweep time.Time
}

// allocatorLocked returns the term's allocator, started at now on first use. With a
// Record it offers only leases that end at once until Start has the horizon on
// record.
func (l *Leases) allocatorLocked(now time.Time) *allocator.Allocator {
	if l.alloc == nil {
		l.alloc = allocator.New(allocator.Config{TTL: l.TTL, Reserve: l.Reserve}, now)
		if l.Record != nil {
			l.alloc.AwaitHorizon()
		}
	}
	return l.alloc
}

// Answer folds r into the allocator and returns r's leases, or none when leases
// are off.
func (l *Leases) Answer(r *hubapi.Report) []hubapi.Lease {
	if l == nil || !l.Enabled {
		return nil
	}
	now := l.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.allocatorLocked(now)
	if now.Sub(l.lastSweep) >= expireEvery {
		l.alloc.Expire(now)
		l.lastSweep = now
	}
	holder := r.Pod.UID + "/" + r.Boot.ID
	day := now.UTC().Unix() / 86400
	var out []hubapi.Lease
	for i := range r.Accounts {
		a := &r.Accounts[i]
		id := allocator.AccountID{Namespace: r.Config.Namespace, Quota: a.Provider, Key: a.Key, Pool: a.Pool}
		in := allocator.Report{
			Account: id, Holder: holder, Limits: amountsOf(a.Limits), Margin: float64(a.SafetyMarginPercent) / 100,
			Learned: amountsOf(a.Learned), Throttle: a.Throttle,
			Demand: demandOf(a, l.TTL), Used: allocator.Amounts{allocator.RequestsPerDay: float64(a.RequestsToday), allocator.TokensPerDay: float64(a.TokensToday)},
			Day: day, Final: r.Final,
		}
		if a.Lease != nil {
			applied := grantsToAmounts(a.Lease)
			in.Applied = &applied
		}
		lease, ok := l.alloc.Report(now, in)
		if !ok {
			continue
		}
		g := hubapi.Grants{}
		for d := range allocator.NumDims {
			if lease.Limited[d] {
				g[d.String()] = lease.Amounts[d]
			}
		}
		out = append(out, hubapi.Lease{
			// At least a millisecond, as the wire requires: counted from before the
			// report was sent, such a lease has ended when it arrives.
			Provider: a.Provider, Pool: a.Pool, Key: a.Key, Grants: g, TTL: hubapi.Duration(max(lease.Expires.Sub(now), time.Millisecond)),
			Holders: l.alloc.Holders(id), Learning: lease.Learning,
		})
	}
	return out
}

func amountsOf(l hubapi.Limits) allocator.Amounts {
	return allocator.Amounts{
		allocator.RequestsPerMinute: float64(l.RequestsPerMinute), allocator.TokensPerMinute: float64(l.TokensPerMinute),
		allocator.InputTokensPerMinute: float64(l.InputTokensPerMinute), allocator.OutputTokensPerMinute: float64(l.OutputTokensPerMinute),
		allocator.Concurrency: float64(l.MaxConcurrency), allocator.RequestsPerDay: float64(l.RequestsPerDay), allocator.TokensPerDay: float64(l.TokensPerDay),
	}
}

func grantsToAmounts(g hubapi.Grants) allocator.Amounts {
	var a allocator.Amounts
	for d := range allocator.NumDims {
		a[d] = g[d.String()]
	}
	return a
}

// demandOf turns a sidecar's demand into what it wants of each limit: per minute,
// the arrivals plus the backlog drained within a minute; concurrency, what is in
// flight and waiting; daily, what it would use until two lease periods from now.
// A sidecar that sends no demand (older than leases) wants everything.
func demandOf(a *hubapi.Account, ttl time.Duration) allocator.Demand {
	d := a.Demand
	if d == nil {
		return allocator.Demand{Want: amountsOf(a.Limits), Weight: 1}
	}
	perReq := func(tokens float64) float64 {
		if d.RequestsPerMinute > 0 {
			return tokens / d.RequestsPerMinute
		}
		return 0
	}
	q := float64(d.Queued)
	in := d.InputTokensPerMinute + q*perReq(d.InputTokensPerMinute)
	out := d.OutputTokensPerMinute + q*perReq(d.OutputTokensPerMinute)
	horizon := 2 * ttl.Minutes()
	return allocator.Demand{
		Want: allocator.Amounts{
			allocator.RequestsPerMinute: d.RequestsPerMinute + q, allocator.TokensPerMinute: in + out,
			allocator.InputTokensPerMinute: in, allocator.OutputTokensPerMinute: out,
			allocator.Concurrency:    float64(a.InFlight) + q,
			allocator.RequestsPerDay: d.RequestsPerMinute*horizon + q + 1, allocator.TokensPerDay: (in + out) * horizon,
		},
		Weight: weightOf(d.Priority), Queued: d.Queued,
	}
}

// weightOf is a sidecar's share weight: 1, up to 2 while interactive requests
// (priority 1) wait, so that urgent demand gets up to twice the share of batch.
func weightOf(urgent int) float64 {
	if urgent < 1 || urgent > 9 {
		return 1
	}
	return 1 + float64(9-urgent)/8
}
