package sidecar

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/aiquota/aiquota/internal/hub"
	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
)

// promptMarker is prompt text that must never reach a log line.
const promptMarker = "tell-no-one-7d1e"

// observeEnv lists gpt-4o as a pool with request, token and concurrency limits, so
// the engine exports every kind of account metric; the simulator takes 50 ms to a
// stream's first token unless edit says otherwise.
func observeEnv(t *testing.T, edit func(*simulator.Account, *limiterconfig.Limits), opts ...func(*Options)) *env {
	acct := simAccount(simOpenAIKey, "openai", simulator.Limits{RequestsPerMinute: 10000, TokensPerMinute: 1_000_000})
	acct.Latency.TimeToFirstToken = simulator.Duration(50 * time.Millisecond)
	acct.Latency.OutputTokens = 8
	limits := limiterconfig.Limits{RequestsPerMinute: 1000, TokensPerMinute: 100_000, MaxConcurrency: 10}
	if edit != nil {
		edit(&acct, &limits)
	}
	return newEnv(t, simulator.Config{Seed: 9, Accounts: []simulator.Account{acct}}, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
		c := openAIConfig(simURL, keyFile(simOpenAIKey), limits)
		c.Providers[0].Models = []limiterconfig.ModelPool{{Names: []string{"gpt-4o"}}}
		return c
	}, opts...)
}

// histogramCounts are the observation counts of the histogram name, by the values of
// its provider and model labels.
func histogramCounts(t *testing.T, s *Server, name string) map[string]uint64 {
	t.Helper()
	got := map[string]uint64{}
	for _, m := range series(t, s, name) {
		got[labelValue(m, "provider")+"/"+labelValue(m, "model")] = m.GetHistogram().GetSampleCount()
	}
	return got
}

// series are the sidecar's series of the metric name, as a scrape would see them.
func series(t *testing.T, s *Server, name string) []*dto.Metric {
	t.Helper()
	families, err := testkit.ParseExposition(s.metrics.reg.Write())
	if err != nil {
		t.Fatal(err)
	}
	return families[name].GetMetric()
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestLatencyAndTimeToFirstTokenCountPerModel(t *testing.T) {
	e := observeEnv(t, nil)
	for _, body := range []string{chatBody, streamBody, strings.Replace(chatBody, "gpt-4o", "made-up-model", 1)} {
		if resp, text := e.post("/v1/chat/completions", nil, body); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", resp.Status, text)
		}
	}
	// The made-up model counts as the unlisted pool: apps cannot grow the label.
	want := map[string]uint64{"openai-main/gpt-4o": 2, "openai-main/(unlisted)": 1}
	if diff := cmp.Diff(want, histogramCounts(t, e.srv, "aiquota_limiter_request_latency_seconds")); diff != "" {
		t.Errorf("request latency counts (-want +got):\n%s", diff)
	}
	want = map[string]uint64{"openai-main/gpt-4o": 1, "openai-main/(unlisted)": 0}
	if diff := cmp.Diff(want, histogramCounts(t, e.srv, "aiquota_limiter_time_to_first_token_seconds")); diff != "" {
		t.Errorf("time to first token counts (-want +got):\n%s", diff)
	}
	// The simulator holds the first token back 50 ms: the time includes it.
	_, m := e.get(e.admin.URL + "/metrics")
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, `aiquota_limiter_time_to_first_token_seconds_bucket{model="gpt-4o",provider="openai-main",le="0.025"}`) && !strings.HasSuffix(line, " 0") {
			t.Errorf("a first token came before the simulator sent it: %s", line)
		}
	}
}

// The app's latency includes the queue: a request waiting for the one slot a slow
// stream holds takes longer, as the app sees it, than its wait, while its own
// upstream call (one token) is much shorter than the stream's eight.
func TestAQueuedRequestsLatencyIncludesItsWait(t *testing.T) {
	e := observeEnv(t, func(a *simulator.Account, l *limiterconfig.Limits) {
		a.Latency = simulator.Latency{TokensPerSecond: 10, OutputTokens: 8}
		l.MaxConcurrency = 1
	})
	streamed := make(chan struct{})
	go func() {
		defer close(streamed)
		e.post("/v1/chat/completions", nil, streamBody)
	}()
	testkit.Eventually(t, 5*time.Second, "the stream holding the slot", testkit.True(func() bool {
		a := e.state().Engine.Accounts
		return len(a) == 1 && a[0].InFlight == 1
	}))
	resp, _ := e.post("/v1/chat/completions", nil, strings.Replace(chatBody, `"max_tokens":50`, `"max_tokens":1`, 1))
	<-streamed
	queued, err := time.ParseDuration(resp.Header.Get(QueuedHeader) + "ms")
	if err != nil || queued == 0 {
		t.Fatalf("the request did not queue: %s %q", QueuedHeader, resp.Header.Get(QueuedHeader))
	}
	// Of the two observations, the queued request's is the shorter: it is at least
	// its wait unless the wait was left out, so every bucket below the wait holds neither.
	for _, m := range series(t, e.srv, "aiquota_limiter_request_latency_seconds") {
		for _, b := range m.GetHistogram().GetBucket() {
			if b.GetUpperBound() < queued.Seconds() && b.GetCumulativeCount() > 0 {
				t.Errorf("%d requests took less than %gs as the app saw them, though one waited %v and the other streamed longer", b.GetCumulativeCount(), b.GetUpperBound(), queued)
			}
		}
	}
}

func TestMetricsPassPromlint(t *testing.T) {
	e := observeEnv(t, nil)
	for _, body := range []string{chatBody, streamBody} {
		e.post("/v1/chat/completions", nil, body)
	}
	e.post("/v1/chat/completions", nil, `{"model":`) // a bad request, for the outcome label
	if err := testkit.LintExposition(e.srv.metrics.reg.Write()); err != nil {
		t.Error(err)
	}
}

// accessLines are the access log lines in the sidecar's logs, decoded.
func accessLines(t *testing.T, e *env) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		if rec["msg"] == "request" {
			out = append(out, rec)
		}
	}
	return out
}

func TestAccessLog(t *testing.T) {
	body := strings.Replace(chatBody, "Say hello", promptMarker, 1)
	for _, tc := range []struct {
		name   string
		sample float64
		want   []map[string]any
	}{
		{name: "off by default"},
		{name: "every request", sample: 1, want: []map[string]any{{
			"method": "POST", "path": "/v1/chat/completions", "model": "gpt-4o", "entry": "openai-main/gpt-4o",
			"pool": "gpt-4o", "priority": 3.0, "queuedMs": 0.0, "retries": 0.0, "outcome": outcomeSuccess,
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := observeEnv(t, nil, func(o *Options) { o.AccessLogSample = tc.sample })
			if resp, text := e.post("/v1/chat/completions", http.Header{PriorityHeader: {"3"}}, body); resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %s", resp.Status, text)
			}
			got := accessLines(t, e)
			for _, rec := range got {
				for _, f := range []string{"time", "level", "msg", "durationMs"} {
					delete(rec, f)
				}
				// The simulator's token counts are its own; that they are there is the point.
				for _, f := range []string{"inputTokens", "outputTokens"} {
					if n, ok := rec[f].(float64); !ok || n <= 0 {
						t.Errorf("access log %s is %v, want a count", f, rec[f])
					}
					delete(rec, f)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("access log lines (-want +got):\n%s", diff)
			}
			if strings.Contains(e.logs.String(), promptMarker) {
				t.Errorf("the prompt reached the logs:\n%s", e.logs.String())
			}
		})
	}
}

// TestAccessLogSamples: at half, some requests get a line and some do not (each
// way, the chance of all 64 alike is 2^-63).
func TestAccessLogSamples(t *testing.T) {
	e := observeEnv(t, func(a *simulator.Account, _ *limiterconfig.Limits) { a.Latency = simulator.Latency{} },
		func(o *Options) { o.AccessLogSample = 0.5 })
	const n = 64
	for range n {
		e.post("/v1/chat/completions", nil, chatBody)
	}
	if got := len(accessLines(t, e)); got == 0 || got == n {
		t.Errorf("%d of %d requests logged at a sample of 0.5", got, n)
	}
}

// exportedMetrics are the names the limiter's and the manager's registries
// describe, taken from the code rather than from a list kept by hand.
func exportedMetrics(t *testing.T) []string {
	t.Helper()
	reg := prometheus.NewRegistry()
	if _, err := hub.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	return append(newMetrics(limiter.New(limiter.Options{}), newByteBudget(1)).reg.Names(), testkit.MetricNames(reg)...)
}

var metricRef = regexp.MustCompile(`\baiquota_[a-z]+_[a-z0-9_]*[a-z0-9]`)

// unknownMetrics returns the aiquota metric names expr uses that exported does not
// hold (a histogram's series count as its name).
func unknownMetrics(expr string, exported []string) []string {
	var out []string
	for _, name := range metricRef.FindAllString(expr, -1) {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(exported, b) {
				base = b
			}
		}
		if !slices.Contains(exported, base) {
			out = append(out, name)
		}
	}
	return out
}

// TestDashboardQueriesNameExportedMetrics: the chart's Grafana dashboard parses,
// every panel query names at least one aiquota metric, and every aiquota metric it
// or the chart's alerts name is one the code exports.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	chart := filepath.Join(testenv.Root(), "charts", "aiquota")
	raw, err := os.ReadFile(filepath.Join(chart, "dashboards", "aiquota.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if dash.UID == "" {
		t.Error("the dashboard has no uid: every import would make a new copy")
	}
	queries := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			if !metricRef.MatchString(q.Expr) {
				t.Errorf("panel %q: query %q names no aiquota metric", p.Title, q.Expr)
			}
			if bad := unknownMetrics(q.Expr, exported); len(bad) > 0 {
				t.Errorf("panel %q: query %q names %v, which the code does not export", p.Title, q.Expr, bad)
			}
		}
	}
	for _, v := range dash.Templating.List {
		if bad := unknownMetrics(v.Definition, exported); len(bad) > 0 {
			t.Errorf("variable %q names %v, which the code does not export", v.Name, bad)
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
	rules, err := os.ReadFile(filepath.Join(chart, "templates", "monitoring.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if bad := unknownMetrics(string(rules), exported); len(bad) > 0 {
		t.Errorf("the chart's alerts name %v, which the code does not export", bad)
	}
}

// TestMetricsDocListsEveryMetric: docs/metrics.md has a row for every metric the
// code exports, and names no other (apart from the table of old names).
func TestMetricsDocListsEveryMetric(t *testing.T) {
	exported := exportedMetrics(t)
	raw, err := os.ReadFile(filepath.Join(testenv.Root(), "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc, _, _ := strings.Cut(string(raw), "### Renamed from earlier versions")
	after := strings.SplitAfter(string(raw), "## Dashboard")
	for _, name := range exported {
		if !strings.HasPrefix(name, "aiquota_") {
			continue // the Go and process collectors' are the client library's
		}
		if !strings.Contains(doc, "| `"+name+"` |") {
			t.Errorf("docs/metrics.md has no row for %s", name)
		}
	}
	if bad := unknownMetrics(doc+after[len(after)-1], exported); len(bad) > 0 {
		t.Errorf("docs/metrics.md names %v, which the code does not export", bad)
	}
}
