// Package federation simulates one provider account shared by many clusters with
// hierarchical leases (docs/quota-federation.md): a parent allocator leases each
// cluster a share of the account, and each cluster's allocator leases that share
// to its pods. Both are internal/allocator; there are no processes and no network,
// only the allocators, a simulated clock, and answers that arrive at once.
package federation

import (
	"fmt"
	"time"

	"github.com/aiquota/aiquota/internal/allocator"
)

// Config is one simulation.
type Config struct {
	Clusters, PodsPerCluster int
	// Limit is the account's requests per minute; Margin the fraction never granted.
	Limit, Margin float64
	// ParentReserve and ClusterReserve are the allocators' reserves for newcomers.
	ParentReserve, ClusterReserve float64
	// ClusterTTL is the parent's lease; PodTTL the clusters' leases to pods. A
	// cluster stops renewing its pods' leases PodTTL before its own runs out.
	ClusterTTL, PodTTL time.Duration
	// ClusterReport and PodReport are the report intervals (each holder at its own
	// phase within the interval).
	ClusterReport, PodReport time.Duration
	// Tick is the simulation's step; Duration its length.
	Tick, Duration time.Duration
	// Overload is the total demand in multiples of the limit.
	Overload float64
	// ShiftAt is when demand moves: half the clusters drop to a tenth of their
	// demand, the other half take what they dropped. The second before it is the
	// steady state the rest is measured against.
	ShiftAt time.Duration
	// PartitionAt (after the shift has settled) is when the first Partitioned
	// clusters lose the parent, for PartitionFor; zero PartitionFor: never.
	PartitionAt, PartitionFor time.Duration
	Partitioned               int
	// Unconfirmed makes a cluster report its lease alone as what it applies, not
	// what its pods may still enforce: the parent then moves a decrease before the
	// pods gave it back. The ablation docs/quota-federation.md measures.
	Unconfirmed bool
}

// Result is what a run measured.
type Result struct {
	// Goodput is the requests per minute pods could send (the least of their
	// demand and their lease), in percent of the limit, averaged over the second
	// before ShiftAt (or the run's end without a shift).
	Goodput float64
	// ShiftLow is the lowest goodput after the shift; Rebalance the time from the
	// shift until goodput is back within one point of Goodput.
	ShiftLow  float64
	Rebalance time.Duration
	// PartitionLow is the lowest goodput during the partition; Reassigned the time
	// from the partition's start until goodput is back within one point of
	// Goodput once the cut clusters' leases have expired (the parent handed their
	// share to the others); Rejoined the time from the partition's end until the
	// first cut cluster's pods hold 90% of what they held before it.
	PartitionLow float64
	Reassigned   time.Duration
	Rejoined     time.Duration
	// OverGrant is the most the pods' leases together exceeded limit × (1 −
	// margin) at any tick, beyond float rounding (1e-6 rpm): must be 0.
	OverGrant float64
	// ParentReports and PodReports count the reports each level handled per second.
	ParentReports, PodReports float64
}

var account = allocator.AccountID{Namespace: "org", Quota: "shared", Key: "key", Pool: "pool"}

const rpm = allocator.RequestsPerMinute

type pod struct {
	id      string
	want    float64
	lease   float64
	expires time.Time
	held    bool
}

func (p *pod) enforced(now time.Time) float64 {
	if p.held && now.Before(p.expires) {
		return p.lease
	}
	return 0
}

type cluster struct {
	id      string
	alloc   *allocator.Allocator
	lease   float64
	expires time.Time
	held    bool
	cut     bool
	pods    []*pod
}

// limit is what the cluster lets its pods share: its lease, until PodTTL before it
// runs out, so that every pod lease it grants ends before its own does. The
// allocator reads a limit of 0 as "unlimited", so a cluster without a lease grants
// against a limit too small to grant anything.
func (c *cluster) limit(now time.Time, podTTL time.Duration) float64 {
	if c.held && now.Before(c.expires.Add(-podTTL)) && c.lease > 0 {
		return c.lease
	}
	return 1e-9
}

// Run simulates cfg.
func Run(cfg Config) (Result, error) {
	if cfg.PodTTL >= cfg.ClusterTTL {
		return Result{}, fmt.Errorf("the pods' lease (%v) must be shorter than the clusters' (%v)", cfg.PodTTL, cfg.ClusterTTL)
	}
	if cfg.ShiftAt < time.Second || (cfg.PartitionFor > 0 && cfg.PartitionAt <= cfg.ShiftAt) {
		return Result{}, fmt.Errorf("the shift (at %v) must come after a second of warm-up, before any partition (at %v)", cfg.ShiftAt, cfg.PartitionAt)
	}
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	// Allocators that start with nothing outstanding need not learn first.
	parent := allocator.New(allocator.Config{TTL: cfg.ClusterTTL, Reserve: cfg.ParentReserve}, start.Add(-cfg.ClusterTTL))
	share := cfg.Overload * cfg.Limit / float64(cfg.Clusters*cfg.PodsPerCluster)
	clusters := make([]*cluster, cfg.Clusters)
	for i := range clusters {
		c := &cluster{id: fmt.Sprintf("cluster-%d", i),
			alloc: allocator.New(allocator.Config{TTL: cfg.PodTTL, Reserve: cfg.ClusterReserve}, start.Add(-cfg.PodTTL))}
		for j := range cfg.PodsPerCluster {
			c.pods = append(c.pods, &pod{id: fmt.Sprintf("pod-%d", j), want: share})
		}
		clusters[i] = c
	}
	budget := cfg.Limit * (1 - cfg.Margin)
	var res Result
	var parentReports, podReports int
	ticks := int(cfg.Duration / cfg.Tick)
	clusterSlots, podSlots := max(1, int(cfg.ClusterReport/cfg.Tick)), max(1, int(cfg.PodReport/cfg.Tick))
	var before []float64 // goodput over the second before the shift
	shifted := false
	res.ShiftLow, res.PartitionLow = 100, 100
	var shiftTime, partEnd time.Time
	var heldBefore float64 // by the first cut cluster's pods when the partition starts
	partStart := start.Add(cfg.PartitionAt)
	for tick := range ticks {
		now := start.Add(time.Duration(tick) * cfg.Tick)
		if !shifted && !now.Before(start.Add(cfg.ShiftAt)) {
			shifted, shiftTime = true, now
			for i, c := range clusters {
				for _, p := range c.pods {
					if i%2 == 0 {
						p.want = share / 10
					} else {
						p.want = share * 1.9
					}
				}
			}
		}
		if cfg.PartitionFor > 0 {
			cut := !now.Before(partStart) && now.Before(partStart.Add(cfg.PartitionFor))
			if cut && !clusters[0].cut {
				heldBefore = clusters[0].podsHold(now)
			}
			if !cut && clusters[0].cut {
				partEnd = now
			}
			for i := range cfg.Partitioned {
				clusters[i].cut = cut
			}
		}
		for i, c := range clusters {
			if (tick+i)%clusterSlots == 0 && !c.cut {
				c.report(parent, cfg, now)
				parentReports++
			}
			limit := c.limit(now, cfg.PodTTL)
			for j, p := range c.pods {
				if (tick+i+j)%podSlots == 0 {
					p.report(c.alloc, cfg, limit, now)
					podReports++
				}
			}
		}
		var granted, good float64
		for _, c := range clusters {
			for _, p := range c.pods {
				e := p.enforced(now)
				granted += e
				good += min(e, p.want)
			}
		}
		if over := granted - budget; over > 1e-6 {
			res.OverGrant = max(res.OverGrant, over)
		}
		gp := 100 * good / cfg.Limit
		switch {
		case !shifted && now.After(start.Add(cfg.ShiftAt-time.Second)):
			before = append(before, gp)
		case shifted && res.Rebalance == 0:
			res.ShiftLow = min(res.ShiftLow, gp)
			if gp >= mean(before)-1 {
				res.Rebalance = now.Sub(shiftTime)
			}
		}
		if cfg.PartitionFor > 0 && !now.Before(partStart) {
			if partEnd.IsZero() {
				res.PartitionLow = min(res.PartitionLow, gp)
			}
			if res.Reassigned == 0 && now.After(partStart.Add(cfg.ClusterTTL)) && gp >= mean(before)-1 {
				res.Reassigned = now.Sub(partStart)
			}
			if !partEnd.IsZero() && res.Rejoined == 0 && clusters[0].podsHold(now) >= 0.9*heldBefore {
				res.Rejoined = now.Sub(partEnd)
			}
		}
	}
	res.Goodput = mean(before)
	secs := cfg.Duration.Seconds()
	res.ParentReports, res.PodReports = float64(parentReports)/secs, float64(podReports)/secs
	return res, nil
}

// podsHold is what c's pods enforce together.
func (c *cluster) podsHold(now time.Time) float64 {
	var sum float64
	for _, p := range c.pods {
		sum += p.enforced(now)
	}
	return sum
}

// report is one cluster's report to the parent: its pods' demand, and as what it
// applies the larger of its lease and what its pods may still be enforcing, so
// that the parent moves a decrease elsewhere only once the pods confirmed it.
func (c *cluster) report(parent *allocator.Allocator, cfg Config, now time.Time) {
	var want float64
	for _, p := range c.pods {
		want += p.want
	}
	r := allocator.Report{
		Account: account, Holder: c.id, Limits: allocator.Amounts{rpm: cfg.Limit}, Margin: cfg.Margin, Day: day(now),
		Demand: allocator.Demand{Want: allocator.Amounts{rpm: want}, Weight: 1},
	}
	applied := c.alloc.Committed(account, rpm)
	if cfg.Unconfirmed {
		applied = 0
	}
	if c.held && now.Before(c.expires) {
		applied = max(applied, c.lease)
	}
	if applied > 0 || (c.held && now.Before(c.expires)) {
		r.Applied = &allocator.Amounts{rpm: applied}
	}
	lease, ok := parent.Report(now, r)
	if !ok {
		return
	}
	// The lease runs from before the report was sent: here, now.
	c.lease, c.expires, c.held = lease.Amounts[rpm], now.Add(cfg.ClusterTTL), true
}

func (p *pod) report(alloc *allocator.Allocator, cfg Config, limit float64, now time.Time) {
	r := allocator.Report{
		Account: account, Holder: p.id, Limits: allocator.Amounts{rpm: limit}, Day: day(now),
		Demand: allocator.Demand{Want: allocator.Amounts{rpm: p.want}, Weight: 1},
	}
	if p.held && now.Before(p.expires) {
		r.Applied = &allocator.Amounts{rpm: p.lease}
	}
	lease, ok := alloc.Report(now, r)
	if !ok {
		return
	}
	p.lease, p.expires, p.held = lease.Amounts[rpm], now.Add(cfg.PodTTL), true
}

// day is now's UTC day, as the allocator counts days.
func day(now time.Time) int64 { return now.UTC().Unix() / 86400 }

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// Default is the simulation docs/quota-federation.md reports: 50 clusters of 1,000
// pods, demand at 1.5 times the limit, the manager's default pod lease (30 s) and
// a report a second (a sidecar with requests waiting reports within one).
func Default() Config {
	return Config{
		Clusters: 50, PodsPerCluster: 1000, Limit: 1_000_000, Margin: 0,
		ParentReserve: 0.01, ClusterReserve: 0.01,
		ClusterTTL: 60 * time.Second, PodTTL: 30 * time.Second,
		ClusterReport: time.Second, PodReport: time.Second,
		Tick: 100 * time.Millisecond, Duration: 200 * time.Second, Overload: 1.5,
		ShiftAt: 30 * time.Second, PartitionAt: 60 * time.Second, PartitionFor: 90 * time.Second, Partitioned: 5,
	}
}

// Table is res as a Markdown table, with cfg's shape above it.
func Table(cfg Config, res Result) string {
	s := fmt.Sprintf("%d clusters x %d pods, one account of %.0f rpm (margin %.0f%%), demand %.1fx the limit; "+
		"reserves %.0f%% (parent) and %.0f%% (cluster); leases %v (cluster) and %v (pod), reports every %v and %v; "+
		"%d clusters cut from the parent for %v\n\n",
		cfg.Clusters, cfg.PodsPerCluster, cfg.Limit, 100*cfg.Margin, cfg.Overload, 100*cfg.ParentReserve, 100*cfg.ClusterReserve,
		cfg.ClusterTTL, cfg.PodTTL, cfg.ClusterReport, cfg.PodReport, cfg.Partitioned, cfg.PartitionFor)
	s += "| figure | value |\n|---|---|\n"
	row := func(name, format string, v any) { s += fmt.Sprintf("| %s | "+format+" |\n", name, v) }
	row("goodput, steady (% of the limit)", "%.2f", res.Goodput)
	row("largest over-grant at any tick (rpm)", "%.3g", res.OverGrant)
	row("lowest goodput after demand moved between clusters (%)", "%.1f", res.ShiftLow)
	row("time to rebalance after demand moved", "%v", res.Rebalance)
	row("lowest goodput during the partition (%)", "%.1f", res.PartitionLow)
	row("time from the partition until the parent reassigned the cut clusters' share", "%v", res.Reassigned)
	row("time from the partition's end until a cut cluster's pods hold 90% of their share again", "%v", res.Rejoined)
	row("reports per second to the parent", "%.0f", res.ParentReports)
	row("reports per second to all cluster allocators", "%.0f", res.PodReports)
	return s
}
