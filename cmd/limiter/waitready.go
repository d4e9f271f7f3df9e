package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// waitReady is `limiter wait-ready`: it returns once the limiter's /readyz answers
// 200. As a plain container's postStart hook it holds back the pod's later
// containers (the kubelet starts them only after the hook returns), which is what a
// native sidecar's startup probe does on clusters from 1.29.
func waitReady(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("limiter wait-ready", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8788/readyz", "the limiter's readiness URL")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long (exit 1)")
	interval := fs.Duration("interval", 200*time.Millisecond, "time between attempts")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "limiter wait-ready: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *timeout <= 0 || *interval <= 0 {
		fmt.Fprintln(stderr, "limiter wait-ready: --timeout and --interval must be positive")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last string
	for {
		last = probeOnce(ctx, client, *url)
		if last == "" {
			return 0
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "limiter wait-ready: %s not ready after %s: %s\n", *url, *timeout, last)
			return 1
		case <-time.After(*interval):
		}
	}
}

// probeOnce returns "" when url answers 200, else why not.
func probeOnce(ctx context.Context, client *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	return fmt.Sprintf("%s: %s", resp.Status, body)
}
