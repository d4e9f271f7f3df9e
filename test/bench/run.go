package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"time"
)

// Modes of the fixed-rate phase.
const (
	ModeNonStreaming = "non-streaming"
	ModeStreaming    = "streaming"
)

// Process names in CPU and memory samples.
const (
	ProcSimulator = "simulator"
	ProcPlain     = "plainproxy"
	ProcLimiter   = "limiter"
	ProcLoadgen   = "loadgen"
)

// Plan is what Run measures.
type Plan struct {
	Workload Workload // Stream is set per mode
	// Tokenizer, TTFT and OutputTokens repeat the stack's settings for the report.
	Tokenizer    string
	LimiterEnv   []string
	TTFT         time.Duration
	OutputTokens int64
	// Fixed-rate phase: each (repetition, mode, path) is a warm-up at Rate for
	// Warmup, then a measured window of Rate*Window requests.
	Rate           float64
	Warmup, Window time.Duration
	Reps           int
	Modes          []string
	MaxInFlight    int
	// Closed-loop phase (skipped when Concurrency is empty): for each repetition,
	// level and path, a warm-up of TputWarmup then a measured TputWindow.
	Concurrency            []int
	TputWarmup, TputWindow time.Duration
	// SaneP99 is the highest p99 at which a closed-loop rate still counts as the
	// path's throughput.
	SaneP99 time.Duration
	// MaxOtherVCPU, when > 0, discards a fixed-rate window during which other
	// processes on the machine used more than this many cores, and measures it
	// again, up to Retries times; the last attempt is kept either way.
	MaxOtherVCPU float64
	Retries      int
	// Seed shuffles the order of paths in each block.
	Seed uint64
	// ScrapeEvery scrapes the limiter's /metrics throughout, as Prometheus would;
	// 0 disables it.
	ScrapeEvery time.Duration
	// StartupRuns, when > 0, starts the limiter and the plain proxy this many
	// times each before the load, measuring exec to ready and idle memory.
	StartupRuns int
	// Progress receives one line per window; nil for none.
	Progress io.Writer `json:"-"`
}

// Measured is one load's result, and what every process used while it ran.
type Measured struct {
	Result
	Summary Summary
	// Wall is the sampling interval; CPU is each process's CPU time within it, and
	// OtherCPU what the rest of the machine used meanwhile.
	Wall     time.Duration
	CPU      map[string]time.Duration
	OtherCPU time.Duration
}

// OtherVCPU is the cores other processes used during the measurement.
func (m Measured) OtherVCPU() float64 {
	if m.Wall <= 0 {
		return 0
	}
	return m.OtherCPU.Seconds() / m.Wall.Seconds()
}

// VCPU is a process's CPU use within the measurement in cores.
func (m Measured) VCPU(proc string) float64 {
	if m.Wall <= 0 {
		return 0
	}
	return m.CPU[proc].Seconds() / m.Wall.Seconds()
}

// Window is one measured fixed-rate window.
type Window struct {
	Rep   int
	Mode  string
	Path  string
	Order int // position of the path within its (rep, mode) block, from 1
	Measured
	// Mem is each process's memory at the window's end.
	Mem  map[string]ProcSample
	Load [3]float64 // at the window's start
	// Discarded counts earlier attempts at this window thrown away for other work.
	Discarded int
}

// VCPUPer1k is a process's CPU in cores per 1,000 req/s of the window's achieved rate.
func (w Window) VCPUPer1k(proc string) float64 {
	r := w.Rate()
	if r <= 0 {
		return 0
	}
	return w.VCPU(proc) / (r / 1000)
}

// TputPoint is one measured closed-loop window.
type TputPoint struct {
	Rep         int
	Path        string
	Concurrency int
	Measured
	Discarded int
}

// Report is everything Run measured.
type Report struct {
	Plan        Plan
	Started     time.Time
	Finished    time.Time
	LoadBefore  [3]float64
	LoadAfter   [3]float64
	Windows     []Window
	Tput        []TputPoint
	MemAtStart  map[string]ProcSample // before any traffic
	MemAfterRun map[string]ProcSample // after the fixed-rate phase
	MemAfterAll map[string]ProcSample // after the closed-loop phase too
	// Startup has Plan.StartupRuns cold starts of the limiter and the plain
	// proxy, by process name.
	Startup map[string][]StartupSample
	// LimiterRuntime is the limiter's Go runtime memory after the fixed-rate phase,
	// from its /metrics: what its RSS is made of.
	LimiterRuntime map[string]float64
	Scrapes        int
	ScrapeErrs     int
}

// Run measures plan against st with c as the load generator.
func Run(ctx context.Context, st *Stack, c *Client, plan Plan) (*Report, error) {
	rep := &Report{Plan: plan, Started: time.Now()}
	rep.LoadBefore, _ = LoadAvg()
	pids := map[string]int{
		ProcSimulator: st.Sim.Pid(), ProcPlain: st.Plain.Pid(), ProcLimiter: st.Limiter.Pid(), ProcLoadgen: os.Getpid(),
	}
	var err error
	if rep.MemAtStart, _, err = sample(pids); err != nil {
		return rep, err
	}
	if plan.StartupRuns > 0 {
		if rep.Startup, err = measureStartups(ctx, st, plan.StartupRuns); err != nil {
			return rep, err
		}
		for _, proc := range []string{ProcLimiter, ProcPlain} {
			for i, s := range rep.Startup[proc] {
				progress(plan.Progress, "start-up %d %-10s ready after %-9s idle VmRSS %s (%s anonymous + %s file)",
					i+1, proc, round(s.Ready), mb(s.Idle.RSS), mb(s.Idle.RSSAnon), mb(s.Idle.RSSFile))
			}
		}
	}

	stopScrape := scrapeLimiter(ctx, st, plan.ScrapeEvery)
	defer func() { rep.Scrapes, rep.ScrapeErrs = stopScrape() }()

	r := runner{c: c, targets: st.Targets(), plan: plan, pids: pids, rep: rep}
	if err := r.fixedRate(ctx); err != nil {
		return rep, err
	}
	rep.MemAfterRun, _, _ = sample(pids)
	if m, err := st.ScrapeLimiter(ctx); err == nil {
		rep.LimiterRuntime = GoRuntimeStats(m)
	}
	if err := r.closedLoop(ctx); err != nil {
		return rep, err
	}
	rep.MemAfterAll, _, _ = sample(pids)
	rep.Finished = time.Now()
	rep.LoadAfter, _ = LoadAvg()
	return rep, nil
}

// scrapeLimiter scrapes the limiter's /metrics every interval (never if it is 0),
// as a monitoring system would, until the returned stop, which says how many
// scrapes succeeded and failed.
func scrapeLimiter(ctx context.Context, st *Stack, every time.Duration) (stop func() (n, errs int)) {
	stopScrape := make(chan struct{})
	scraped := make(chan [2]int, 1)
	go func() {
		n, errs := 0, 0
		if every > 0 {
			t := time.NewTicker(every)
			defer t.Stop()
		loop:
			for {
				select {
				case <-t.C:
					if _, err := st.ScrapeLimiter(ctx); err != nil {
						errs++
					} else {
						n++
					}
				case <-stopScrape:
					break loop
				}
			}
		}
		scraped <- [2]int{n, errs}
	}()
	return func() (int, int) {
		close(stopScrape)
		s := <-scraped
		return s[0], s[1]
	}
}

// runner is what the phases of one Run share; they append to rep.
type runner struct {
	c       *Client
	targets map[string]Target
	plan    Plan
	pids    map[string]int
	rep     *Report
}

// fixedRate measures every path in every mode at the plan's rate, Reps times, the
// path order shuffled and the mode order alternated in each repetition.
func (r runner) fixedRate(ctx context.Context) error {
	plan := r.plan
	n := int(plan.Rate * plan.Window.Seconds())
	warmN := int(plan.Rate * plan.Warmup.Seconds())
	for rep := range plan.Reps {
		modes := slices.Clone(plan.Modes)
		if rep%2 == 1 {
			slices.Reverse(modes) // neither mode always runs first
		}
		for mi, mode := range modes {
			w := plan.Workload
			w.Stream = mode == ModeStreaming
			order := slices.Clone(Paths)
			rng := rand.New(rand.NewPCG(plan.Seed, uint64(rep*len(modes)+mi)))
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for oi, path := range order {
				t := r.targets[path]
				r.c.CloseIdle()
				if warmN > 0 {
					if _, err := r.c.OpenLoop(ctx, t, w, plan.Rate, warmN, plan.MaxInFlight); err != nil {
						return fmt.Errorf("warm-up %s %s: %w", path, mode, err)
					}
				}
				var win Window
				for attempt := 0; ; attempt++ {
					var err error
					if win, err = measureWindow(ctx, r.c, t, w, plan, n, r.pids); err != nil {
						return fmt.Errorf("window %s %s: %w", path, mode, err)
					}
					win.Rep, win.Mode, win.Path, win.Order, win.Discarded = rep+1, mode, path, oi+1, attempt
					if plan.MaxOtherVCPU <= 0 || win.OtherVCPU() <= plan.MaxOtherVCPU || attempt >= plan.Retries {
						break
					}
					progress(plan.Progress, "rep %d %-13s %-7s  discarded: other processes used %.2f vCPU", rep+1, mode, path, win.OtherVCPU())
				}
				r.rep.Windows = append(r.rep.Windows, win)
				progress(plan.Progress, "rep %d %-13s %-7s  %6.0f req/s  p50 %-9s p99 %-9s max %-9s failed %d  %s %.3f vCPU/1k  other %.2f vCPU  load %.2f",
					win.Rep, mode, path, win.Rate(), round(win.Summary.P50), round(win.Summary.P99), round(win.Summary.Max), win.Failed,
					procOf(path), win.VCPUPer1k(procOf(path)), win.OtherVCPU(), win.Load[0])
			}
		}
	}
	return nil
}

// closedLoop measures every path's non-streaming throughput at each of the plan's
// concurrencies, Reps times, the path order shuffled in each.
func (r runner) closedLoop(ctx context.Context) error {
	plan := r.plan
	w := plan.Workload
	w.Stream = false
	for rep := range plan.Reps {
		if len(plan.Concurrency) == 0 {
			break
		}
		for li, conc := range plan.Concurrency {
			order := slices.Clone(Paths)
			rng := rand.New(rand.NewPCG(plan.Seed+1, uint64(rep*len(plan.Concurrency)+li)))
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, path := range order {
				t := r.targets[path]
				r.c.CloseIdle()
				if plan.TputWarmup > 0 {
					if _, err := r.c.ClosedLoop(ctx, t, w, conc, plan.TputWarmup); err != nil {
						return fmt.Errorf("closed-loop warm-up %s c=%d: %w", path, conc, err)
					}
				}
				var p TputPoint
				for attempt := 0; ; attempt++ {
					var err error
					if p, err = measurePoint(ctx, r.c, t, w, conc, plan.TputWindow, r.pids); err != nil {
						return fmt.Errorf("closed loop %s c=%d: %w", path, conc, err)
					}
					p.Rep, p.Discarded = rep+1, attempt
					if plan.MaxOtherVCPU <= 0 || p.OtherVCPU() <= plan.MaxOtherVCPU || attempt >= plan.Retries {
						break
					}
					progress(plan.Progress, "rep %d closed c=%-4d %-7s discarded: other processes used %.2f vCPU", rep+1, conc, path, p.OtherVCPU())
				}
				r.rep.Tput = append(r.rep.Tput, p)
				progress(plan.Progress, "rep %d closed c=%-4d %-7s %7.0f req/s  p50 %-9s p99 %-9s failed %d",
					p.Rep, conc, path, p.Rate(), round(p.Summary.P50), round(p.Summary.P99), p.Failed)
			}
		}
	}
	return nil
}

// measureWindow sends n requests at plan.Rate and samples every process around them.
func measureWindow(ctx context.Context, c *Client, t Target, w Workload, plan Plan, n int, pids map[string]int) (Window, error) {
	var win Window
	win.Load, _ = LoadAvg()
	var err error
	win.Measured, win.Mem, err = measure(pids, func() (Result, error) { return c.OpenLoop(ctx, t, w, plan.Rate, n, plan.MaxInFlight) })
	return win, err
}

// measurePoint runs one closed-loop window and samples every process around it.
func measurePoint(ctx context.Context, c *Client, t Target, w Workload, conc int, d time.Duration, pids map[string]int) (TputPoint, error) {
	p := TputPoint{Path: t.Name, Concurrency: conc}
	var err error
	p.Measured, _, err = measure(pids, func() (Result, error) { return c.ClosedLoop(ctx, t, w, conc, d) })
	return p, err
}

// measure runs load and samples every process around it; it returns their memory
// at its end too.
func measure(pids map[string]int, load func() (Result, error)) (Measured, map[string]ProcSample, error) {
	m := Measured{CPU: map[string]time.Duration{}}
	before, mBefore, err := sample(pids)
	if err != nil {
		return m, nil, err
	}
	res, err := load()
	if err != nil {
		return m, nil, err
	}
	after, mAfter, err := sample(pids)
	if err != nil {
		return m, nil, err
	}
	m.Result, m.Summary = res, Summarize(res.Latencies)
	m.Latencies = nil // summarised; the raw samples are not kept
	m.Wall = after[ProcLoadgen].At.Sub(before[ProcLoadgen].At)
	var ours time.Duration
	for name := range pids {
		d := after[name].CPU - before[name].CPU
		m.CPU[name] = d
		ours += d
	}
	m.OtherCPU = max(0, mAfter-mBefore-ours)
	return m, after, nil
}

// procOf is the process whose cost a path measures: the proxy, or for the direct
// path the simulator.
func procOf(path string) string {
	switch path {
	case PathPlain:
		return ProcPlain
	case PathLimiter:
		return ProcLimiter
	}
	return ProcSimulator
}

func sample(pids map[string]int) (map[string]ProcSample, time.Duration, error) {
	out := make(map[string]ProcSample, len(pids))
	machine, err := MachineCPU()
	if err != nil {
		return nil, 0, err
	}
	for name, pid := range pids {
		s, err := ReadProc(pid)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = s
	}
	return out, machine, nil
}

func progress(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
