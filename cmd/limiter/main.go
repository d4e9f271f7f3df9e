// Command limiter is the aiquota sidecar: a localhost proxy in front of AI providers
// that keeps an app inside its quota (see internal/sidecar).
//
//	limiter --config /etc/aiquota/limiter.json [--listen 127.0.0.1:8787] [--admin-listen :8788]
//	        [--default-priority N] [--drain-timeout 20s] [--log-level info]
//	        [--max-body-bytes N] [--body-read-timeout 30s] [--body-memory-bytes N] [--body-memory-wait 10s]
//
//	limiter wait-ready [--url http://127.0.0.1:8788/readyz] [--timeout 2m]
//
// The proxy listener must be a loopback address; the admin listener (health,
// readiness, metrics only) listens on the pod IP for the kubelet and Prometheus.
// SIGTERM or SIGINT: readiness turns false, in-flight requests finish (bounded by
// --drain-timeout; requests still waiting for capacity are answered 429 a second
// before it ends), a final report returns the leases, then the process exits 0.
// The default drain leaves a pod's default 30 s grace period room for the final
// report and the admin listener's shutdown (2 s each). `wait-ready` exits 0 once the limiter
// is ready: the injector runs it as a plain container's postStart hook, so the app
// containers after it start only once the limiter serves.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/hubclient"
	"github.com/aiquota/aiquota/internal/sidecar"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "wait-ready" {
		return waitReady(args[1:], stderr)
	}
	fs := flag.NewFlagSet("limiter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/etc/aiquota/limiter.json", "path of the rendered limiter config (JSON)")
	listen := fs.String("listen", "127.0.0.1:8787", "proxy listen address; must be loopback")
	adminListen := fs.String("admin-listen", ":8788", "admin listen address (/healthz, /readyz, /metrics)")
	defaultPriority := fs.Int("default-priority", 0, "priority 1..9 for requests without an x-aiquota-priority header; 0 = the chain's default, else 5")
	drainTimeout := fs.Duration("drain-timeout", 20*time.Second, "how long in-flight requests may take to finish after SIGTERM")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	maxBody := fs.Int64("max-body-bytes", sidecar.DefaultMaxBodyBytes, "largest request body accepted (413 above)")
	bodyMemory := fs.Int64("body-memory-bytes", 0, "most bytes request bodies may hold across all requests; 0 = half the Go memory limit (GOMEMLIMIT, else 90% of the container's), or 4 x --max-body-bytes without one")
	bodyMemoryWait := fs.Duration("body-memory-wait", sidecar.DefaultBodyMemoryWait, "how long a request waits for body memory before a 503")
	bodyReadTimeout := fs.Duration("body-read-timeout", sidecar.DefaultBodyReadTimeout, "how long reading a request body may take in total (408 and a closed connection after)")
	accessLogSample := fs.Float64("access-log-sample", 0, "share of requests, 0..1, that get a structured access log line (model, entry, priority, tokens, queue wait, retries, outcome; never prompts or keys); 0 = none")
	pollInterval := fs.Duration("config-poll-interval", sidecar.DefaultPollInterval, "how often the config's content hash is checked, besides file events")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "limiter: --log-level: %v\n", err)
		return 2
	}
	if *accessLogSample < 0 || *accessLogSample > 1 {
		fmt.Fprintf(stderr, "limiter: --access-log-sample is %v, want 0..1\n", *accessLogSample)
		return 2
	}
	if *defaultPriority < 0 || *defaultPriority > 9 {
		fmt.Fprintf(stderr, "limiter: --default-priority is %d, want 0..9\n", *defaultPriority)
		return 2
	}
	if err := requireLoopback(*listen); err != nil {
		fmt.Fprintf(stderr, "limiter: --listen: %v\n", err)
		return 2
	}
	id := sidecar.Identity{PodName: os.Getenv("POD_NAME"), PodNamespace: os.Getenv("POD_NAMESPACE"), PodUID: os.Getenv("POD_UID")}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if id.PodName != "" {
		log = log.With("podName", id.PodName, "podNamespace", id.PodNamespace)
	}
	gc, err := osMemory()
	if err != nil {
		log.Warn("container memory limit not used as the Go soft limit; set GOMEMLIMIT", "error", err)
	}
	if len(gc) > 0 {
		log.Info("garbage collector tuned for a sidecar", gc...)
	}

	srv := sidecar.New(sidecar.Options{
		ConfigPath: *configPath, DefaultPriority: *defaultPriority, MaxBodyBytes: *maxBody,
		BodyReadTimeout: *bodyReadTimeout, BodyMemoryBytes: *bodyMemory, BodyMemoryWait: *bodyMemoryWait,
		PollInterval: *pollInterval, Logger: log, Identity: id, AccessLogSample: *accessLogSample,
	})
	proxyLn, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("proxy listener", "address", *listen, "error", err)
		return 1
	}
	adminLn, err := net.Listen("tcp", *adminListen)
	if err != nil {
		log.Error("admin listener", "address", *adminListen, "error", err)
		return 1
	}
	proxy := &http.Server{Handler: srv.ProxyHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	admin := &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 2)
	go func() { serveErr <- proxy.Serve(proxyLn) }()
	go func() { serveErr <- admin.Serve(adminLn) }()
	log.Info("listening", "proxy", proxyLn.Addr().String(), "admin", adminLn.Addr().String(), "config", *configPath, "ready", srv.Ready())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	srv.Watch(watchCtx)
	// Reports to the manager, while the config has a control section.
	hub := hubclient.New(hubclient.Options{
		Config: srv.Config, Snapshot: srv.Engine().Snapshot, Leases: srv.Engine(), Logger: log,
		Pod: hubapi.Pod{Namespace: id.PodNamespace, Name: id.PodName, UID: id.PodUID},
	})
	reportCtx, stopReports := context.WithCancel(context.Background())
	defer stopReports()
	reportsDone := make(chan struct{})
	go func() { hub.Run(reportCtx); close(reportsDone) }()

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		log.Error("listener failed", "error", err)
		return 1
	}
	// Queued requests get their answer before the drain ends rather than a
	// connection closed under them; a second is left for writing it.
	srv.Drain(max(*drainTimeout-time.Second, 0))
	log.Info("draining", "timeout", drainTimeout.String())
	drainCtx, cancel := context.WithTimeout(context.Background(), *drainTimeout)
	defer cancel()
	if err := proxy.Shutdown(drainCtx); err != nil {
		log.Warn("drain timed out; closing the remaining connections", "error", err)
		_ = proxy.Close()
	}
	// One last report with the drained requests' counts, if the manager answers quickly.
	stopReports()
	<-reportsDone
	finalCtx, cancelFinal := context.WithTimeout(context.Background(), 2*time.Second)
	if err := hub.SendFinal(finalCtx); err != nil {
		log.Warn("final control-channel report not sent", "error", err)
	}
	cancelFinal()
	adminCtx, cancelAdmin := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelAdmin()
	_ = admin.Shutdown(adminCtx)
	log.Info("stopped")
	return 0
}

// requireLoopback refuses a proxy address that would expose the keys' power beyond
// the pod: apps reach the sidecar on localhost only.
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return errors.New(addr + " is not a loopback address; the proxy must listen on localhost only")
	}
	return nil
}
