package bench

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Targets from docs/ARCHITECTURE.md, "Performance targets".
const (
	TargetP50Ratio     = 1.5
	TargetP99Ratio     = 2.0
	TargetCPURatio     = 1.25
	TargetRSSBytes     = 20 << 20 // under load
	TargetIdleRSSBytes = 12 << 20
	TargetReady        = 100 * time.Millisecond // exec to ready
)

// Meta describes the run for the report's header.
type Meta struct {
	Command string
	Commit  string
}

// Machine describes the host: CPU model, cores, kernel, Go.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d cores (GOMAXPROCS %d), Linux %s, %s", model, runtime.NumCPU(), runtime.GOMAXPROCS(0), kernel, runtime.Version())
}

// Added is one proxy's latency over direct in one mode, as medians over repetitions
// of the per-repetition differences.
type Added struct {
	P50, P90, P99, Max time.Duration
}

// Summaries are per (mode, path) medians over repetitions.
type Summaries struct {
	Latency map[string]map[string]Summary // mode -> path
	Rate    map[string]map[string]float64
	Failed  map[string]map[string]int
	Added   map[string]map[string]Added    // mode -> plain|limiter
	CPU1k   map[string]map[string]float64  // mode -> process -> vCPU per 1k req/s (its own path's windows; loadgen over all)
	Tput    map[string]map[int]TputPoint   // path -> concurrency -> median point
	Best    map[string]TputPoint           // path -> highest sane rate
	Reps    map[string]map[string][]Window // mode -> path -> windows
	// Saturated counts windows per mode and path that could not keep up (Saturated).
	Saturated map[string]map[string]int
	TputAll   map[string]map[int][]TputPoint // path -> concurrency -> points
	// WindowRSS is each process's median VmRSS at the end of its own windows (the
	// load generator's: of all windows); WindowRSSAnon and WindowRSSFile split
	// it into anonymous memory and file pages (medians of each).
	WindowRSS, WindowRSSAnon, WindowRSSFile map[string]int64
}

// Summarise reduces the report to medians over repetitions.
func Summarise(rep *Report) Summaries {
	s := Summaries{
		Latency: map[string]map[string]Summary{}, Rate: map[string]map[string]float64{},
		Failed: map[string]map[string]int{}, Added: map[string]map[string]Added{},
		CPU1k: map[string]map[string]float64{}, Tput: map[string]map[int]TputPoint{},
		Best: map[string]TputPoint{}, Reps: map[string]map[string][]Window{}, TputAll: map[string]map[int][]TputPoint{},
		Saturated: map[string]map[string]int{}, WindowRSS: map[string]int64{},
		WindowRSSAnon: map[string]int64{}, WindowRSSFile: map[string]int64{},
	}
	rss, anon, file := map[string][]int64{}, map[string][]int64{}, map[string][]int64{}
	// Windows that other processes disturbed stand in only where no undisturbed
	// repetition of the same (mode, path) exists.
	for _, w := range undisturbed(rep.Windows, rep.Plan.MaxOtherVCPU, func(w Window) string { return w.Mode + "/" + w.Path }, Window.OtherVCPU) {
		if s.Reps[w.Mode] == nil {
			s.Reps[w.Mode] = map[string][]Window{}
		}
		s.Reps[w.Mode][w.Path] = append(s.Reps[w.Mode][w.Path], w)
		for _, proc := range []string{procOf(w.Path), ProcLoadgen} {
			m := w.Mem[proc]
			rss[proc], anon[proc], file[proc] = append(rss[proc], m.RSS), append(anon[proc], m.RSSAnon), append(file[proc], m.RSSFile)
		}
	}
	for proc := range rss {
		s.WindowRSS[proc], s.WindowRSSAnon[proc], s.WindowRSSFile[proc] = Median(rss[proc]), Median(anon[proc]), Median(file[proc])
	}
	for mode, byPath := range s.Reps {
		s.Latency[mode], s.Rate[mode], s.Failed[mode] = map[string]Summary{}, map[string]float64{}, map[string]int{}
		s.Added[mode], s.CPU1k[mode], s.Saturated[mode] = map[string]Added{}, map[string]float64{}, map[string]int{}
		var loadgen []float64
		for path, ws := range byPath {
			var p50, p90, p99, mx []time.Duration
			var rate, cpu []float64
			failed := 0
			for _, w := range ws {
				p50, p90, p99, mx = append(p50, w.Summary.P50), append(p90, w.Summary.P90), append(p99, w.Summary.P99), append(mx, w.Summary.Max)
				rate = append(rate, w.Rate())
				cpu = append(cpu, w.VCPUPer1k(procOf(path)))
				loadgen = append(loadgen, w.VCPUPer1k(ProcLoadgen))
				failed += w.Failed
				if Saturated(w, rep.Plan) {
					s.Saturated[mode][path]++
				}
			}
			s.Latency[mode][path] = Summary{Count: ws[0].Summary.Count, P50: Median(p50), P90: Median(p90), P99: Median(p99), Max: Median(mx)}
			s.Rate[mode][path], s.Failed[mode][path] = Median(rate), failed
			s.CPU1k[mode][procOf(path)] = Median(cpu)
		}
		s.CPU1k[mode][ProcLoadgen] = Median(loadgen)
		direct := map[int]Summary{}
		for _, w := range byPath[PathDirect] {
			direct[w.Rep] = w.Summary
		}
		for _, path := range []string{PathPlain, PathLimiter} {
			var p50, p90, p99, mx []time.Duration
			for _, w := range byPath[path] {
				d, ok := direct[w.Rep]
				if !ok {
					continue
				}
				p50, p90 = append(p50, w.Summary.P50-d.P50), append(p90, w.Summary.P90-d.P90)
				p99, mx = append(p99, w.Summary.P99-d.P99), append(mx, w.Summary.Max-d.Max)
			}
			if len(p50) > 0 {
				s.Added[mode][path] = Added{P50: Median(p50), P90: Median(p90), P99: Median(p99), Max: Median(mx)}
			}
		}
	}
	for _, p := range undisturbed(rep.Tput, rep.Plan.MaxOtherVCPU, func(p TputPoint) string { return fmt.Sprint(p.Path, "/", p.Concurrency) }, TputPoint.OtherVCPU) {
		if s.TputAll[p.Path] == nil {
			s.TputAll[p.Path] = map[int][]TputPoint{}
		}
		s.TputAll[p.Path][p.Concurrency] = append(s.TputAll[p.Path][p.Concurrency], p)
	}
	for path, byConc := range s.TputAll {
		s.Tput[path] = map[int]TputPoint{}
		for conc, ps := range byConc {
			// The repetition with the median rate stands for the level.
			sorted := slices.SortedFunc(slices.Values(ps), func(a, b TputPoint) int { return cmp.Compare(a.Rate(), b.Rate()) })
			med := sorted[(len(sorted)-1)/2]
			s.Tput[path][conc] = med
			if med.Failed == 0 && (rep.Plan.SaneP99 <= 0 || med.Summary.P99 <= rep.Plan.SaneP99) && med.Rate() > s.Best[path].Rate() {
				s.Best[path] = med
			}
		}
	}
	return s
}

// undisturbed drops the items during which other processes used more than limit
// cores, except in groups (by key) where every item was disturbed.
func undisturbed[T any](items []T, limit float64, key func(T) string, other func(T) float64) []T {
	if limit <= 0 {
		return items
	}
	clean := map[string]bool{}
	for _, it := range items {
		if other(it) <= limit {
			clean[key(it)] = true
		}
	}
	var out []T
	for _, it := range items {
		if other(it) <= limit || !clean[key(it)] {
			out = append(out, it)
		}
	}
	return out
}

// saturationRate is the fraction of the arrival rate below which a window did not keep up.
const saturationRate = 0.995

// saturationP50 is the median latency above which a window was queueing: far above
// what the simulator's fixed delay plus any proxy on loopback takes.
func saturationP50(p Plan) time.Duration { return p.TTFT + 25*time.Millisecond }

// Saturated reports a fixed-rate window whose path could not keep up with the
// arrival rate, so that a backlog, not per-request cost, set its latency.
func Saturated(w Window, p Plan) bool {
	return w.Rate() < saturationRate*p.Rate || w.Summary.P50 > saturationP50(p)
}

// WriteMarkdown renders the report.
func WriteMarkdown(out io.Writer, rep *Report, meta Meta) error {
	s := Summarise(rep)
	var b strings.Builder
	f := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	writeSetup(f, rep, meta)
	writeLatency(f, rep.Plan, s)
	writeResources(f, rep, s)
	writeStartup(f, rep.Startup)
	if len(rep.Tput) > 0 {
		writeThroughput(f, rep.Plan, s)
	}
	writeWindows(f, rep)
	if fails := failures(rep); fails != "" {
		f("\nFailures: %s\n", fails)
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// writeSetup writes how the run was made: command, machine, workload, plan, and
// what else ran on the machine meanwhile.
func writeSetup(f func(string, ...any), rep *Report, meta Meta) {
	p := rep.Plan
	f("## Limiter overhead benchmark, %s\n\n", rep.Started.UTC().Format("2006-01-02 15:04 MST"))
	f("- Command: `%s`\n", meta.Command)
	if meta.Commit != "" {
		f("- Commit: %s\n", meta.Commit)
	}
	f("- Machine: %s; load generator, proxies and simulator share it.\n", Machine())
	f("- Load average (1/5/15 min): %.2f %.2f %.2f before, %.2f %.2f %.2f after; the run took %s.\n",
		rep.LoadBefore[0], rep.LoadBefore[1], rep.LoadBefore[2], rep.LoadAfter[0], rep.LoadAfter[1], rep.LoadAfter[2],
		rep.Finished.Sub(rep.Started).Round(time.Second))
	f("- Workload: OpenAI chat completions, %d-byte bodies (shared system prompt, unique user message), max_tokens %d, model %s.\n",
		p.Workload.BodyBytes, p.Workload.MaxTokens, p.Workload.Model)
	f("- Simulator: one OpenAI account, limits far above the load, time to first token %s, %d output tokens (%d stream chunks), no faults. Limiter: one OpenAI provider, RPM/TPM/concurrency limits that do not bind, %s tokenizer, 5%% safety margin, header learning, default policy.\n",
		p.TTFT, p.OutputTokens, p.OutputTokens, p.Tokenizer)
	if len(p.LimiterEnv) > 0 {
		f("- Limiter environment: `%s`.\n", strings.Join(p.LimiterEnv, " "))
	}
	f("- Fixed rate: %.0f req/s open loop, latency from each request's scheduled send to the end of its body; per path and mode %s warm-up, then %s (%d requests); %d repetitions, path order shuffled in each; medians over repetitions.\n",
		p.Rate, p.Warmup, p.Window, int(p.Rate*p.Window.Seconds()), p.Reps)
	var other []float64
	discarded := 0
	for _, w := range rep.Windows {
		other = append(other, w.OtherVCPU())
		discarded += w.Discarded
	}
	for _, t := range rep.Tput {
		other = append(other, t.OtherVCPU())
		discarded += t.Discarded
	}
	f("- Other processes on the machine used %.2f vCPU (median; max %.2f) during the measured windows and closed-loop points", Median(other), slices.Max(append(other, 0)))
	if p.MaxOtherVCPU > 0 {
		disturbed := 0
		for _, o := range other {
			if o > p.MaxOtherVCPU {
				disturbed++
			}
		}
		f("; windows where they used more than %.2f vCPU were measured again (up to %d times): %d discarded, %d kept still disturbed, which the summaries use only where no undisturbed repetition exists", p.MaxOtherVCPU, p.Retries, discarded, disturbed)
	}
	f(".\n")
	f("- Limiter /metrics scraped every %s during the run (%d scrapes, %d failed).\n\n", p.ScrapeEvery, rep.Scrapes, rep.ScrapeErrs)
}

// writeLatency writes a fixed-rate table per mode: each path's latency, and what
// the plain proxy and the limiter add over going direct.
func writeLatency(f func(string, ...any), p Plan, s Summaries) {
	for _, mode := range p.Modes {
		lat := s.Latency[mode]
		if lat == nil {
			continue
		}
		f("### Fixed rate, %s\n\n", mode)
		f("| path | req/s | p50 | p90 | p99 | max | failed |\n|---|---:|---:|---:|---:|---:|---:|\n")
		var saturated []string
		for _, path := range Paths {
			l := lat[path]
			mark := ""
			if n := s.Saturated[mode][path]; n > 0 {
				mark = fmt.Sprintf(" (saturated in %d of %d)", n, len(s.Reps[mode][path]))
				saturated = append(saturated, pathLabel(path))
			}
			f("| %s%s | %.0f | %s | %s | %s | %s | %d |\n", pathLabel(path), mark, s.Rate[mode][path], ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), s.Failed[mode][path])
		}
		if len(saturated) > 0 {
			f("\n**Saturated: %s.** In those windows the path could not keep up with %.0f req/s on this machine (achieved rate below %.1f%% of it, or median latency above %s): requests queued for the whole window, so their latency measures the backlog, not the proxy's overhead, and the ratios below are not overhead ratios.\n", strings.Join(saturated, ", "), p.Rate, 100*saturationRate, saturationP50(p))
		}
		f("\n| added over direct | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|\n")
		for _, path := range []string{PathPlain, PathLimiter} {
			a := s.Added[mode][path]
			f("| %s | %s | %s | %s | %s |\n", pathLabel(path), signedMS(a.P50), signedMS(a.P90), signedMS(a.P99), signedMS(a.Max))
		}
		pl, li := s.Added[mode][PathPlain], s.Added[mode][PathLimiter]
		f("| **limiter / plain** | **%s** (target ≤ %.1fx: %s) | %s | **%s** (target ≤ %.1fx: %s) | %s |\n\n",
			ratio(li.P50, pl.P50), TargetP50Ratio, verdict(li.P50, pl.P50, TargetP50Ratio),
			ratio(li.P90, pl.P90),
			ratio(li.P99, pl.P99), TargetP99Ratio, verdict(li.P99, pl.P99, TargetP99Ratio),
			ratio(li.Max, pl.Max))
	}
}

// writeResources writes the proxies' CPU per request and their memory.
func writeResources(f func(string, ...any), rep *Report, s Summaries) {
	p := rep.Plan
	f("### CPU and memory\n\n")
	f("CPU is utime+stime from /proc/<pid>/stat over each measured window, per 1,000 req/s achieved. Memory is VmRSS and VmHWM from /proc/<pid>/status: idle before any traffic, at the end of the process's own fixed-rate windows (median: the steady state under the load), after the fixed-rate phase, and the peak (VmHWM, which includes any backlog a disturbed attempt built up).\n\n")
	f("| process | vCPU per 1k req/s")
	for _, mode := range p.Modes {
		f(", %s", mode)
	}
	f(" | VmRSS idle | VmRSS under load | VmRSS after the phase | VmHWM after the phase | VmHWM after closed loop |\n|---|---:|---:|---:|---:|---:|---:|\n")
	row := func(label, proc string) {
		var parts []string
		for _, mode := range p.Modes {
			parts = append(parts, fmt.Sprintf("%.3f", s.CPU1k[mode][proc]))
		}
		f("| %s | %s | %s | %s | %s | %s | %s |\n", label, strings.Join(parts, " / "), mb(rep.MemAtStart[proc].RSS), mb(s.WindowRSS[proc]),
			mb(rep.MemAfterRun[proc].RSS), mb(rep.MemAfterRun[proc].HWM), mb(rep.MemAfterAll[proc].HWM))
	}
	row(ProcPlain, ProcPlain)
	row(ProcLimiter, ProcLimiter)
	var parts []string
	okCPU := true
	for _, mode := range p.Modes {
		parts = append(parts, fmt.Sprintf("**%.2fx**", s.CPU1k[mode][ProcLimiter]/s.CPU1k[mode][ProcPlain]))
		okCPU = okCPU && s.CPU1k[mode][ProcLimiter] <= TargetCPURatio*s.CPU1k[mode][ProcPlain]
	}
	f("| **limiter / plain** | %s (target ≤ %.2fx: %s) | %.2fx (limiter ≤ %s: %s) | **%.2fx** (limiter ≤ %s: %s) | %.2fx | %.2fx | %.2fx |\n", strings.Join(parts, " / "), TargetCPURatio, metStr(okCPU),
		float64(rep.MemAtStart[ProcLimiter].RSS)/float64(rep.MemAtStart[ProcPlain].RSS), mb(TargetIdleRSSBytes), metStr(rep.MemAtStart[ProcLimiter].RSS <= TargetIdleRSSBytes),
		float64(s.WindowRSS[ProcLimiter])/float64(s.WindowRSS[ProcPlain]), mb(TargetRSSBytes), metStr(s.WindowRSS[ProcLimiter] <= TargetRSSBytes),
		float64(rep.MemAfterRun[ProcLimiter].RSS)/float64(rep.MemAfterRun[ProcPlain].RSS),
		float64(rep.MemAfterRun[ProcLimiter].HWM)/float64(rep.MemAfterRun[ProcPlain].HWM),
		float64(rep.MemAfterAll[ProcLimiter].HWM)/float64(rep.MemAfterAll[ProcPlain].HWM))
	row("simulator (direct windows)", ProcSimulator)
	row("load generator (all windows)", ProcLoadgen)
	f("\n")

	if rt := rep.LimiterRuntime; len(rt) > 0 {
		f("The limiter's Go runtime after the fixed-rate phase (its /metrics): heap in use %s, heap idle %s of which %s returned to the OS, stacks %s, %s obtained from the OS in all, %.0f goroutines.\n\n",
			mb(int64(rt["go_memstats_heap_inuse_bytes"])), mb(int64(rt["go_memstats_heap_idle_bytes"])), mb(int64(rt["go_memstats_heap_released_bytes"])),
			mb(int64(rt["go_memstats_stack_inuse_bytes"])), mb(int64(rt["go_memstats_sys_bytes"])), rt["go_goroutines"])
	}
	f("VmRSS split into anonymous memory (heap, stacks) and mapped file pages (the binary's, shared by the processes of one binary and reclaimable):\n\n")
	f("| process | idle | under load | after the phase |\n|---|---:|---:|---:|\n")
	for _, proc := range []string{ProcPlain, ProcLimiter} {
		idle, after := rep.MemAtStart[proc], rep.MemAfterRun[proc]
		f("| %s | %s + %s | %s + %s | %s + %s |\n", proc, mb(idle.RSSAnon), mb(idle.RSSFile),
			mb(s.WindowRSSAnon[proc]), mb(s.WindowRSSFile[proc]), mb(after.RSSAnon), mb(after.RSSFile))
	}
	f("\n")
}

// writeThroughput writes the closed-loop points and each path's best throughput.
func writeThroughput(f func(string, ...any), p Plan, s Summaries) {
	f("### Closed-loop throughput, non-streaming\n\n")
	f("N clients send back to back for %s after %s warm-up; the repetition with the median rate is shown (req/s, p50 / p99). Throughput is the best rate whose p99 stays ≤ %s with no failures.\n\n", p.TputWindow, p.TputWarmup, p.SaneP99)
	f("| clients |")
	for _, path := range Paths {
		f(" %s |", pathLabel(path))
	}
	f("\n|---:|")
	for range Paths {
		f("---:|")
	}
	f("\n")
	for _, conc := range p.Concurrency {
		f("| %d |", conc)
		for _, path := range Paths {
			t := s.Tput[path][conc]
			f(" %.0f (%s / %s)%s |", t.Rate(), ms(t.Summary.P50), ms(t.Summary.P99), failedNote(t.Failed))
		}
		f("\n")
	}
	f("| **throughput** |")
	for _, path := range Paths {
		bt := s.Best[path]
		f(" **%.0f** (c=%d) |", bt.Rate(), bt.Concurrency)
	}
	f("\n\nLimiter / plain throughput: %.2fx. Proxy CPU at that point: plain %.2f vCPU, limiter %.2f vCPU.\n\n",
		s.Best[PathLimiter].Rate()/s.Best[PathPlain].Rate(),
		s.Best[PathPlain].VCPU(ProcPlain), s.Best[PathLimiter].VCPU(ProcLimiter))
}

// writeWindows writes every measured window and closed-loop point, folded.
func writeWindows(f func(string, ...any), rep *Report) {
	f("<details><summary>Every measured window</summary>\n\n")
	f("| rep | mode | order | path | req/s | p50 | p90 | p99 | max | failed | its process vCPU/1k | loadgen vCPU/1k | other processes vCPU | load 1m | discarded |\n")
	f("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, w := range rep.Windows {
		f("| %d | %s | %d | %s | %.0f | %s | %s | %s | %s | %d | %.3f (%s) | %.3f | %.2f | %.2f | %d |\n", w.Rep, w.Mode, w.Order, w.Path, w.Rate(),
			ms(w.Summary.P50), ms(w.Summary.P90), ms(w.Summary.P99), ms(w.Summary.Max), w.Failed,
			w.VCPUPer1k(procOf(w.Path)), procOf(w.Path), w.VCPUPer1k(ProcLoadgen), w.OtherVCPU(), w.Load[0], w.Discarded)
	}
	if len(rep.Tput) > 0 {
		f("\n| rep | clients | path | req/s | p50 | p99 | max | failed | its process vCPU | loadgen vCPU | other processes vCPU | discarded |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, t := range rep.Tput {
			f("| %d | %d | %s | %.0f | %s | %s | %s | %d | %.2f | %.2f | %.2f | %d |\n", t.Rep, t.Concurrency, t.Path, t.Rate(),
				ms(t.Summary.P50), ms(t.Summary.P99), ms(t.Summary.Max), t.Failed, t.VCPU(procOf(t.Path)), t.VCPU(ProcLoadgen), t.OtherVCPU(), t.Discarded)
		}
	}
	f("\n</details>\n")
}

func failures(rep *Report) string {
	var out []string
	for _, w := range rep.Windows {
		if w.Failed > 0 {
			out = append(out, fmt.Sprintf("rep %d %s %s: %d failed, first: %s", w.Rep, w.Mode, w.Path, w.Failed, w.FirstError))
		}
	}
	for _, t := range rep.Tput {
		if t.Failed > 0 {
			out = append(out, fmt.Sprintf("rep %d closed c=%d %s: %d failed, first: %s", t.Rep, t.Concurrency, t.Path, t.Failed, t.FirstError))
		}
	}
	return strings.Join(out, "; ")
}

func pathLabel(path string) string {
	switch path {
	case PathPlain:
		return "plain ReverseProxy"
	case PathLimiter:
		return "limiter"
	}
	return "direct"
}

func failedNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d failed", n)
}

func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v >= 10 || v <= -10 {
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.3f ms", v)
}

func signedMS(d time.Duration) string {
	if d >= 0 {
		return "+" + ms(d)
	}
	return ms(d)
}

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

func verdict(limiter, plain time.Duration, target float64) string {
	if plain <= 0 {
		// A floor at or below zero cannot anchor a ratio; the limiter meets it only
		// when it adds nothing either.
		return metStr(limiter <= 0)
	}
	return metStr(float64(limiter) <= target*float64(plain))
}

func metStr(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// writeStartup renders the cold starts, when the run measured them.
func writeStartup(f func(string, ...any), runs map[string][]StartupSample) {
	if len(runs[ProcLimiter]) == 0 {
		return
	}
	f("### Start-up\n\n")
	f("Each proxy started %d times, one process at a time, before the load: exec to ready (the limiter's /readyz answering 200, polled every %s; the plain proxy forwarding its first request), and VmRSS after %s idle.\n\n",
		len(runs[ProcLimiter]), startupPoll, startupSettle)
	f("| process | exec to ready, median | max | idle VmRSS, median | anonymous | file pages |\n|---|---:|---:|---:|---:|---:|\n")
	for _, proc := range []string{ProcPlain, ProcLimiter} {
		var ready []time.Duration
		var rss, anon, file []int64
		for _, s := range runs[proc] {
			ready = append(ready, s.Ready)
			rss, anon, file = append(rss, s.Idle.RSS), append(anon, s.Idle.RSSAnon), append(file, s.Idle.RSSFile)
		}
		f("| %s | %s | %s | %s | %s | %s |\n", proc, ms(Median(ready)), ms(slices.Max(ready)), mb(Median(rss)), mb(Median(anon)), mb(Median(file)))
	}
	var ready []time.Duration
	var rss []int64
	for _, s := range runs[ProcLimiter] {
		ready, rss = append(ready, s.Ready), append(rss, s.Idle.RSS)
	}
	f("| **limiter targets** | ≤ %s: %s | | ≤ %s: %s | | |\n\n", ms(TargetReady), metStr(Median(ready) <= TargetReady), mb(TargetIdleRSSBytes), metStr(Median(rss) <= TargetIdleRSSBytes))
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }
