package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func msList(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, v := range ms {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func oneTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = n - i // descending, so Summarize must sort
	}
	return out
}

func TestSummarize(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want Summary
	}{
		{"empty", nil, Summary{}},
		{"one sample", msList(7), Summary{Count: 1, P50: 7 * ms, P90: 7 * ms, P99: 7 * ms, Max: 7 * ms}},
		{"1..10", msList(oneTo(10)...), Summary{Count: 10, P50: 5 * ms, P90: 9 * ms, P99: 10 * ms, Max: 10 * ms}},
		{"1..100", msList(oneTo(100)...), Summary{Count: 100, P50: 50 * ms, P90: 90 * ms, P99: 99 * ms, Max: 100 * ms}},
		{"1..1000", msList(oneTo(1000)...), Summary{Count: 1000, P50: 500 * ms, P90: 900 * ms, P99: 990 * ms, Max: 1000 * ms}},
		// One slow outlier in 200: p99 is rank 198, still fast; max shows it.
		{"outlier", append(msList(oneTo(199)...), time.Second), Summary{Count: 200, P50: 100 * ms, P90: 180 * ms, P99: 198 * ms, Max: time.Second}},
		// Two in 100 slow: rank 99 is the first of them.
		{"two slow in 100", append(msList(oneTo(98)...), time.Second, 2*time.Second), Summary{Count: 100, P50: 50 * ms, P90: 90 * ms, P99: time.Second, Max: 2 * time.Second}},
		{"ties", msList(3, 3, 3, 1), Summary{Count: 4, P50: 3 * ms, P90: 3 * ms, P99: 3 * ms, Max: 3 * ms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]time.Duration(nil), tc.in...)
			if diff := cmp.Diff(tc.want, Summarize(in)); diff != "" {
				t.Errorf("Summarize (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.in, in); diff != "" {
				t.Errorf("Summarize changed its input (-before +after):\n%s", diff)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{4}, 4},
		{[]float64{9, 1, 5}, 5},
		{[]float64{9, 1, 5, 7}, 5}, // lower middle: a value that was measured
	} {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseProcFiles(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	stat := "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 123 456789 1234 18446744073709551615\n"
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := ticks(325); got != want {
		t.Errorf("parseStatCPU = %v, want %v (utime 250 + stime 75 ticks)", got, want)
	}
	if _, err := parseStatCPU("4242 no name here"); err == nil {
		t.Error("parseStatCPU accepted a line without a command name")
	}
	if _, err := parseStatCPU("4242 (x) S 1 2"); err == nil {
		t.Error("parseStatCPU accepted a truncated line")
	}
	status := "Name:\tlimiter\nVmPeak:\t 1300000 kB\nVmHWM:\t   31000 kB\nVmRSS:\t   27500 kB\nThreads:\t9\n"
	if rss, hwm := parseStatusKB(status, "VmRSS:"), parseStatusKB(status, "VmHWM:"); rss != 27500 || hwm != 31000 {
		t.Errorf("parseStatusKB = %d, %d; want 27500, 31000", rss, hwm)
	}
	if v := parseStatusKB(status, "VmSwap:"); v != 0 {
		t.Errorf("absent key gave %d, want 0", v)
	}
}

func TestBodyTemplate(t *testing.T) {
	for _, stream := range []bool{false, true} {
		w := Workload{Model: "gpt-4o", BodyBytes: 1024, MaxTokens: 64, Stream: stream}
		tmpl, err := newBodyTemplate(w)
		if err != nil {
			t.Fatal(err)
		}
		a, b := tmpl.body(1), tmpl.body(12345678901) // wider than the slot: keeps the low digits
		if len(a) != 1024 || len(b) != 1024 {
			t.Fatalf("bodies are %d and %d bytes, want 1024", len(a), len(b))
		}
		var req struct {
			Model     string `json:"model"`
			Stream    bool   `json:"stream"`
			MaxTokens int    `json:"max_tokens"`
			Messages  []struct{ Role, Content string }
		}
		if err := json.Unmarshal(b, &req); err != nil {
			t.Fatalf("body is not JSON: %v\n%s", err, b)
		}
		if req.Model != "gpt-4o" || req.Stream != stream || req.MaxTokens != 64 || len(req.Messages) != 2 {
			t.Errorf("decoded body %+v", req)
		}
		if !strings.HasPrefix(req.Messages[1].Content, "Request 2345678901.") {
			t.Errorf("user message starts %.30q, want the request number", req.Messages[1].Content)
		}
		if bytes.Equal(a, b) || !bytes.Contains(a, []byte("Request 0000000001.")) {
			t.Errorf("bodies are not numbered apart:\n%s\n%s", a, b)
		}
	}
	if _, err := newBodyTemplate(Workload{Model: "gpt-4o", BodyBytes: 100}); err == nil {
		t.Error("a body smaller than the fixed parts was accepted")
	}
}

func TestLimiterRequests(t *testing.T) {
	metrics := `# HELP aiquota_limiter_requests_total Requests.
# TYPE aiquota_limiter_requests_total counter
aiquota_limiter_requests_total{outcome="success",pool="gpt-4o",provider="a"} 150
aiquota_limiter_requests_total{outcome="success",pool="gpt-4o",provider="b"} 50
aiquota_limiter_requests_total{outcome="rate_limited",pool="gpt-4o",provider="a"} 3
aiquota_limiter_requests_total_other{outcome="success"} 99
`
	if got := LimiterRequests([]byte(metrics), "success"); got != 200 {
		t.Errorf("success = %v, want 200", got)
	}
	if got := LimiterRequests([]byte(metrics), "rate_limited"); got != 3 {
		t.Errorf("rate_limited = %v, want 3", got)
	}
}

// TestTinyRun runs the whole benchmark small: 200 requests at 100 req/s per path and
// mode, plus a short closed loop, through real processes. It checks behaviour only:
// every request succeeds on every path, the limiter is really in its path (and only
// there), every request reached the one simulator, and the report renders.
func TestTinyRun(t *testing.T) {
	ctx := t.Context()
	root, err := ModuleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := StartStack(ctx, StackOptions{
		Root: root, Dir: t.TempDir(), OutputTokens: 5, Model: "gpt-4o", APIKey: "sk-bench-test",
		TimeToFirstToken: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Errorf("stopping the processes: %v", err)
		}
	}()

	plan := Plan{
		Workload:     Workload{Model: "gpt-4o", APIKey: "sk-bench-test", BodyBytes: 1024, MaxTokens: 64},
		Tokenizer:    "o200k_base",
		TTFT:         time.Millisecond,
		OutputTokens: 5,
		Rate:         100,
		Window:       2 * time.Second,
		Reps:         1,
		Modes:        []string{ModeNonStreaming, ModeStreaming},
		MaxInFlight:  64,
		Concurrency:  []int{2},
		TputWindow:   500 * time.Millisecond,
		SaneP99:      time.Hour,
		Seed:         7,
		ScrapeEvery:  500 * time.Millisecond,
		StartupRuns:  2,
	}
	rep, err := Run(ctx, st, NewClient(64), plan)
	if err != nil {
		t.Fatal(err)
	}

	sent, viaLimiter := checkWindows(t, rep)
	tputSent, tputViaLimiter := checkClosedLoop(t, rep)
	sent, viaLimiter = sent+tputSent, viaLimiter+tputViaLimiter

	stats, err := st.SimStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if admitted := SimAdmitted(stats); admitted != int64(sent) {
		t.Errorf("simulator admitted %d requests, the load generator sent %d", admitted, sent)
	}
	metrics, err := st.ScrapeLimiter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := LimiterRequests(metrics, "success"); n != float64(viaLimiter) {
		t.Errorf("limiter counted %v successful requests, %d were sent through it", n, viaLimiter)
	}
	if rep.Scrapes == 0 {
		t.Error("the limiter's /metrics was never scraped during the run")
	}
	checkSamples(t, rep)
	checkMarkdown(t, rep)
}

// checkWindows checks that every fixed-rate window sent its requests, all
// answered, through the path it names; it returns how many were sent in all and
// through the limiter.
func checkWindows(t *testing.T, rep *Report) (sent, viaLimiter int) {
	t.Helper()
	type row struct {
		Mode, Path             string
		Sent, OK, Failed, Hits int
	}
	var got, want []row
	for _, w := range rep.Windows {
		got = append(got, row{w.Mode, w.Path, w.Sent, w.OK, w.Failed, w.ServedBy})
		hits := 0
		if w.Path == PathLimiter {
			hits = 200
			viaLimiter += w.Sent
		}
		want = append(want, row{w.Mode, w.Path, 200, 200, 0, hits})
		sent += w.Sent
		if w.Failed > 0 {
			t.Errorf("%s %s: first failure: %s", w.Mode, w.Path, w.FirstError)
		}
		if w.Summary.Count != w.OK || w.Summary.P50 <= 0 || w.Summary.P50 > w.Summary.P99 || w.Summary.P99 > w.Summary.Max {
			t.Errorf("%s %s: inconsistent summary %+v", w.Mode, w.Path, w.Summary)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("windows (-want +got):\n%s", diff)
	}
	seen := map[string]bool{}
	for _, w := range rep.Windows {
		seen[w.Mode+"/"+w.Path] = true
	}
	if len(seen) != 6 {
		t.Errorf("measured %d distinct (mode, path) windows, want 6: %v", len(seen), seen)
	}
	return sent, viaLimiter
}

// checkClosedLoop checks the closed-loop points as checkWindows the windows.
func checkClosedLoop(t *testing.T, rep *Report) (sent, viaLimiter int) {
	t.Helper()
	if len(rep.Tput) != 3 {
		t.Fatalf("closed loop measured %d points, want 3", len(rep.Tput))
	}
	for _, p := range rep.Tput {
		if p.OK == 0 || p.Failed != 0 {
			t.Errorf("closed loop %s: %d ok, %d failed (%s)", p.Path, p.OK, p.Failed, p.FirstError)
		}
		if wantHits := map[bool]int{true: p.Sent, false: 0}[p.Path == PathLimiter]; p.ServedBy != wantHits {
			t.Errorf("closed loop %s: %d of %d answers carry %s, want %d", p.Path, p.ServedBy, p.Sent, ServedByHeader, wantHits)
		}
		sent += p.Sent
		if p.Path == PathLimiter {
			viaLimiter += p.Sent
		}
	}
	return sent, viaLimiter
}

// checkSamples checks the memory and start-up samples' consistency.
func checkSamples(t *testing.T, rep *Report) {
	t.Helper()
	for _, proc := range []string{ProcSimulator, ProcPlain, ProcLimiter, ProcLoadgen} {
		// VmRSS is RssAnon + RssFile + RssShmem, all read from one status file.
		if m := rep.MemAfterRun[proc]; m.RSS <= 0 || m.HWM < m.RSS || m.RSSAnon <= 0 || m.RSSAnon+m.RSSFile > m.RSS {
			t.Errorf("%s memory sample %+v", proc, m)
		}
	}

	for _, proc := range []string{ProcLimiter, ProcPlain} {
		if n := len(rep.Startup[proc]); n != 2 {
			t.Errorf("%s started %d times, want 2", proc, n)
		}
		for _, s := range rep.Startup[proc] {
			if m := s.Idle; s.Ready <= 0 || s.Ready > startTimeout || m.RSS <= 0 || m.RSSAnon <= 0 || m.RSSAnon+m.RSSFile > m.RSS {
				t.Errorf("%s start-up sample %+v", proc, s)
			}
		}
	}
}

// checkMarkdown checks that the report has every section, printing it on failure.
func checkMarkdown(t *testing.T, rep *Report) {
	t.Helper()
	var md strings.Builder
	if err := WriteMarkdown(&md, rep, Meta{Command: "go test ./test/bench"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"### Fixed rate, non-streaming", "### Fixed rate, streaming", "**limiter / plain**", "### CPU and memory", "### Start-up", "**limiter targets**", "### Closed-loop throughput"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, md.String())
		}
	}
	if t.Failed() {
		fmt.Println(md.String())
	}
}
