package bench

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkFootprint measures the limiter's resident memory (anonymous and file
// pages) and CPU per request beside the plain proxy's, in one run, under a closed
// loop of a fixed number of clients: unlike proxybench's fixed rate, a machine
// busy with other work slows it down but does not pile requests (and so
// connections, goroutines and buffers) up in the proxies, so its memory figures
// hold on a shared machine. The rounds alternate plain and limiter; together the
// limiter's run long enough (about 100,000 requests) to fill its token memo, as
// a long-running sidecar's is. Run it with -benchtime 1x:
//
//	go test -run '^$' -bench Footprint -benchtime 1x -timeout 30m -v ./test/bench/
func BenchmarkFootprint(b *testing.B) {
	const clients, rounds, round = 8, 6, 12 * time.Second
	root, err := ModuleRoot(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	o := StackOptions{Root: root, Dir: b.TempDir(), OutputTokens: 8, Model: "gpt-4o", APIKey: "sk-bench-openai"}
	st, err := StartStack(b.Context(), o)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	c := NewClient(4 * clients)
	for _, mode := range []string{ModeNonStreaming, ModeStreaming} {
		b.Run(mode, func(b *testing.B) {
			w := Workload{Model: o.Model, APIKey: o.APIKey, BodyBytes: 1024, MaxTokens: 64, Stream: mode == ModeStreaming}
			got := map[string]*footprint{PathPlain: {}, PathLimiter: {}}
			for r := range rounds {
				for _, path := range []string{PathPlain, PathLimiter} {
					if err := got[path].measure(b, c, st, path, w, clients, round); err != nil {
						b.Fatalf("round %d, %s: %v", r, path, err)
					}
				}
			}
			for _, path := range []string{PathPlain, PathLimiter} {
				f := got[path]
				anon, file := f.lastHalfMax()
				lat := Summarize(f.latencies)
				b.Logf("%s: %d requests, %.3f vCPU per 1k req/s, p50 %s, p99 %s; VmRSS at the end of the later rounds, at most %.1f MB anonymous + %.1f MB file",
					path, f.requests, f.vcpuPer1k(), lat.P50, lat.P99, anon/1e6, file/1e6)
				b.ReportMetric(anon/1e6, path+"-anon-MB")
				b.ReportMetric(file/1e6, path+"-file-MB")
				b.ReportMetric(f.vcpuPer1k(), path+"-vCPU/1k")
			}
			b.ReportMetric(got[PathLimiter].vcpuPer1k()/got[PathPlain].vcpuPer1k(), "CPU-ratio")
		})
	}
}

// footprint accumulates one path's rounds.
type footprint struct {
	cpu        time.Duration
	requests   int
	latencies  []time.Duration
	anon, file []int64
}

func (f *footprint) measure(b *testing.B, c *Client, st *Stack, path string, w Workload, clients int, d time.Duration) error {
	pid := st.Process(path).Pid()
	before, err := ReadProc(pid)
	if err != nil {
		return err
	}
	res, err := c.ClosedLoop(b.Context(), st.Targets()[path], w, clients, d)
	if err != nil {
		return err
	}
	if res.Failed > 0 {
		b.Errorf("%s: %d requests failed, the first: %s", path, res.Failed, res.FirstError)
	}
	after, err := ReadProc(pid)
	if err != nil {
		return err
	}
	f.cpu += after.CPU - before.CPU
	f.requests += res.OK
	f.latencies = append(f.latencies, res.Latencies...)
	f.anon, f.file = append(f.anon, after.RSSAnon), append(f.file, after.RSSFile)
	b.Logf("%s: %.0f req/s, VmRSS %.1f MB anonymous + %.1f MB file", path, res.Rate(), float64(after.RSSAnon)/1e6, float64(after.RSSFile)/1e6)
	return nil
}

func (f *footprint) vcpuPer1k() float64 { return f.cpu.Seconds() / float64(f.requests) * 1000 }

// lastHalfMax is the highest reading of the later rounds: the steady state, once
// the limiter's memo is full.
func (f *footprint) lastHalfMax() (anon, file float64) {
	h := len(f.anon) / 2
	return float64(slices.Max(f.anon[h:])), float64(slices.Max(f.file[h:]))
}
