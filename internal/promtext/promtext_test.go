package promtext

import (
	"bytes"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/aiquota/aiquota/internal/testkit"
)

// TestExpositionMatchesTheClientLibrary: the same metrics, updated alike in this
// package and in the Prometheus client, expose the same text.
func TestExpositionMatchesTheClientLibrary(t *testing.T) {
	buckets := []float64{.001, .01, .5, 1, 2.5}
	ours := NewRegistry()
	theirs := prometheus.NewRegistry()

	c := ours.Counter("x_reloads_total", "Reloads.")
	tc := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_reloads_total", Help: "Reloads."})
	g := ours.Gauge("x_ready", "1 when ready.\nSecond line with a \\ backslash.")
	tg := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_ready", Help: "1 when ready.\nSecond line with a \\ backslash."})
	cv := ours.CounterVec("x_requests_total", "Requests.", "provider", "outcome", "code")
	tcv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_requests_total", Help: "Requests."}, []string{"provider", "outcome", "code"})
	gv := ours.GaugeVec("x_info", "Info.", "hash", "source")
	tgv := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "x_info", Help: "Info."}, []string{"hash", "source"})
	h := ours.Histogram("x_added_seconds", "Added.", buckets)
	th := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x_added_seconds", Help: "Added.", Buckets: buckets})
	hv := ours.HistogramVec("x_latency_seconds", "Latency.", buckets, "provider", "model")
	thv := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "x_latency_seconds", Help: "Latency.", Buckets: buckets}, []string{"provider", "model"})
	ours.GaugeFunc("x_budget_bytes", "Budget.", func() float64 { return 1 << 20 })
	ours.CounterFunc("x_work_total", "Work.", func() float64 { return 12345678 })
	theirs.MustRegister(tc, tg, tcv, tgv, th, thv,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x_budget_bytes", Help: "Budget."}, func() float64 { return 1 << 20 }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x_work_total", Help: "Work."}, func() float64 { return 12345678 }))

	c.Inc()
	tc.Inc()
	g.Set(0.25)
	tg.Set(0.25)
	for _, lv := range [][]string{{"openai", "success", "200"}, {"anthropic", "rate_limited", "429"}, {"openai", "success", "200"}, {`we"ird\`, "line\nbreak", ""}} {
		cv.With(lv...).Inc()
		tcv.WithLabelValues(lv...).Inc()
	}
	gv.With("abc", "default/q").Set(1)
	tgv.WithLabelValues("abc", "default/q").Set(1)
	gv.Reset()
	tgv.Reset()
	gv.With("def", "default/q").Set(1)
	tgv.WithLabelValues("def", "default/q").Set(1)
	for _, v := range []float64{0, .001, .0011, .3, 1, 2.5, 7, math.Inf(1)} {
		h.Observe(v)
		th.Observe(v)
		hv.With("openai", "gpt-4o").Observe(v)
		thv.WithLabelValues("openai", "gpt-4o").Observe(v)
	}
	hv.With("gemini", "(unlisted)").Observe(0.02)
	thv.WithLabelValues("gemini", "(unlisted)").Observe(0.02)

	if diff := cmp.Diff(clientText(t, theirs), string(ours.Write())); diff != "" {
		t.Errorf("exposition differs from the client's (-client +ours):\n%s", diff)
	}
	if err := testkit.LintExposition(ours.Write()); err != nil {
		t.Error(err)
	}
	want := []string{"x_added_seconds", "x_budget_bytes", "x_info", "x_latency_seconds", "x_ready", "x_reloads_total", "x_requests_total", "x_work_total"}
	if diff := cmp.Diff(want, ours.Names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

func clientText(t *testing.T, g prometheus.Gatherer) string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestAVecWithoutChildrenWritesNothing(t *testing.T) {
	r := NewRegistry()
	r.CounterVec("x_total", "X.", "a")
	r.HistogramVec("y_seconds", "Y.", []float64{1}, "a")
	if got := string(r.Write()); got != "" {
		t.Errorf("exposition %q, want none", got)
	}
	if diff := cmp.Diff([]string{"x_total", "y_seconds"}, r.Names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

func TestRuntimeMetricsPassPromlint(t *testing.T) {
	r := NewRegistry()
	r.Runtime()
	text := r.Write()
	if err := testkit.LintExposition(text); err != nil {
		t.Error(err)
	}
	families, err := testkit.ParseExposition(text)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes",
		"go_memstats_sys_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total", "process_start_time_seconds", "process_open_fds"} {
		f := families[name]
		if f == nil || len(f.GetMetric()) != 1 {
			t.Errorf("%s: %v, want one sample", name, f)
			continue
		}
		m := f.GetMetric()[0]
		if v := m.GetGauge().GetValue() + m.GetCounter().GetValue(); v <= 0 {
			t.Errorf("%s = %v, want more than 0", name, v)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     procStat
		ok       bool
	}{
		{"plain", "42 (limiter) S 1 42 42 0 -1 4194560 1 0 0 0 150 25 0 0 20 0 8 0 9000 734003200 2560 18446744073709551615", procStat{150, 25, 9000, 734003200, 2560}, true},
		{"a name with spaces and parentheses", "42 (a) (b c) R 1 42 42 0 -1 4194560 1 0 0 0 7 8 0 0 20 0 8 0 9 10 11", procStat{7, 8, 9, 10, 11}, true},
		{"cut short", "42 (limiter) S 1 42", procStat{}, false},
		{"no name", "42 limiter S", procStat{}, false},
		{"not a number", "42 (limiter) S 1 42 42 0 -1 4194560 1 0 0 0 x 25 0 0 20 0 8 0 9000 734003200 2560", procStat{}, false},
		{"empty", "", procStat{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseProcStat([]byte(tc.in))
			if ok != tc.ok || got != tc.want {
				t.Errorf("parseProcStat = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestUpdatesAllocateNothing: the request path's updates, a labelled child found
// again included, allocate nothing.
func TestUpdatesAllocateNothing(t *testing.T) {
	r := NewRegistry()
	cv := r.CounterVec("x_total", "X.", "provider", "pool", "outcome")
	hv := r.HistogramVec("y_seconds", "Y.", []float64{.01, .1, 1}, "provider", "pool")
	provider, pool := "openai", "gpt-4o"
	cv.With(provider, pool, "success").Inc()
	hv.With(provider, pool).Observe(0.05)
	if n := testing.AllocsPerRun(1000, func() {
		cv.With(provider, pool, "success").Inc()
		hv.With(provider, pool).Observe(0.05)
	}); n != 0 {
		t.Errorf("%v allocations per update, want 0", n)
	}
}

// TestConcurrentUpdatesAndScrapes: updates from many goroutines during scrapes
// lose nothing (run with -race in CI).
func TestConcurrentUpdatesAndScrapes(t *testing.T) {
	r := NewRegistry()
	cv := r.CounterVec("x_total", "X.", "worker")
	h := r.Histogram("y_seconds", "Y.", []float64{1})
	const workers, each = 8, 1000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			name := string(rune('a' + w%2))
			for range each {
				cv.With(name).Inc()
				h.Observe(0.5)
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if _, err := testkit.ParseExposition(r.Write()); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	families, err := testkit.ParseExposition(r.Write())
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, m := range families["x_total"].GetMetric() {
		total += m.GetCounter().GetValue()
	}
	hist := families["y_seconds"].GetMetric()[0].GetHistogram()
	if total != workers*each || hist.GetSampleCount() != workers*each || hist.GetSampleSum() != workers*each*0.5 {
		t.Errorf("counted %v, observed %d summing %v; want %d each", total, hist.GetSampleCount(), hist.GetSampleSum(), workers*each)
	}
}

// FuzzLabelValues: any label value, UTF-8 or not, gives an exposition the
// client's parser reads back, with the value unchanged when it was UTF-8.
func FuzzLabelValues(f *testing.F) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "new\nline", "\xff\xfe", "日本語", `\n`} {
		f.Add(s, "help")
	}
	f.Fuzz(func(t *testing.T, value, help string) {
		r := NewRegistry()
		r.CounterVec("x_total", help, "v", "w").With(value, "fixed").Inc()
		families, err := testkit.ParseExposition(r.Write())
		if err != nil {
			t.Fatalf("value %q: %v\n%s", value, err, r.Write())
		}
		m := families["x_total"].GetMetric()
		if len(m) != 1 {
			t.Fatalf("value %q: %d series", value, len(m))
		}
		want := strings.ToValidUTF8(value, "\uFFFD")
		if got := m[0].GetLabel()[0].GetValue(); got != want {
			t.Errorf("label value %q read back as %q, want %q", value, got, want)
		}
	})
}

// FuzzParseProcStat: no stat line makes the parser fail other than by saying so.
func FuzzParseProcStat(f *testing.F) {
	f.Add("42 (limiter) S 1 42 42 0 -1 4194560 1 0 0 0 150 25 0 0 20 0 8 0 9000 734003200 2560")
	f.Add("1 ()) ) ) S")
	f.Fuzz(func(t *testing.T, s string) {
		if st, ok := parseProcStat([]byte(s)); !ok && st != (procStat{}) {
			t.Errorf("a failed parse returned %+v", st)
		}
	})
}
