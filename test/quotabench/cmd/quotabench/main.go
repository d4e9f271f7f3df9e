// Command quotabench runs issue 10's scenarios (test/quotabench) in every mode and
// prints a table per scenario: make bench-quota.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"

	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/test/harness"
	"github.com/aiquota/aiquota/test/quotabench"
)

func main() {
	stretch := flag.Float64("stretch", 1, "multiply every scenario's durations (3: demand moves every 30 s)")
	only := flag.String("run", "", "only scenarios whose name matches this regular expression")
	out := flag.String("out", "", "also write the tables to this file")
	logs := flag.String("logs", "", "write the limiters' output to this file")
	limiterBin := flag.String("limiter", "", "a built limiter to measure (another revision's); default: build ./cmd/limiter")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *stretch, *only, *out, *logs, *limiterBin); err != nil {
		fmt.Fprintln(os.Stderr, "quotabench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stretch float64, only, out, logPath, limiterBin string) error {
	re, err := regexp.Compile(only)
	if err != nil {
		return fmt.Errorf("-run: %w", err)
	}
	dir, err := os.MkdirTemp("", "quotabench-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if limiterBin == "" {
		bins, err := harness.Build(ctx, testenv.Root(), dir, "./cmd/limiter")
		if err != nil {
			return err
		}
		limiterBin = bins["limiter"]
	}
	o := quotabench.Options{Limiter: limiterBin, Dir: dir}
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return fmt.Errorf("create the log file: %w", err)
		}
		defer f.Close()
		o.Logs = f
	}
	if os.Getenv("KUBEBUILDER_ASSETS") != "" {
		// The leases mode: a real API server, the manager and pods its webhook admits.
		bins, err := harness.Build(ctx, testenv.Root(), dir, "./cmd/manager")
		if err != nil {
			return err
		}
		if o.Cluster, err = quotabench.StartCluster(dir, bins["manager"], o.Logs); err != nil {
			return err
		}
		defer o.Cluster.Stop() //nolint:errcheck // the run's result is already decided
	}
	var results []quotabench.Result
	for _, sc := range quotabench.Scenarios(stretch) {
		if !re.MatchString(sc.Name) {
			continue
		}
		for _, mode := range []quotabench.Mode{quotabench.ModeLeases, quotabench.ModeFull, quotabench.ModeStatic} {
			fmt.Fprintf(os.Stderr, "%s, %s\n", sc.Name, mode)
			r, err := quotabench.Run(ctx, o, sc, mode)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", sc.Name, mode, err)
			}
			results = append(results, r)
		}
	}
	quotabench.WriteTable(os.Stdout, results)
	if out != "" {
		f, err := os.Create(filepath.Clean(out))
		if err != nil {
			return fmt.Errorf("create %s: %w", out, err)
		}
		defer f.Close()
		quotabench.WriteTable(f, results)
	}
	return nil
}
