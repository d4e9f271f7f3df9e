package hub

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"

	"github.com/aiquota/aiquota/internal/allocator"
	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/hubclient"
	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/testkit"
)

// leaseSidecar stands in for a limiter sidecar at the wire: it reports its demand
// and the lease it enforces, which is the last one it received.
type leaseSidecar struct {
	pod     *corev1.Pod
	token   string
	boot    string
	seq     uint64
	lease   hubapi.Grants
	limits  hubapi.Limits
	waiting int64
}

func (s *leaseSidecar) report(t *testing.T, c *channel, src hubapi.Config) bool {
	t.Helper()
	s.seq++
	r := podReport(s.pod, src, s.seq, s.boot, time.Now(), 0, 0)
	r.Accounts[0].Limits = s.limits
	r.Accounts[0].Demand = &hubapi.Demand{Queued: s.waiting}
	r.Accounts[0].Lease = s.lease
	r.Queues = []hubapi.Queue{{Provider: "openai", Pool: "gpt-4o", Depth: s.waiting}}
	code, eb := c.sendReport(t, s.token, r)
	if code != 200 {
		t.Logf("report refused: %d %+v", code, eb)
		return false
	}
	s.lease = nil
	for _, l := range c.ack.Leases {
		s.lease = l.Grants
	}
	return true
}

// TestLeasesBoundTheAccountAcrossLeaderChange: two pods that each want the whole
// account's concurrency share it, at no moment holding more slots together than
// the account has, through a manager restart (a new leader that knows nothing of
// the old one's leases); and both get slots again after it.
func TestLeasesBoundTheAccountAcrossLeaderChange(t *testing.T) {
	certs := newTestCerts(t)
	ns := newNamespace(t)
	createQuota(t, ns)
	src := hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: "openai"}
	const slots = 5
	var pods []*leaseSidecar
	for i := range 2 {
		pod := newPod(t, ns, fmt.Sprintf("app-%d", i))
		pods = append(pods, &leaseSidecar{pod: pod, token: podToken(t, pod), boot: fmt.Sprintf("boot-%d", i),
			limits: hubapi.Limits{MaxConcurrency: slots}, waiting: 10})
	}
	held := func() (sum float64, each []float64) {
		for _, p := range pods {
			v := p.lease[hubapi.LimitMaxConcurrency]
			sum += v
			each = append(each, v)
		}
		return sum, each
	}
	run := func(c *channel, phase string) {
		testkit.Eventually(t, 60*time.Second, phase+": both pods hold slots", testkit.Stated(func() (bool, string) {
			for _, p := range pods {
				p.report(t, c, src)
				if sum, each := held(); sum > slots {
					t.Fatalf("%s: pods hold %v slots together (%v), more than the account's %d", phase, sum, each, slots)
				}
			}
			sum, each := held()
			return each[0] > 0 && each[1] > 0 && sum >= slots-1, fmt.Sprintf("slots held %v", each)
		}))
	}
	ttl := func(o *Options) { o.LeaseTTL = 2 * time.Second }
	first := startChannel(t, certs, ttl)
	run(first, "first leader")
	// The status shows the sharing: both pods, the account fully granted, and the
	// requests still waiting.
	testkit.Eventually(t, 60*time.Second, "the sharing in status", testkit.Stated(func() (bool, string) {
		for _, p := range pods {
			p.report(t, first, src)
		}
		sh := getQuota(t, ns).Status.Sharing
		return sh != nil && sh.LeaseHolders == 2 && len(sh.Pods) == 2 && sh.Queued == 20,
			fmt.Sprintf("%+v", sh)
	}))
	first.stop()
	second := startChannel(t, certs, ttl)
	run(second, "after the leader change")
}

// TestDemandExceedsQuotaCondition: requests waiting at a full grant turn the hub's
// DemandExceedsQuota condition True (with the queue and the grant in its message,
// and an Event), and False once the queues drain; the reconciler's conditions
// survive the hub's writes and the hub's condition survives the reconciler's.
func TestDemandExceedsQuotaCondition(t *testing.T) {
	certs := newTestCerts(t)
	ns := newNamespace(t)
	createQuota(t, ns)
	ctx := context.Background()
	setReady := func(status metav1.ConditionStatus, reason string) {
		t.Helper()
		pq := getQuota(t, ns)
		before := pq.DeepCopy()
		meta.SetStatusCondition(&pq.Status.Conditions, metav1.Condition{Type: quotav1alpha1.ConditionReady, Status: status, Reason: reason, Message: "as the reconciler writes it"})
		if err := env.Client.Status().Patch(ctx, &pq, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
	}
	setReady(metav1.ConditionTrue, quotav1alpha1.ReasonReady)
	src := hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: "openai"}
	var pods []*leaseSidecar
	for i := range 2 {
		pod := newPod(t, ns, fmt.Sprintf("app-%d", i))
		pods = append(pods, &leaseSidecar{pod: pod, token: podToken(t, pod), boot: fmt.Sprintf("boot-%d", i),
			limits: hubapi.Limits{MaxConcurrency: 5}, waiting: 10})
	}
	c := startChannel(t, certs, func(o *Options) { o.LeaseTTL = 2 * time.Second })
	conditions := func(phase string, want func(exceeds, ready *metav1.Condition, gen int64) bool) {
		t.Helper()
		testkit.Eventually(t, 60*time.Second, phase, testkit.Stated(func() (bool, string) {
			for _, p := range pods {
				p.report(t, c, src)
			}
			pq := getQuota(t, ns)
			exceeds := meta.FindStatusCondition(pq.Status.Conditions, quotav1alpha1.ConditionDemandExceedsQuota)
			ready := meta.FindStatusCondition(pq.Status.Conditions, quotav1alpha1.ConditionReady)
			return exceeds != nil && ready != nil && want(exceeds, ready, pq.Generation), fmt.Sprintf("%+v", pq.Status.Conditions)
		}))
	}
	conditions("demand exceeds the quota", func(exceeds, ready *metav1.Condition, gen int64) bool {
		return exceeds.Status == metav1.ConditionTrue && exceeds.Reason == quotav1alpha1.ReasonQueuedAtFullGrant &&
			exceeds.ObservedGeneration == gen && strings.HasPrefix(exceeds.Message, "20 requests wait") &&
			ready.Status == metav1.ConditionTrue
	})
	testkit.Eventually(t, 60*time.Second, "a DemandExceedsQuota event", testkit.Stated(func() (bool, string) {
		seen := eventsIn(t, ns)
		return slices.Contains(seen, "ProviderQuota/openai:"+quotav1alpha1.ConditionDemandExceedsQuota), fmt.Sprint(seen)
	}))
	// The reconciler's next write of its own conditions leaves the hub's in place.
	setReady(metav1.ConditionFalse, quotav1alpha1.ReasonSecretNotFound)
	if got := meta.FindStatusCondition(getQuota(t, ns).Status.Conditions, quotav1alpha1.ConditionDemandExceedsQuota); got == nil || got.Status != metav1.ConditionTrue {
		t.Fatalf("DemandExceedsQuota after the reconciler's write: %+v", got)
	}
	for _, p := range pods {
		p.waiting = 0
	}
	conditions("the queues drained", func(exceeds, ready *metav1.Condition, _ int64) bool {
		return exceeds.Status == metav1.ConditionFalse && exceeds.Reason == quotav1alpha1.ReasonWithinQuota &&
			ready.Status == metav1.ConditionFalse && ready.Reason == quotav1alpha1.ReasonSecretNotFound
	})
}

// TestLeasesOffEnforcesFullLimits: with --account-leases=false the answer carries
// no lease (the baseline every pod enforcing the full limits).
func TestLeasesOffEnforcesFullLimits(t *testing.T) {
	certs := newTestCerts(t)
	ns := newNamespace(t)
	createQuota(t, ns)
	pod := newPod(t, ns, "app")
	src := hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: "openai"}
	c := startChannel(t, certs, func(o *Options) { o.AccountLeases = false })
	s := &leaseSidecar{pod: pod, token: podToken(t, pod), boot: "boot", limits: hubapi.Limits{MaxConcurrency: 5}}
	if !s.report(t, c, src) {
		t.Fatal("report refused")
	}
	if len(c.ack.Leases) != 0 {
		t.Fatalf("leases %+v with leases off", c.ack.Leases)
	}
}

// sidecarProcess is a limiter engine and its real hub client reporting to c.
type sidecarProcess struct {
	engine *limiter.Engine
	pool   *limiter.Pool
	stop   func()
}

func startSidecar(t *testing.T, c *channel, certs *testCerts, pod *corev1.Pod, cfg limiterconfig.Config) *sidecarProcess {
	t.Helper()
	dir := t.TempDir()
	cfg.Control = &limiterconfig.Control{URL: c.url, TokenFile: filepath.Join(dir, "token"), CAFile: filepath.Join(dir, "ca.crt"),
		ReportInterval: limiterconfig.Duration(200 * time.Millisecond)}
	if err := os.WriteFile(cfg.Control.TokenFile, []byte(podToken(t, pod)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Control.CAFile, certs.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	e := limiter.New(limiter.Options{})
	e.Apply(&cfg)
	pool, err := e.Pool("openai", "gpt-4o")
	if err != nil {
		t.Fatal(err)
	}
	client := hubclient.New(hubclient.Options{
		Config: func() (*limiterconfig.Config, string) { return &cfg, "hash" }, Snapshot: e.Snapshot, Leases: e,
		Pod: hubapi.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { client.Run(ctx); close(done) }()
	p := &sidecarProcess{engine: e, pool: pool, stop: func() { cancel(); <-done }}
	t.Cleanup(p.stop)
	return p
}

// use admits one request and settles it, as a proxied call would.
func (p *sidecarProcess) use() bool {
	r, ok := p.pool.TryAdmit(limiter.Demand{InputTokens: 10})
	if ok {
		r.End(limiter.Attempt{Status: 200, Usage: limiter.Usage{InputTokens: 10}, UsageKnown: true})
	}
	return ok
}

// TestDailyCapSurvivesSidecarRestart: a daily cap of N requests, a sidecar that
// crashes mid-day and starts again: no more than N go out in all, with leases and
// without.
func TestDailyCapSurvivesSidecarRestart(t *testing.T) {
	const perDay = 10
	for _, leases := range []bool{false, true} {
		t.Run(fmt.Sprintf("leases=%v", leases), func(t *testing.T) {
			certs := newTestCerts(t)
			ns := newNamespace(t)
			createQuota(t, ns)
			pod := newPod(t, ns, "app")
			c := startChannel(t, certs, func(o *Options) { o.AccountLeases = leases; o.LeaseTTL = 2 * time.Second })
			cfg := limiterconfig.Config{
				SchemaVersion: limiterconfig.SchemaVersion,
				Source:        limiterconfig.Source{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: "openai"},
				Providers: []limiterconfig.Provider{{
					Name: "openai", Type: limiterconfig.ProviderOpenAI, Endpoint: "https://api.openai.com",
					Keys:   []limiterconfig.Key{{ID: "openai/api-key", File: "/keys/openai"}},
					Limits: limiterconfig.Limits{RequestsPerDay: perDay},
					Models: []limiterconfig.ModelPool{{Names: []string{"gpt-4o"}}},
				}},
			}
			first := startSidecar(t, c, certs, pod, cfg)
			used := 0
			testkit.Eventually(t, 60*time.Second, "six requests through the first sidecar", testkit.Stated(func() (bool, string) {
				if used < 6 && first.use() {
					used++
				}
				return used == 6, fmt.Sprintf("%d used", used)
			}))
			testkit.Eventually(t, 60*time.Second, "the manager counted them", testkit.Stated(func() (bool, string) {
				st := getQuota(t, ns).Status
				return st.RequestsToday == 6, fmt.Sprintf("requestsToday %d", st.RequestsToday)
			}))
			first.stop() // a crash: no final report

			second := startSidecar(t, c, certs, pod, cfg)
			after := 0
			testkit.Eventually(t, 60*time.Second, "the restarted sidecar serves again", testkit.Stated(func() (bool, string) {
				if second.use() {
					after++
				}
				return after > 0, fmt.Sprintf("%d used after the restart", after)
			}))
			for range 3 * perDay {
				if second.use() {
					after++
				}
			}
			if used+after > perDay {
				t.Fatalf("%d requests before and %d after the restart: more than the daily cap of %d", used, after, perDay)
			}
		})
	}
}

func TestDemandBecomesWants(t *testing.T) {
	limits := hubapi.Limits{RequestsPerMinute: 600, MaxConcurrency: 8, RequestsPerDay: 1000}
	tests := []struct {
		name   string
		demand *hubapi.Demand
		want   allocator.Demand
	}{
		{"a sidecar without demand wants the whole account", nil,
			allocator.Demand{Want: allocator.Amounts{allocator.RequestsPerMinute: 600, allocator.Concurrency: 8, allocator.RequestsPerDay: 1000}, Weight: 1}},
		{"arrivals, backlog and in flight; interactive requests waiting weigh double",
			&hubapi.Demand{RequestsPerMinute: 30, InputTokensPerMinute: 3000, Queued: 10, Priority: 1},
			allocator.Demand{Want: allocator.Amounts{
				allocator.RequestsPerMinute: 40, allocator.TokensPerMinute: 4000, allocator.InputTokensPerMinute: 4000,
				allocator.Concurrency: 12, allocator.RequestsPerDay: 41, allocator.TokensPerDay: 4000,
			}, Weight: 2, Queued: 10}},
		{"batch waiting weighs one", &hubapi.Demand{Queued: 1, Priority: 9},
			allocator.Demand{Want: allocator.Amounts{allocator.RequestsPerMinute: 1, allocator.Concurrency: 3, allocator.RequestsPerDay: 2}, Weight: 1, Queued: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &hubapi.Account{Limits: limits, InFlight: 2, Demand: tc.demand}
			// A 30 s lease: daily wants cover two lease periods, one minute.
			if diff := cmp.Diff(tc.want, demandOf(a, 30*time.Second)); diff != "" {
				t.Errorf("wants (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLeasesFollowProviderEvidence: the hub hands the allocator what the sidecars
// learned from the provider, so a lower limit in one sidecar's headers, or the 429s
// one sidecar draws, lower the grants of both.
func TestLeasesFollowProviderEvidence(t *testing.T) {
	tests := []struct {
		name     string
		learned  hubapi.Limits
		throttle float64
		// limit is the account's limit as the evidence leaves it; both pods want
		// all of the declared 100 rpm, so they share all of it but the reserve.
		limit float64
	}{
		{"declared", hubapi.Limits{}, 1, 100},
		{"learned 60 rpm", hubapi.Limits{RequestsPerMinute: 60}, 1, 60},
		{"throttled to 70%", hubapi.Limits{}, 0.7, 70},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
			l := &Leases{Enabled: true, TTL: time.Second, Reserve: DefaultLeaseReserve, Now: func() time.Time { return now }}
			held := map[string]hubapi.Grants{}
			report := func(uid string, learned hubapi.Limits, throttle float64) {
				r := &hubapi.Report{
					Pod: hubapi.Pod{UID: uid}, Config: hubapi.Config{Namespace: "ns"},
					Accounts: []hubapi.Account{{
						Provider: "openai", Pool: "gpt-4o", Key: "k", Limits: hubapi.Limits{RequestsPerMinute: 100},
						Learned: learned, Throttle: throttle, Demand: &hubapi.Demand{RequestsPerMinute: 100}, Lease: held[uid],
					}},
				}
				for _, g := range l.Answer(r) {
					held[uid] = g.Grants
				}
			}
			// Past the allocator's learning period, then long enough to converge.
			for range 10 {
				report("a", tc.learned, tc.throttle)
				report("b", hubapi.Limits{}, 1)
				now = now.Add(300 * time.Millisecond)
			}
			got := held["a"][hubapi.LimitRequestsPerMinute] + held["b"][hubapi.LimitRequestsPerMinute]
			if want := tc.limit * (1 - DefaultLeaseReserve); math.Abs(got-want) > 1e-6 {
				t.Errorf("grants sum to %v rpm (%v), want %v", got, held, want)
			}
		})
	}
}
