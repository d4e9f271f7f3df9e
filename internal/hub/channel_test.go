package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/testkit"
)

// TestReportUpdatesStatus: a sidecar's report, authenticated with its pod-bound
// token, reaches the ProviderQuota, FallbackChain and CircuitPolicy status and the
// metrics; the token is reviewed once and then served from the cache.
func TestReportUpdatesStatus(t *testing.T) {
	certs := newTestCerts(t)
	ch := startChannel(t, certs, nil)
	ns := newNamespace(t)
	pod := newPodWith(t, ns, "app", injectedFor(t, hubapi.KindFallbackChain, "chat"))
	token := podToken(t, pod)
	createQuota(t, ns)
	createChain(t, ns, "chat",
		quotav1alpha1.ChainEntry{ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: "openai"}, Model: "gpt-4o"},
		quotav1alpha1.ChainEntry{ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: "openai"}, Model: "gpt-4o-mini"})
	createPolicy(t, ns, "standard")

	src := hubapi.Config{Kind: hubapi.KindFallbackChain, Namespace: ns, Name: "chat", Hash: "0123456789abcdef"}
	opened := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	bootAt := time.Now().UTC()
	for seq := uint64(1); seq <= 3; seq++ {
		r := podReport(pod, src, seq, "boot-1", bootAt, 20*int64(seq), 2000*int64(seq))
		r.Chain = []hubapi.ChainEntry{{Provider: "openai", Model: "gpt-4o", Pool: "gpt-4o"}, {Provider: "openai", Model: "gpt-4o-mini", Pool: "gpt-4o-mini"}}
		r.Failovers = []hubapi.FailoverCount{{From: 0, To: 1, Reason: "serverError", Count: int64(seq)}}
		r.LastFailover = &hubapi.Failover{At: opened.Add(time.Duration(seq) * time.Second), From: 0, To: 1, Reason: "serverError"}
		r.Accounts[0].InFlight = 5
		r.Accounts[0].Limits.MaxConcurrency = 10
		r.Breakers = []hubapi.Breaker{{
			Provider: "openai", Model: "gpt-4o", Policy: "standard", State: hubapi.BreakerOpen, Since: &opened, Opens: 1,
			Transitions: []hubapi.Transition{{At: opened, From: hubapi.BreakerClosed, To: hubapi.BreakerOpen}},
			LastFailure: &hubapi.FailureSample{At: opened, Kind: "serverError", Status: 503},
		}}
		if code, eb := ch.sendReport(t, token, r); code != http.StatusOK {
			t.Fatalf("report %d: %d %+v", seq, code, eb)
		}
	}

	testkit.Eventually(t, 60*time.Second, "the ProviderQuota status", testkit.Stated(func() (bool, string) {
		pq := getQuota(t, ns)
		st := pq.Status
		m := modelNamed(ownedQuota(&st), "gpt-4o")
		ok := st.ActiveSidecars == 1 && st.TokensToday == 6000 && st.RequestsToday == 60 && st.Day == utcDay(time.Now()) &&
			st.LastUpdated != nil && m != nil &&
			cmp.Equal(m.RequestsPerMinute, &quotav1alpha1.Usage{Used: 60, Limit: 100, Percent: 60}) &&
			cmp.Equal(m.Concurrency, &quotav1alpha1.Usage{Used: 5, Limit: 10, Percent: 50}) &&
			st.Utilization != nil && st.Utilization.RequestsPercent == 60 && st.Utilization.TokensPercent == 60
		return ok, fmt.Sprintf("%+v", st)
	}))
	testkit.Eventually(t, 60*time.Second, "the FallbackChain status", testkit.Stated(func() (bool, string) {
		var fc quotav1alpha1.FallbackChain
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "chat"}, &fc); err != nil {
			t.Fatal(err)
		}
		st := fc.Status
		lf := st.LastFailover
		return st.ActiveEntry != nil && *st.ActiveEntry == 0 && st.ActiveModel == "gpt-4o" && st.LastUpdated != nil &&
			st.Failovers == quotav1alpha1.FailoverCounts{Total: 3, LastHour: 3} &&
			lf != nil && lf.From == "openai/gpt-4o" && lf.To == "openai/gpt-4o-mini" && lf.Reason == "serverError", fmt.Sprintf("%+v", st)
	}))
	// The breaker's opening and the failovers are Events on their resources.
	testkit.Eventually(t, 60*time.Second, "BreakerOpened and FailedOver events", testkit.Stated(func() (bool, string) {
		seen := eventsIn(t, ns)
		return slices.Contains(seen, "CircuitPolicy/standard:BreakerOpened") && slices.Contains(seen, "FallbackChain/chat:FailedOver"), fmt.Sprint(seen)
	}))
	testkit.Eventually(t, 60*time.Second, "the CircuitPolicy status", testkit.Stated(func() (bool, string) {
		var cp quotav1alpha1.CircuitPolicy
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "standard"}, &cp); err != nil {
			t.Fatal(err)
		}
		st := cp.Status
		want := []quotav1alpha1.BreakerStatus{{
			ProviderQuota: "openai", Model: "gpt-4o", State: quotav1alpha1.BreakerOpen,
			OpensLastHour: 1, LastFailure: "serverError (HTTP 503)",
		}}
		if len(st.Breakers) != 1 || st.Breakers[0].Since == nil {
			return false, fmt.Sprintf("%+v", st)
		}
		// since is mapped onto the manager's clock by the report's transit time.
		since := st.Breakers[0].Since.Time
		got := st.Breakers[0]
		got.Since = nil
		return st.OpenBreakers == 1 && cmp.Equal(want[0], got) && !since.Before(opened) && since.Sub(opened) < 5*time.Second,
			fmt.Sprintf("%+v", st)
	}))

	// Metrics mirror the status.
	testkit.Eventually(t, 60*time.Second, "metrics", testkit.Stated(func() (bool, string) {
		util := ch.metric(t, "aiquota_manager_quota_utilisation_ratio", map[string]string{"namespace": ns, "quota": "openai", "model": "gpt-4o", "limit": "requestsPerMinute"})
		breaker := ch.metric(t, "aiquota_manager_breaker_state", map[string]string{"namespace": ns, "quota": "openai", "model": "gpt-4o"})
		active := ch.metric(t, "aiquota_manager_quota_active_sidecars", map[string]string{"namespace": ns, "quota": "openai"})
		writes := ch.metric(t, "aiquota_manager_status_writes_total", map[string]string{"kind": "ProviderQuota", "result": "success"})
		requests := ch.metric(t, "aiquota_manager_quota_requests_today", map[string]string{"namespace": ns, "quota": "openai"})
		tokens := ch.metric(t, "aiquota_manager_quota_tokens_today", map[string]string{"namespace": ns, "quota": "openai"})
		failovers := ch.metric(t, "aiquota_manager_chain_failovers_total", map[string]string{"namespace": ns, "chain": "chat"})
		return util == 0.6 && breaker == 1 && active == 1 && writes >= 1 && requests == 60 && tokens == 6000 && failovers == 3,
			fmt.Sprintf("util %v breaker %v active %v writes %v requests %v tokens %v failovers %v", util, breaker, active, writes, requests, tokens, failovers)
	}))
	if err := testkit.LintMetrics(ch.registry); err != nil {
		t.Error(err)
	}
	if n := ch.metric(t, "aiquota_manager_control_reports_accepted_total", nil); n != 3 {
		t.Errorf("accepted reports %v, want 3", n)
	}
	// Three reports, one TokenReview: the rest came from the cache.
	if n := ch.metric(t, "aiquota_manager_control_token_reviews_total", map[string]string{"result": "authenticated"}); n != 1 {
		t.Errorf("TokenReviews %v, want 1", n)
	}
	if strings.Contains(ch.logs.String(), token) {
		t.Error("the manager logged a token")
	}
}

// TestRefusals: every refused caller gets the right status and a clear JSON error,
// and nothing of what it sent reaches the state or the status.
func TestRefusals(t *testing.T) {
	certs := newTestCerts(t)
	ch := startChannel(t, certs, nil)
	ns, other := newNamespace(t), newNamespace(t)
	pod, pod2 := newPod(t, ns, "app"), newPod(t, ns, "app2")
	createQuota(t, ns)
	createQuota(t, other)
	src := hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: "openai"}
	good := func() *hubapi.Report { return podReport(pod, src, 1, "boot", time.Now(), 10, 100) }
	encode := func(r *hubapi.Report) []byte {
		b, err := hubapi.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	token := podToken(t, pod)
	otherAudience := tokenFor(t, pod, "https://kubernetes.default.svc", pod)
	pod2Token := podToken(t, pod2)
	unbound := tokenFor(t, pod, "aiquota.dev/control", nil)
	otherNS := good()
	otherNS.Config.Namespace = other
	invalid := good()
	invalid.SchemaVersion = "aiquota.dev/report/v0"
	huge := bytes.Repeat([]byte(" "), hubapi.MaxReportBytes+10)

	cases := []struct {
		name        string
		token       string
		body        []byte
		contentType string
		status      int
		code        string
		message     string
	}{
		{"no token", "", encode(good()), hubapi.ContentType, 401, hubapi.CodeUnauthenticated, "no bearer token"},
		{"garbage token", "not-a-token", encode(good()), hubapi.ContentType, 401, hubapi.CodeUnauthenticated, "not valid for audience aiquota.dev/control"},
		{"forged token", token[:len(token)-6] + "AAAAAA", encode(good()), hubapi.ContentType, 401, hubapi.CodeUnauthenticated, "not valid"},
		{"other audience", otherAudience, encode(good()), hubapi.ContentType, 401, hubapi.CodeUnauthenticated, "not valid for audience"},
		{"not bound to a pod", unbound, encode(good()), hubapi.ContentType, 403, hubapi.CodeForbidden, "not a service-account token bound to a pod"},
		{"another pod's token", pod2Token, encode(good()), hubapi.ContentType, 403, hubapi.CodePodMismatch, "the token is bound to pod " + ns + "/app2"},
		{"another namespace", token, encode(otherNS), hubapi.ContentType, 403, hubapi.CodeNamespace, "may only report about resources in its own namespace " + ns},
		{"malformed", token, []byte(`{"schemaVersion":`), hubapi.ContentType, 400, hubapi.CodeMalformed, "decode report"},
		{"invalid", token, mustJSON(t, invalid), hubapi.ContentType, 400, hubapi.CodeMalformed, `schemaVersion: is "aiquota.dev/report/v0"`},
		{"oversized", token, huge, hubapi.ContentType, 413, hubapi.CodeTooLarge, "bytes"},
		{"not json", token, encode(good()), "text/plain", 415, hubapi.CodeUnsupportedMedia, "reports are application/json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, eb := ch.post(t, c.token, c.body, c.contentType)
			if status != c.status || eb.Error.Code != c.code || !strings.Contains(eb.Error.Message, c.message) {
				t.Errorf("got %d %+v; want %d %s with a message containing %q", status, eb, c.status, c.code, c.message)
			}
		})
	}
	resp, err := ch.client.Get(ch.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}

	// Nothing changed: no sidecar is known, and a flush writes nothing.
	if n := ch.Aggregator.ActiveSidecars(); n != 0 {
		t.Errorf("%d sidecars known after refused reports", n)
	}
	ch.Writer.Flush(context.Background())
	for _, n := range []string{ns, other} {
		if st := getQuota(t, n).Status; st.LastUpdated != nil || st.ActiveSidecars != 0 || st.TokensToday != 0 {
			t.Errorf("status of %s/openai changed: %+v", n, st)
		}
	}
	if n := ch.metric(t, "aiquota_manager_control_reports_refused_total", map[string]string{"reason": hubapi.CodeUnauthenticated}); n != 4 {
		t.Errorf("refused as unauthenticated: %v, want 4", n)
	}
	// The garbage and the other audience's token were refused unread; the forged
	// and the unbound one each cost a TokenReview.
	reviews := func(result string) float64 {
		return ch.metric(t, "aiquota_manager_control_token_reviews_total", map[string]string{"result": result})
	}
	if pre, refused := reviews("prefiltered"), reviews("refused"); pre != 2 || refused != 2 {
		t.Errorf("token checks: %v prefiltered, %v refused by a TokenReview; want 2, 2", pre, refused)
	}
	// The same report with the right token is accepted (the refusals were about
	// the caller, not the report), and only then does the status change.
	if code, eb := ch.sendReport(t, token, good()); code != 200 {
		t.Fatalf("good report: %d %+v", code, eb)
	}
	eventuallyQuota(t, ns, "the good report in status", func(st quotav1alpha1.ProviderQuotaStatus) bool {
		return st.ActiveSidecars == 1 && st.TokensToday == 100
	})
	for _, tok := range []string{token, otherAudience, pod2Token, unbound} {
		if strings.Contains(ch.logs.String(), tok) {
			t.Error("the manager logged a token")
		}
	}
}

// TestStatusWriteRateLimit: a sidecar reporting changes five times a second gets
// its resource written at most once per status-write interval.
func TestStatusWriteRateLimit(t *testing.T) {
	const interval = 2 * time.Second
	certs := newTestCerts(t)
	ch := startChannel(t, certs, func(o *Options) { o.StatusWriteInterval = interval })
	ns := newNamespace(t)
	pod := newPod(t, ns, "app")
	token := podToken(t, pod)
	createQuota(t, ns)

	watcher, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	wc, err := watcher.Watch(context.Background(), &quotav1alpha1.ProviderQuotaList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Stop()
	var stamps []time.Time
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for ev := range wc.ResultChan() {
			if pq, ok := ev.Object.(*quotav1alpha1.ProviderQuota); ok && ev.Type == watch.Modified && pq.Status.LastUpdated != nil {
				stamps = append(stamps, pq.Status.LastUpdated.Time)
			}
		}
	}()

	src := hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: "openai"}
	bootAt := time.Now()
	for seq := uint64(1); seq <= 50; seq++ {
		if code, eb := ch.sendReport(t, token, podReport(pod, src, seq, "boot", bootAt, int64(seq), 100*int64(seq))); code != 200 {
			t.Fatalf("report %d: %d %+v", seq, code, eb)
		}
		time.Sleep(200 * time.Millisecond)
	}
	eventuallyQuota(t, ns, "the last report in status", func(st quotav1alpha1.ProviderQuotaStatus) bool {
		return st.TokensToday == 5000
	})
	wc.Stop()
	<-collected
	if len(stamps) < 3 {
		t.Fatalf("%d status writes over 10 s of changing reports; want several", len(stamps))
	}
	for i := 1; i < len(stamps); i++ {
		// lastUpdated has second precision; whole-second gaps of at least the
		// interval hold for writes at least the interval apart.
		if gap := stamps[i].Sub(stamps[i-1]); gap < interval {
			t.Errorf("writes %d and %d only %s apart; the interval is %s (all: %v)", i-1, i, gap, interval, stamps)
		}
	}
}

// TestSidecarsLeave: a final report, silence beyond the expiry, and a deleted pod
// each remove a sidecar from activeSidecars.
func TestSidecarsLeave(t *testing.T) {
	certs := newTestCerts(t)
	// Expiry far off: a silent sidecar whose pod exists stays; one whose pod is
	// deleted leaves through the pod check.
	ch := startChannel(t, certs, func(o *Options) { o.ExpiryIntervals = 1000 })
	ns := newNamespace(t)
	createQuota(t, ns)
	src := hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: "openai"}
	var pods []*corev1.Pod
	var tokens []string
	for i := range 3 {
		p := newPod(t, ns, fmt.Sprintf("app-%d", i))
		pods = append(pods, p)
		tokens = append(tokens, podToken(t, p))
		if code, eb := ch.sendReport(t, tokens[i], podReport(p, src, 1, "boot", time.Now(), 1, 1)); code != 200 {
			t.Fatalf("report: %d %+v", code, eb)
		}
	}
	active := func(n int32) func() (bool, string) {
		return func() (bool, string) {
			st := getQuota(t, ns).Status
			return st.ActiveSidecars == n, fmt.Sprintf("activeSidecars %d", st.ActiveSidecars)
		}
	}
	testkit.Eventually(t, 60*time.Second, "three active sidecars", testkit.Stated(active(3)))

	final := podReport(pods[0], src, 2, "boot", time.Now(), 2, 2)
	final.Final = true
	if code, eb := ch.sendReport(t, tokens[0], final); code != 200 {
		t.Fatalf("final report: %d %+v", code, eb)
	}
	testkit.Eventually(t, 60*time.Second, "two active sidecars after a final report", testkit.Stated(active(2)))

	if err := env.Client.Delete(context.Background(), pods[1]); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 60*time.Second, "one active sidecar after its pod was deleted", testkit.Stated(active(1)))

	// The last one expires when silent beyond its expiry.
	ch2 := startChannel(t, certs, func(o *Options) { o.ExpiryIntervals = 3 })
	ns2 := newNamespace(t)
	createQuota(t, ns2)
	p := newPod(t, ns2, "app")
	tok := podToken(t, p)
	if code, eb := ch2.sendReport(t, tok, podReport(p, hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: ns2, Name: "openai"}, 1, "boot", time.Now(), 1, 1)); code != 200 {
		t.Fatalf("report: %d %+v", code, eb)
	}
	testkit.Eventually(t, 60*time.Second, "the sidecar counted", testkit.Stated(func() (bool, string) {
		st := getQuota(t, ns2).Status
		return st.ActiveSidecars == 1, fmt.Sprintf("%+v", st)
	}))
	testkit.Eventually(t, 60*time.Second, "the silent sidecar expired", testkit.Stated(func() (bool, string) {
		st := getQuota(t, ns2).Status
		return st.ActiveSidecars == 0 && st.LastUpdated != nil, fmt.Sprintf("%+v", st)
	}))
	if n := ch.Aggregator.ActiveSidecars(); n != 1 {
		t.Errorf("the first channel knows %d sidecars, want the one still silent but present", n)
	}
}

// TestTokensTodaySurviveRestart: a new aggregator (a restarted manager, or a new
// leader) continues the day's ledger from the status the previous one wrote.
func TestTokensTodaySurviveRestart(t *testing.T) {
	certs := newTestCerts(t)
	ns := newNamespace(t)
	createQuota(t, ns)
	pod := newPod(t, ns, "app")
	token := podToken(t, pod)
	src := hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: "openai"}
	bootAt := time.Now()

	first := startChannel(t, certs, nil)
	if code, eb := first.sendReport(t, token, podReport(pod, src, 1, "boot", bootAt, 10, 1000)); code != 200 {
		t.Fatalf("report: %d %+v", code, eb)
	}
	eventuallyQuota(t, ns, "1000 tokens today", func(st quotav1alpha1.ProviderQuotaStatus) bool {
		return st.TokensToday == 1000
	})
	first.stop()

	second := startChannel(t, certs, nil)
	// The same sidecar goes on: what it had already reported is not counted again,
	// what it adds is.
	if code, eb := second.sendReport(t, token, podReport(pod, src, 2, "boot", bootAt, 10, 1000)); code != 200 {
		t.Fatalf("report: %d %+v", code, eb)
	}
	if code, eb := second.sendReport(t, token, podReport(pod, src, 3, "boot", bootAt, 12, 1250)); code != 200 {
		t.Fatalf("report: %d %+v", code, eb)
	}
	eventuallyQuota(t, ns, "1250 tokens today after the restart", func(st quotav1alpha1.ProviderQuotaStatus) bool {
		return st.TokensToday == 1250 && st.RequestsToday == 12
	})
}

// TestDailyRoll: at UTC midnight the day's ledger starts again at zero, with and
// without new reports, and the status says which day it counts.
func TestDailyRoll(t *testing.T) {
	ns := newNamespace(t)
	createQuota(t, ns)
	pod := newPod(t, ns, "app")
	clk := newFakeClock(time.Date(2031, 3, 4, 23, 59, 40, 0, time.UTC))
	agg := NewAggregator(clk.now, 3)
	w := &StatusWriter{Client: env.Client, Aggregator: agg, Interval: time.Second, Workers: 2, Now: clk.now, Log: (&logBuffer{}).logger()}
	src := hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: "openai"}
	ctx := context.Background()
	bootAt := clk.t
	ingest := func(seq uint64, tokens int64) {
		r := podReport(pod, src, seq, "boot", bootAt, int64(seq), tokens)
		r.SentAt = clk.t
		mustIngest(t, agg, r)
	}
	status := func() quotav1alpha1.ProviderQuotaStatus { return getQuota(t, ns).Status }
	flushed := func(want func(quotav1alpha1.ProviderQuotaStatus) bool) {
		t.Helper()
		// The writer reads through the client the test writes with, so one flush
		// sees the previous one's result; a few let the day's seed and write settle.
		var st quotav1alpha1.ProviderQuotaStatus
		for range 3 {
			clk.advance(time.Second)
			if res := w.Flush(ctx); res.Failed > 0 {
				t.Fatalf("flush failed: %+v", res)
			}
			if st = status(); want(st) {
				return
			}
		}
		t.Fatalf("status after flushes: %+v", st)
	}

	ingest(1, 700)
	flushed(func(st quotav1alpha1.ProviderQuotaStatus) bool {
		return st.Day == "2031-03-04" && st.TokensToday == 700 && st.RequestsToday == 1
	})
	// Past midnight, with no report: the ledger rolls to zero for the new day.
	clk.t = time.Date(2031, 3, 5, 0, 0, 5, 0, time.UTC)
	flushed(func(st quotav1alpha1.ProviderQuotaStatus) bool {
		return st.Day == "2031-03-05" && st.TokensToday == 0 && st.RequestsToday == 0
	})
	// Usage after midnight counts for the new day only.
	ingest(2, 1000)
	flushed(func(st quotav1alpha1.ProviderQuotaStatus) bool {
		return st.Day == "2031-03-05" && st.TokensToday == 300 && st.RequestsToday == 1
	})
	// A new aggregator the same day continues from the status.
	agg2 := NewAggregator(clk.now, 3)
	w.Aggregator = agg2
	w.lastWrite = nil
	r := podReport(pod, src, 3, "boot", bootAt, 3, 1100)
	r.SentAt = clk.t
	mustIngest(t, agg2, r)
	clk.advance(10 * time.Second)
	r = podReport(pod, src, 4, "boot", bootAt, 4, 1150)
	r.SentAt = clk.t
	mustIngest(t, agg2, r)
	flushed(func(st quotav1alpha1.ProviderQuotaStatus) bool {
		return st.Day == "2031-03-05" && st.TokensToday == 350 && st.RequestsToday == 2
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
