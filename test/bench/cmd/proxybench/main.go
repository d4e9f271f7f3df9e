// Command proxybench measures what the limiter sidecar costs: it builds and starts
// the provider simulator, a plain httputil.ReverseProxy and the limiter as
// processes, sends the same load to the simulator directly and through each proxy,
// and prints Markdown tables of latency, added latency, CPU, memory and throughput.
//
//	go run ./test/bench/cmd/proxybench [-rate 2000] [-window 20s] [-reps 3] [-out results.md]
//
// Run it on a quiet machine: the load generator, both proxies and the simulator
// share the cores, so other work shows up as noise (the report says how much).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aiquota/aiquota/test/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

// The simulator's account and the model every request names.
const (
	apiKey = "sk-bench-openai"
	model  = "gpt-4o"
)

// options are the command line: the plan, and how to run and report it.
type options struct {
	plan        bench.Plan
	maxLoad     float64
	maxLoadWait time.Duration
	jsonOut     string
	render      string
	out         string
	verbose     bool
}

// parseFlags reads the command line into options.
func parseFlags() (*options, error) {
	o := &options{plan: bench.Plan{Workload: bench.Workload{Model: model, APIKey: apiKey}, Progress: os.Stderr}}
	p := &o.plan
	flag.Float64Var(&p.Rate, "rate", 2000, "fixed arrival rate of the open-loop phase, req/s")
	flag.DurationVar(&p.Window, "window", 20*time.Second, "measured window per path, mode and repetition")
	flag.DurationVar(&p.Warmup, "warmup", 5*time.Second, "warm-up at the same rate before each measured window")
	flag.IntVar(&p.Reps, "reps", 3, "repetitions; medians over them are reported")
	modes := flag.String("modes", bench.ModeNonStreaming+","+bench.ModeStreaming, "comma-separated modes of the fixed-rate phase")
	flag.IntVar(&p.Workload.BodyBytes, "body-bytes", 1024, "request body size")
	flag.IntVar(&p.Workload.MaxTokens, "max-tokens", 64, "max_tokens of each request (the limiter reserves it)")
	flag.Int64Var(&p.OutputTokens, "output-tokens", 8, "tokens per answer: the number of stream chunks")
	flag.DurationVar(&p.TTFT, "ttft", 0, "simulator's fixed time to first token")
	flag.StringVar(&p.Tokenizer, "tokenizer", "o200k_base", "the limiter's tokenizer for the model: o200k_base, cl100k_base or estimate")
	limiterEnv := flag.String("limiter-env", "", "space-separated NAME=value pairs added to the limiter's environment (e.g. GOGC=100)")
	flag.IntVar(&p.MaxInFlight, "max-in-flight", 4096, "open loop: most requests outstanding at once")
	conc := flag.String("concurrency", "4,16,64", "closed-loop client counts; empty skips the throughput phase")
	flag.DurationVar(&p.TputWarmup, "tput-warmup", 2*time.Second, "closed-loop warm-up per point")
	flag.DurationVar(&p.TputWindow, "tput-window", 5*time.Second, "closed-loop measured window per point")
	flag.DurationVar(&p.SaneP99, "sane-p99", 25*time.Millisecond, "closed loop: highest p99 at which a rate counts as throughput")
	flag.DurationVar(&p.ScrapeEvery, "scrape-every", 15*time.Second, "scrape the limiter's /metrics this often; 0 disables")
	flag.IntVar(&p.StartupRuns, "startup-runs", 5, "cold starts of the limiter and of the plain proxy before the load (exec to ready, idle memory); 0 skips them")
	flag.Uint64Var(&p.Seed, "seed", uint64(time.Now().UnixNano()), "seed of the path-order shuffles")
	flag.Float64Var(&o.maxLoad, "max-load", 0, "if > 0, wait (up to -max-load-wait) until the 1-minute load average is below this before starting")
	flag.DurationVar(&o.maxLoadWait, "max-load-wait", 15*time.Minute, "longest wait for -max-load")
	flag.Float64Var(&p.MaxOtherVCPU, "max-other-vcpu", 0.3, "measure a fixed-rate window again when other processes used more than this many cores during it; 0 disables")
	flag.IntVar(&p.Retries, "retries", 2, "most re-measurements of one window for -max-other-vcpu")
	flag.StringVar(&o.jsonOut, "json", "", "also write the raw results as JSON to this file (re-render with -render)")
	flag.StringVar(&o.render, "render", "", "print the report of a -json file instead of running")
	flag.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	flag.BoolVar(&o.verbose, "v", false, "copy the processes' logs to stderr")
	flag.Parse()

	var err error
	if p.Concurrency, err = parseInts(*conc); err != nil {
		return nil, fmt.Errorf("-concurrency: %w", err)
	}
	p.Modes = strings.Split(*modes, ",")
	for _, m := range p.Modes {
		if m != bench.ModeNonStreaming && m != bench.ModeStreaming {
			return nil, fmt.Errorf("-modes: %q is not %s or %s", m, bench.ModeNonStreaming, bench.ModeStreaming)
		}
	}
	p.LimiterEnv = strings.Fields(*limiterEnv)
	return o, nil
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	if o.render != "" {
		return renderJSON(o.render)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.maxLoad > 0 {
		if err := waitQuiet(ctx, o.maxLoad, o.maxLoadWait); err != nil {
			return err
		}
	}
	root, err := bench.ModuleRoot(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(dir)

	p := o.plan
	opts := bench.StackOptions{Root: root, Dir: dir, TimeToFirstToken: p.TTFT, OutputTokens: p.OutputTokens, Model: model, APIKey: apiKey, Tokenizer: p.Tokenizer,
		LimiterEnv: p.LimiterEnv}
	if o.verbose {
		opts.Logs = os.Stderr
	}
	fmt.Fprintln(os.Stderr, "proxybench: building and starting simulator, plain proxy and limiter")
	st, err := bench.StartStack(ctx, opts)
	if err != nil {
		return err
	}
	defer st.Close()

	rep, err := bench.Run(ctx, st, bench.NewClient(p.MaxInFlight), p)
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench: stopping processes:", err)
	}
	meta := bench.Meta{Command: "go run ./test/bench/cmd/proxybench " + shellJoin(os.Args[1:]), Commit: commit(ctx, root)}
	return o.write(rep, meta)
}

// write prints the Markdown report, and writes it and the raw results to the files
// the command line names.
func (o *options) write(rep *bench.Report, meta bench.Meta) error {
	if err := bench.WriteMarkdown(os.Stdout, rep, meta); err != nil {
		return err
	}
	if o.jsonOut != "" {
		if err := writeJSON(o.jsonOut, saved{Report: rep, Meta: meta}); err != nil {
			return err
		}
	}
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return fmt.Errorf("create %s: %w", o.out, err)
		}
		defer f.Close()
		if err := bench.WriteMarkdown(f, rep, meta); err != nil {
			return fmt.Errorf("write %s: %w", o.out, err)
		}
	}
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// waitQuiet waits until the 1-minute load average drops below limit.
func waitQuiet(ctx context.Context, limit float64, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		l, err := bench.LoadAvg()
		if err != nil {
			return err
		}
		if l[0] < limit {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("load average %.2f stayed above -max-load %.2f for %s", l[0], limit, wait)
		}
		fmt.Fprintf(os.Stderr, "proxybench: load average %.2f >= %.2f, waiting\n", l[0], limit)
		select {
		case <-ctx.Done():
			return errors.New("interrupted while waiting for a quiet machine")
		case <-time.After(30 * time.Second):
		}
	}
}

// commit names the checked-out commit, marked when the tree has local changes.
func commit(ctx context.Context, root string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += " (with uncommitted changes in the tree)"
	}
	return c
}

// saved is what -json writes and -render reads.
type saved struct {
	Report *bench.Report
	Meta   bench.Meta
}

func writeJSON(path string, v saved) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func renderJSON(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var v saved
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	if v.Report == nil {
		return fmt.Errorf("%s holds no report", path)
	}
	return bench.WriteMarkdown(os.Stdout, v.Report, v.Meta)
}

// shellJoin quotes the arguments that need it, so that the recorded command can be
// pasted back into a shell (-concurrency "" stays an empty argument).
func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~!") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		quoted[i] = a
	}
	return strings.Join(quoted, " ")
}
