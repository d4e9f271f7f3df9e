package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"time"
)

// waitReady is `limiter wait-ready`: it returns once the limiter's /readyz answers
// 200. As a plain container's postStart hook it holds back the pod's later
// containers (the kubelet starts them only after the hook returns), which is what a
// native sidecar's startup probe does where the cluster has native sidecars.
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
	if u, err := neturl.Parse(*url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "limiter wait-ready: --url %q is not an http(s) URL\n", *url)
		return 2
	}
	deadline := time.Now().Add(*timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		// Each probe has its own timeout, so that the reason reported at the deadline
		// is the limiter's last answer, not the deadline cutting a probe short.
		why := probeOnce(client, *url)
		if why == "" {
			return 0
		}
		if time.Until(deadline) < *interval {
			fmt.Fprintf(stderr, "limiter wait-ready: %s not ready after %s: %s\n", *url, *timeout, why)
			return 1
		}
		time.Sleep(*interval)
	}
}

// probeOnce returns "" when url answers 200, else why not.
func probeOnce(client *http.Client, url string) string {
	resp, err := client.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	return fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
}
