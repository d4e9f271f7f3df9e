package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/hubclient"
	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/test/bench"
	"github.com/aiquota/aiquota/test/harness"
)

// Scale of BenchmarkStatusScale at its largest: namespaces x (quotas, chains, pods)
// per namespace. It runs at a fifth of that first (1,000 sidecars, 200 quotas).
const (
	scaleNamespaces       = 50
	scaleQuotasPerNS      = 20 // 1,000 ProviderQuotas
	scaleChainsPerNS      = 4  // 200 FallbackChains, two quotas each
	scaleChainPodsPerNS   = 80 // 4,000 sidecars on chains (20 per chain)
	scaleQuotaPodsPerNS   = 20 // 1,000 sidecars on quotas directly (one per quota)
	scaleReportInterval   = 10 * time.Second
	scaleMeasurementSpan  = 90 * time.Second
	scaleSetupConcurrency = 16
)

// BenchmarkStatusScale runs the manager binary against a real API server holding
// 1,000 ProviderQuotas, 200 FallbackChains and 50 CircuitPolicies, with 5,000
// simulated sidecars reporting every 10 s. Each sidecar is the real hub client
// (internal/hubclient: real TLS, a real TokenRequest token bound to a real Pod, so
// the manager runs 5,000 real TokenReviews), fed a synthetic engine snapshot whose
// counters grow like a busy limiter's. It reports the manager's memory and CPU,
// the status flush and write latency p99, the report handling p99, reconcile p99
// and status writes per second, measured over a steady window. Run it with
// `make bench-scale`; it takes several minutes and most of a 2-core machine.
func BenchmarkStatusScale(b *testing.B) {
	for _, namespaces := range []int{scaleNamespaces / 5, scaleNamespaces} {
		b.Run(fmt.Sprintf("sidecars=%d", namespaces*(scaleChainPodsPerNS+scaleQuotaPodsPerNS)), func(b *testing.B) {
			for range b.N {
				runStatusScale(b, namespaces)
			}
		})
	}
}

func runStatusScale(b *testing.B, namespaces int) {
	root := testenv.Root()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	work := b.TempDir()
	bins, err := harness.Build(ctx, root, work, "./cmd/manager")
	if err != nil {
		b.Fatal(err)
	}
	env, kubeconfig := startAPIServerAt(b, work)
	c := env.Client
	cs := kubernetes.NewForConfigOrDie(env.Config)
	start := time.Now()

	// Objects.
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "aiquota-system"}}); err != nil {
		b.Fatal(err)
	}
	var objs []client.Object
	for n := range namespaces {
		ns := fmt.Sprintf("scale-%02d", n)
		objs = append(objs,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keys"}, StringData: map[string]string{"api-key": "sk-scale"}},
			&quotav1alpha1.CircuitPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cbp"}},
		)
		for q := range scaleQuotasPerNS {
			objs = append(objs, &quotav1alpha1.ProviderQuota{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pq-%02d", q)},
				Spec: quotav1alpha1.ProviderQuotaSpec{
					Provider: quotav1alpha1.ProviderOpenAI, Endpoint: "http://127.0.0.1:9",
					Credentials: []quotav1alpha1.SecretKeyRef{{Name: "keys", Key: "api-key"}},
					Limits:      quotav1alpha1.QuotaLimits{RequestsPerMinute: 1000, TokensPerMinute: 1_000_000, MaxConcurrency: 100},
				},
			})
		}
		for f := range scaleChainsPerNS {
			objs = append(objs, &quotav1alpha1.FallbackChain{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("fc-%d", f)},
				Spec: quotav1alpha1.FallbackChainSpec{Entries: []quotav1alpha1.ChainEntry{
					{ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: fmt.Sprintf("pq-%02d", 2*f)}, Model: "gpt-4o", CircuitPolicyRef: &quotav1alpha1.LocalObjectReference{Name: "cbp"}},
					{ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: fmt.Sprintf("pq-%02d", 2*f+1)}, Model: "gpt-4o-mini", CircuitPolicyRef: &quotav1alpha1.LocalObjectReference{Name: "cbp"}},
				}},
			})
		}
	}
	scaleParallel(b, len(objs), func(i int) error { return c.Create(ctx, objs[i]) })
	b.Logf("created %d objects in %s", len(objs), time.Since(start).Round(time.Second))

	// Pods and their tokens.
	type sidecarSpec struct {
		pod    hubapi.Pod
		token  string
		source limiterconfig.Source
	}
	perNS := scaleChainPodsPerNS + scaleQuotaPodsPerNS
	specs := make([]sidecarSpec, namespaces*perNS)
	podsStart := time.Now()
	scaleParallel(b, len(specs), func(i int) error {
		ns, k := fmt.Sprintf("scale-%02d", i/perNS), i%perNS
		src := limiterconfig.Source{Kind: hubapi.KindFallbackChain, Namespace: ns, Name: fmt.Sprintf("fc-%d", k%scaleChainsPerNS), Generation: 1}
		if k >= scaleChainPodsPerNS {
			src = limiterconfig.Source{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: fmt.Sprintf("pq-%02d", k-scaleChainPodsPerNS), Generation: 1}
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("app-%03d", k), Annotations: injectedRecord(b, src.Kind, src.Name)},
			Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
		}
		if err := c.Create(ctx, pod); err != nil {
			return err
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences: []string{naming.TokenAudience}, ExpirationSeconds: ptrTo(int64(3600)),
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		specs[i] = sidecarSpec{pod: hubapi.Pod{Namespace: ns, Name: pod.Name, UID: string(pod.UID)}, token: tr.Status.Token, source: src}
		return nil
	})
	b.Logf("created %d pods and tokens in %s", len(specs), time.Since(podsStart).Round(time.Second))

	// The manager.
	certDir := statusCerts(b)
	controlPort, metricsPort := harness.FreePorts(1)[0], harness.FreePorts(1)[0]
	mgr, err := harness.Start("manager", bins["manager"], append(harness.ControlManagerArgs(kubeconfig, certDir, b.TempDir(), controlPort, metricsPort),
		// Every sidecar here reports from 127.0.0.1: one source address for the fleet.
		"--control-token-reviews-per-source", "1000000", "--control-token-review-burst-per-source", "1000000",
	), []string{"POD_NAMESPACE=aiquota-system"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = mgr.Stop(30 * time.Second) }()
	if _, err := mgr.WaitFor(regexp.MustCompile(`control channel listening`), 2*time.Minute); err != nil {
		b.Fatal(err)
	}
	controlURL := fmt.Sprintf("https://127.0.0.1:%d%s", controlPort, hubapi.Path)

	// The fleet: each a real hub client, started at a random point of its interval.
	var failures atomic.Int64
	logger := slog.New(&countingHandler{n: &failures})
	clientsStart := time.Now()
	for i, s := range specs {
		tokenDir := filepath.Join(work, "tokens", strconv.Itoa(i))
		if err := os.MkdirAll(tokenDir, 0o700); err != nil {
			b.Fatal(err)
		}
		// The config names the token file, so each pod has a config of its own.
		cfg := scaleConfig(s.source, controlURL, filepath.Join(certDir, "ca.crt"))
		cfg.Control.TokenFile = filepath.Join(tokenDir, "token")
		doc, err := limiterconfig.Marshal(cfg)
		if err != nil {
			b.Fatal(err)
		}
		sum := sha256.Sum256(doc)
		hash := hex.EncodeToString(sum[:8])
		if err := os.WriteFile(cfg.Control.TokenFile, []byte(s.token), 0o600); err != nil {
			b.Fatal(err)
		}
		snap := newSyntheticEngine(cfg, int64(i))
		inForce := func() (*limiterconfig.Config, string) { return cfg, hash }
		// A real engine receives the account leases (the manager leases by default),
		// so reports carry the leases applied, as a real sidecar's do.
		leased := limiter.New(limiter.Options{})
		leased.Apply(cfg)
		r := hubclient.New(hubclient.Options{Config: inForce, Snapshot: snap.snapshot, Leases: leased, Pod: s.pod, Logger: logger})
		go func() {
			select {
			case <-time.After(rand.N(scaleReportInterval)):
			case <-ctx.Done():
				return
			}
			r.Run(ctx)
		}()
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	var fullAfter time.Duration
	statusEventually(b, "every sidecar counted as active", 10*time.Minute, func() error {
		mf, err := scrapeFamilies(metricsURL)
		if err != nil {
			return err
		}
		if n := gaugeValue(mf, "aiquota_manager_control_active_sidecars"); n != float64(len(specs)) {
			return fmt.Errorf("%v active sidecars", n)
		}
		fullAfter = time.Since(clientsStart)
		return nil
	})
	b.Logf("all %d sidecars active %s after the first hub client started", len(specs), fullAfter.Round(time.Second))

	// Let the first writes of every resource (and their reconciles) pass, then
	// measure a steady window.
	time.Sleep(30 * time.Second)
	before, p0 := sampleManager(b, metricsURL, mgr.Pid())
	var peakRSS int64
	deadline := time.Now().Add(scaleMeasurementSpan)
	for time.Now().Before(deadline) {
		if p, err := bench.ReadProc(mgr.Pid()); err == nil {
			peakRSS = max(peakRSS, p.RSS)
		}
		time.Sleep(5 * time.Second)
	}
	after, p1 := sampleManager(b, metricsURL, mgr.Pid())
	span := p1.At.Sub(p0.At).Seconds()
	load, _ := bench.LoadAvg()

	writes := counterSum(after, "aiquota_manager_status_writes_total", "result", "success") - counterSum(before, "aiquota_manager_status_writes_total", "result", "success")
	writeErrors := counterSum(after, "aiquota_manager_status_writes_total", "result", "error") - counterSum(before, "aiquota_manager_status_writes_total", "result", "error")
	accepted := counterSum(after, "aiquota_manager_control_reports_accepted_total", "", "") - counterSum(before, "aiquota_manager_control_reports_accepted_total", "", "")
	refused := counterSum(after, "aiquota_manager_control_reports_refused_total", "", "") - counterSum(before, "aiquota_manager_control_reports_refused_total", "", "")
	reconciles := counterSum(after, "controller_runtime_reconcile_total", "", "") - counterSum(before, "controller_runtime_reconcile_total", "", "")
	results := []struct {
		name, unit string
		v          float64
	}{
		{"manager RSS at end", "MB", float64(p1.RSS) / 1e6},
		{"manager RSS peak in window", "MB", float64(max(peakRSS, p1.RSS)) / 1e6},
		{"manager RSS high-water mark", "MB", float64(p1.HWM) / 1e6},
		{"manager CPU", "cores", (p1.CPU - p0.CPU).Seconds() / span},
		{"reports accepted", "/s", accepted / span},
		{"reports refused", "/s", refused / span},
		{"status writes", "/s", writes / span},
		{"status write errors", "/s", writeErrors / span},
		{"status flush p50", "ms", 1000 * histogramQuantile(before, after, "aiquota_manager_status_flush_duration_seconds", "", "", 0.5)},
		{"status flush p99", "ms", 1000 * histogramQuantile(before, after, "aiquota_manager_status_flush_duration_seconds", "", "", 0.99)},
		{"status patch p50", "ms", 1000 * histogramQuantile(before, after, "aiquota_manager_status_write_duration_seconds", "", "", 0.5)},
		{"status patch p99", "ms", 1000 * histogramQuantile(before, after, "aiquota_manager_status_write_duration_seconds", "", "", 0.99)},
		{"report handling p50", "ms", 1000 * histogramQuantile(before, after, "aiquota_manager_control_report_duration_seconds", "", "", 0.5)},
		{"report handling p99", "ms", 1000 * histogramQuantile(before, after, "aiquota_manager_control_report_duration_seconds", "", "", 0.99)},
		{"reconciles", "/s", reconciles / span},
		{"reconcile p99 (providerquota)", "ms", 1000 * histogramQuantile(before, after, "controller_runtime_reconcile_time_seconds", "controller", "providerquota", 0.99)},
		{"reconcile p99 (fallbackchain)", "ms", 1000 * histogramQuantile(before, after, "controller_runtime_reconcile_time_seconds", "controller", "fallbackchain", 0.99)},
		{"token reviews (whole run)", "", counterSum(after, "aiquota_manager_control_token_reviews_total", "", "")},
		{"hub client failures (whole run)", "", float64(failures.Load())},
		{"time to all sidecars active", "s", fullAfter.Seconds()},
		{"machine load average (1 min, 2 cores)", "", load[0]},
	}
	for _, r := range results {
		b.Logf("%-32s %10.2f %s", r.name, r.v, r.unit)
	}
	b.ReportMetric(float64(p1.RSS)/1e6, "rss-MB")
	b.ReportMetric(writes/span, "status-writes/s")
	b.ReportMetric(1000*histogramQuantile(before, after, "aiquota_manager_status_flush_duration_seconds", "", "", 0.99), "flush-p99-ms")
	b.ReportMetric(accepted/span, "reports/s")

	// The status the fleet produced: a quota used directly by one pod and by the
	// 20 pods of its chain.
	var pq quotav1alpha1.ProviderQuota
	getStatus(b, c, "scale-00", "pq-00", &pq)
	if pq.Status.ActiveSidecars != 21 || pq.Status.LastUpdated == nil || time.Since(pq.Status.LastUpdated.Time) > time.Minute || pq.Status.TokensToday == 0 {
		b.Errorf("scale-00/pq-00 status: %+v", pq.Status)
	}
}

// scaleConfig is a sidecar's config for a source: its chain's two quotas, or the
// one quota.
func scaleConfig(src limiterconfig.Source, controlURL, caFile string) *limiterconfig.Config {
	provider := func(name string) limiterconfig.Provider {
		return limiterconfig.Provider{
			Name: name, Type: limiterconfig.ProviderOpenAI, Endpoint: "http://127.0.0.1:9",
			Keys:   []limiterconfig.Key{{ID: "keys/api-key", File: "/keys/api-key"}},
			Limits: limiterconfig.Limits{RequestsPerMinute: 1000, TokensPerMinute: 1_000_000, MaxConcurrency: 100},
		}
	}
	policy := limiterconfig.DefaultPolicy()
	policy.Name = "cbp"
	cfg := &limiterconfig.Config{
		SchemaVersion: limiterconfig.SchemaVersion, Source: src,
		Control: &limiterconfig.Control{URL: controlURL, TokenFile: "/unused", CAFile: caFile, ReportInterval: limiterconfig.Duration(scaleReportInterval)},
	}
	if src.Kind == hubapi.KindFallbackChain {
		f, _ := strconv.Atoi(strings.TrimPrefix(src.Name, "fc-")) // names are made above
		a, b := fmt.Sprintf("pq-%02d", 2*f), fmt.Sprintf("pq-%02d", 2*f+1)
		cfg.Providers = []limiterconfig.Provider{provider(a), provider(b)}
		cfg.Chain = &limiterconfig.Chain{Entries: []limiterconfig.ChainEntry{{Provider: a, Model: "gpt-4o", Policy: "cbp"}, {Provider: b, Model: "gpt-4o-mini", Policy: "cbp"}}}
		cfg.Policies = []limiterconfig.Policy{policy}
	} else {
		cfg.Providers = []limiterconfig.Provider{provider(src.Name)}
	}
	return cfg
}

// syntheticEngine produces snapshots of a busy limiter: counters grow on every
// snapshot (one per report), breakers now and then open and close.
type syntheticEngine struct {
	mu       sync.Mutex
	rng      *rand.Rand
	pools    []limiter.AccountSnapshot
	breakers []limiter.BreakerSnapshot
}

func newSyntheticEngine(cfg *limiterconfig.Config, seed int64) *syntheticEngine {
	e := &syntheticEngine{rng: rand.New(rand.NewPCG(uint64(seed), 7))}
	models := []string{"gpt-4o", "gpt-4o-mini"}
	for i, p := range cfg.Providers {
		e.pools = append(e.pools, limiter.AccountSnapshot{
			Provider: p.Name, Key: "keys/api-key", Pool: models[i%2], MaxConcurrency: 100,
			Limits: []limiter.LimitSnapshot{
				{Kind: "requestsPerMinute", Configured: 1000, RatePerMinute: 980, Burst: 980, Level: 500},
				{Kind: "tokensPerMinute", Configured: 1_000_000, RatePerMinute: 980_000, Burst: 980_000, Level: 500_000},
			},
			Throttle: 1,
		})
		if cfg.Chain != nil {
			e.breakers = append(e.breakers, limiter.BreakerSnapshot{Provider: p.Name, Model: models[i%2], State: limiter.BreakerClosed})
		}
	}
	return e
}

func (e *syntheticEngine) snapshot() limiter.Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now().UTC()
	s := limiter.Snapshot{At: now}
	for i := range e.pools {
		p := &e.pools[i]
		n := int64(5 + e.rng.IntN(10))
		if i > 0 {
			n /= 5 // the chain's second entry sees little traffic
		}
		p.Counters.Attempts += n
		p.Counters.InputTokens += n * 120
		p.Counters.OutputTokens += n * 30
		p.RequestsToday += n
		p.TokensToday += n * 150
		if e.rng.IntN(20) == 0 {
			p.Counters.Upstream429++
		}
		p.InFlight = int64(e.rng.IntN(4))
		s.Accounts = append(s.Accounts, *p)
		s.Queues = append(s.Queues, limiter.QueueSnapshot{Provider: p.Provider, Pool: p.Pool, Admitted: p.Counters.Attempts})
	}
	for i := range e.breakers {
		b := &e.breakers[i]
		if e.rng.IntN(100) == 0 { // about one transition per sidecar per 15 minutes
			from := b.State
			b.State = limiter.BreakerOpen
			if from == limiter.BreakerOpen {
				b.State = limiter.BreakerClosed
			} else {
				b.Opens++
			}
			b.Transitions = append(b.Transitions, limiter.Transition{At: now, From: from, To: b.State})
			if len(b.Transitions) > 32 {
				b.Transitions = b.Transitions[1:]
			}
		}
		s.Breakers = append(s.Breakers, *b)
	}
	return s
}

// countingHandler counts hub client warnings (failed reports) and drops records.
type countingHandler struct{ n *atomic.Int64 }

func (h *countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *countingHandler) Handle(context.Context, slog.Record) error {
	h.n.Add(1)
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

// scaleParallel runs f(0..n-1) on a few workers and fails on the first error.
func scaleParallel(b *testing.B, n int, f func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range scaleSetupConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				if err := f(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		b.Fatal(err)
	}
}

// sampleManager reads the manager's metrics at metricsURL and its process pid's
// CPU time and memory.
func sampleManager(b *testing.B, metricsURL string, pid int) (map[string]*dto.MetricFamily, bench.ProcSample) {
	b.Helper()
	mf, err := scrapeFamilies(metricsURL)
	if err != nil {
		b.Fatal(err)
	}
	p, err := bench.ReadProc(pid)
	if err != nil {
		b.Fatal(err)
	}
	return mf, p
}

func scrapeFamilies(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(body))
}

func gaugeValue(mf map[string]*dto.MetricFamily, name string) float64 {
	f := mf[name]
	if f == nil || len(f.Metric) == 0 {
		return math.NaN()
	}
	return f.Metric[0].GetGauge().GetValue()
}

// counterSum adds a counter's series, those with label=value when label is set.
func counterSum(mf map[string]*dto.MetricFamily, name, label, value string) float64 {
	var sum float64
	for _, m := range metricsWith(mf, name, label, value) {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

func metricsWith(mf map[string]*dto.MetricFamily, name, label, value string) []*dto.Metric {
	f := mf[name]
	if f == nil {
		return nil
	}
	var out []*dto.Metric
	for _, m := range f.Metric {
		if label == "" {
			out = append(out, m)
			continue
		}
		for _, lp := range m.Label {
			if lp.GetName() == label && lp.GetValue() == value {
				out = append(out, m)
			}
		}
	}
	return out
}

// histogramQuantile is the q-quantile of a histogram's observations between two
// scrapes, as the upper bound of the bucket it falls in (Prometheus's estimate
// without interpolation; conservative).
func histogramQuantile(before, after map[string]*dto.MetricFamily, name, label, value string, q float64) float64 {
	counts := map[float64]float64{}
	var total float64
	for sign, mf := range map[float64]map[string]*dto.MetricFamily{1: after, -1: before} {
		for _, m := range metricsWith(mf, name, label, value) {
			h := m.GetHistogram()
			for _, bk := range h.Bucket {
				counts[bk.GetUpperBound()] += sign * float64(bk.GetCumulativeCount())
			}
			total += sign * float64(h.GetSampleCount())
		}
	}
	if total <= 0 {
		return math.NaN()
	}
	bounds := make([]float64, 0, len(counts))
	for ub := range counts {
		bounds = append(bounds, ub)
	}
	sort.Float64s(bounds)
	for _, ub := range bounds {
		if counts[ub] >= q*total {
			return ub
		}
	}
	return math.Inf(1)
}
