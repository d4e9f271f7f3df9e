// Package quotabench measures how well a Deployment's sidecars together use one
// provider account (issue 10): N real limiter processes in front of the simulator,
// which enforces the account's limits, under scripted demand sent through the official
// Go SDKs, in three modes: leases from the manager, every pod the full limit, and a
// static limit / N per pod.
package quotabench

import (
	"time"

	"github.com/aiquota/aiquota/internal/simulator"
)

// Mode is how the pods' limiters learn their share of the account.
type Mode string

const (
	// ModeLeases: the limiters report to the manager and take its leases (needs the
	// manager's control channel; see Options.Leases).
	ModeLeases Mode = "leases"
	// ModeFull: every pod enforces the account's whole limits (the manager's
	// --account-leases=false, and every release before leases).
	ModeFull Mode = "full limit per pod"
	// ModeStatic: the quota rendered with its limits divided by the pod count at
	// deploy time; a later scale does not change it.
	ModeStatic Mode = "static limit / N"
)

// Binding names the limit a scenario saturates, which goodput is measured against.
type Binding string

const (
	BindRPM         Binding = "requests/min"
	BindConcurrency Binding = "concurrency"
	BindDaily       Binding = "requests/day"
)

// Event is a change during a scenario, at an offset from its start.
type Event struct {
	At time.Duration
	// Pods, when not 0, is the new number of pods (scale up or down).
	Pods int
	// Weights, when set, is the new demand split among the pods (by index; missing
	// pods weigh 0).
	Weights []float64
	// RollingRestart restarts the pods one after another.
	RollingRestart bool
	// Storm, when not 0, is how long the provider answers this share of calls with
	// 429 from At on (StormShare).
	Storm      time.Duration
	StormShare float64
	// Manager events need the leases mode: kill the manager for a while, or fail
	// over to the second replica.
	KillManager time.Duration
	Failover    bool
}

// Scenario is one scripted run.
type Scenario struct {
	Name     string
	Provider string // simulator.ProviderOpenAI or simulator.ProviderAnthropic
	Limits   simulator.Limits
	Binding  Binding
	Pods     int
	// Demand is the offered load over all pods, requests per second, split by
	// Weights (equal when empty).
	Demand   float64
	Weights  []float64
	Duration time.Duration
	// Warmup is left out of goodput: the buckets (the simulator's and the
	// limiters') start full, so the first seconds admit a burst.
	Warmup time.Duration
	// Latency is the simulator's time to first token, which sets how many calls
	// are in flight.
	Latency time.Duration
	Events  []Event
	// ManagerOnly scenarios measure nothing without a manager.
	ManagerOnly bool
}

// Scenarios are issue 10's list; stretch multiplies every duration (1 = the short
// run of tens of seconds, 3 = demand moving every 30 s).
func Scenarios(stretch float64) []Scenario {
	d := func(s float64) time.Duration { return time.Duration(s * stretch * float64(time.Second)) }
	rpm := simulator.Limits{RequestsPerMinute: 600}
	skew := []float64{5, 1, 1, 1, 1, 1, 1, 1}
	first, second := []float64{1, 1, 1, 1}, []float64{0, 0, 0, 0, 1, 1, 1, 1}
	rolling := []Event{{At: d(10), RollingRestart: true}}
	return []Scenario{
		{Name: "8 pods, equal demand", Provider: simulator.ProviderOpenAI, Limits: rpm, Binding: BindRPM,
			Pods: 8, Demand: 15, Duration: d(25), Warmup: d(10), Latency: 50 * time.Millisecond},
		{Name: "8 pods, one 5x", Provider: simulator.ProviderOpenAI, Limits: rpm, Binding: BindRPM,
			Pods: 8, Demand: 15, Weights: skew, Duration: d(25), Warmup: d(10), Latency: 50 * time.Millisecond},
		{Name: "demand moves every 10 s", Provider: simulator.ProviderOpenAI, Limits: rpm, Binding: BindRPM,
			Pods: 8, Demand: 15, Weights: first, Duration: d(40), Warmup: d(10), Latency: 50 * time.Millisecond,
			Events: []Event{{At: d(20), Weights: second}, {At: d(30), Weights: first}}},
		{Name: "scale 8 -> 12 -> 4", Provider: simulator.ProviderOpenAI, Limits: rpm, Binding: BindRPM,
			Pods: 8, Demand: 15, Duration: d(40), Warmup: d(10), Latency: 50 * time.Millisecond,
			Events: []Event{{At: d(20), Pods: 12}, {At: d(30), Pods: 4}}},
		{Name: "concurrency-bound (Anthropic)", Provider: simulator.ProviderAnthropic,
			Limits: simulator.Limits{RequestsPerMinute: 100_000, MaxConcurrency: 8}, Binding: BindConcurrency,
			Pods: 8, Demand: 24, Duration: d(20), Warmup: d(5), Latency: 500 * time.Millisecond},
		{Name: "daily cap, rolling restart", Provider: simulator.ProviderOpenAI,
			Limits: simulator.Limits{RequestsPerMinute: 100_000, RequestsPerDay: 150}, Binding: BindDaily,
			Pods: 8, Demand: 10, Duration: d(25), Latency: 50 * time.Millisecond, Events: rolling},
		{Name: "429 storm for 10 s, 1 pod", Provider: simulator.ProviderOpenAI, Limits: rpm, Binding: BindRPM,
			Pods: 1, Demand: 15, Duration: d(40), Warmup: d(10), Latency: 50 * time.Millisecond,
			Events: []Event{{At: d(12), Storm: d(10), StormShare: 0.5}}},
		{Name: "manager killed for 20 s", Provider: simulator.ProviderOpenAI, Limits: rpm, Binding: BindRPM,
			Pods: 8, Demand: 15, Duration: d(45), Warmup: d(10), Latency: 50 * time.Millisecond, ManagerOnly: true,
			Events: []Event{{At: d(15), KillManager: 20 * time.Second}}},
		{Name: "leader failover", Provider: simulator.ProviderOpenAI, Limits: rpm, Binding: BindRPM,
			Pods: 8, Demand: 15, Duration: d(30), Warmup: d(10), Latency: 50 * time.Millisecond, ManagerOnly: true,
			Events: []Event{{At: d(15), Failover: true}}},
	}
}
