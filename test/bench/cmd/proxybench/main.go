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

func run() error {
	rate := flag.Float64("rate", 2000, "fixed arrival rate of the open-loop phase, req/s")
	window := flag.Duration("window", 20*time.Second, "measured window per path, mode and repetition")
	warmup := flag.Duration("warmup", 5*time.Second, "warm-up at the same rate before each measured window")
	reps := flag.Int("reps", 3, "repetitions; medians over them are reported")
	modes := flag.String("modes", bench.ModeNonStreaming+","+bench.ModeStreaming, "comma-separated modes of the fixed-rate phase")
	bodyBytes := flag.Int("body-bytes", 1024, "request body size")
	maxTokens := flag.Int("max-tokens", 64, "max_tokens of each request (the limiter reserves it)")
	outputTokens := flag.Int64("output-tokens", 8, "tokens per answer: the number of stream chunks")
	ttft := flag.Duration("ttft", 0, "simulator's fixed time to first token")
	tokenizer := flag.String("tokenizer", "o200k_base", "the limiter's tokenizer for the model: o200k_base, cl100k_base or estimate")
	limiterEnv := flag.String("limiter-env", "", "space-separated NAME=value pairs added to the limiter's environment (e.g. GOGC=100)")
	maxInFlight := flag.Int("max-in-flight", 4096, "open loop: most requests outstanding at once")
	conc := flag.String("concurrency", "4,16,64", "closed-loop client counts; empty skips the throughput phase")
	tputWarmup := flag.Duration("tput-warmup", 2*time.Second, "closed-loop warm-up per point")
	tputWindow := flag.Duration("tput-window", 5*time.Second, "closed-loop measured window per point")
	saneP99 := flag.Duration("sane-p99", 25*time.Millisecond, "closed loop: highest p99 at which a rate counts as throughput")
	scrape := flag.Duration("scrape-every", 15*time.Second, "scrape the limiter's /metrics this often; 0 disables")
	startupRuns := flag.Int("startup-runs", 5, "cold starts of the limiter and of the plain proxy before the load (exec to ready, idle memory); 0 skips them")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the path-order shuffles")
	maxLoad := flag.Float64("max-load", 0, "if > 0, wait (up to -max-load-wait) until the 1-minute load average is below this before starting")
	maxLoadWait := flag.Duration("max-load-wait", 15*time.Minute, "longest wait for -max-load")
	maxOther := flag.Float64("max-other-vcpu", 0.3, "measure a fixed-rate window again when other processes used more than this many cores during it; 0 disables")
	retries := flag.Int("retries", 2, "most re-measurements of one window for -max-other-vcpu")
	jsonOut := flag.String("json", "", "also write the raw results as JSON to this file (re-render with -render)")
	render := flag.String("render", "", "print the report of a -json file instead of running")
	out := flag.String("out", "", "also write the Markdown report to this file")
	verbose := flag.Bool("v", false, "copy the processes' logs to stderr")
	flag.Parse()

	levels, err := parseInts(*conc)
	if err != nil {
		return fmt.Errorf("-concurrency: %w", err)
	}
	modeList := strings.Split(*modes, ",")
	for _, m := range modeList {
		if m != bench.ModeNonStreaming && m != bench.ModeStreaming {
			return fmt.Errorf("-modes: %q is not %s or %s", m, bench.ModeNonStreaming, bench.ModeStreaming)
		}
	}

	if *render != "" {
		return renderJSON(*render)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *maxLoad > 0 {
		if err := waitQuiet(ctx, *maxLoad, *maxLoadWait); err != nil {
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

	const apiKey = "sk-bench-openai"
	const model = "gpt-4o"
	opts := bench.StackOptions{Root: root, Dir: dir, TimeToFirstToken: *ttft, OutputTokens: *outputTokens, Model: model, APIKey: apiKey, Tokenizer: *tokenizer,
		LimiterEnv: strings.Fields(*limiterEnv)}
	if *verbose {
		opts.Logs = os.Stderr
	}
	fmt.Fprintln(os.Stderr, "proxybench: building and starting simulator, plain proxy and limiter")
	st, err := bench.StartStack(ctx, opts)
	if err != nil {
		return err
	}
	defer st.Close()

	plan := bench.Plan{
		Workload:     bench.Workload{Model: model, APIKey: apiKey, BodyBytes: *bodyBytes, MaxTokens: *maxTokens},
		Tokenizer:    *tokenizer,
		LimiterEnv:   opts.LimiterEnv,
		TTFT:         *ttft,
		OutputTokens: *outputTokens,
		Rate:         *rate,
		Warmup:       *warmup,
		Window:       *window,
		Reps:         *reps,
		Modes:        modeList,
		MaxInFlight:  *maxInFlight,
		Concurrency:  levels,
		TputWarmup:   *tputWarmup,
		TputWindow:   *tputWindow,
		SaneP99:      *saneP99,
		Seed:         *seed,
		MaxOtherVCPU: *maxOther,
		Retries:      *retries,
		ScrapeEvery:  *scrape,
		StartupRuns:  *startupRuns,
		Progress:     os.Stderr,
	}
	client := bench.NewClient(*maxInFlight)
	rep, err := bench.Run(ctx, st, client, plan)
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench: stopping processes:", err)
	}
	meta := bench.Meta{Command: "go run ./test/bench/cmd/proxybench " + shellJoin(os.Args[1:]), Commit: commit(ctx, root)}
	if err := bench.WriteMarkdown(os.Stdout, rep, meta); err != nil {
		return err
	}
	if *jsonOut != "" {
		if err := writeJSON(*jsonOut, saved{Report: rep, Meta: meta}); err != nil {
			return err
		}
	}
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("create %s: %w", *out, err)
		}
		defer f.Close()
		if err := bench.WriteMarkdown(f, rep, meta); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
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
