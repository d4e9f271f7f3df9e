// Command manager is the aiquota operator: the reconcilers for ProviderQuota,
// FallbackChain and CircuitPolicy, the sidecar-injection webhook and the control
// channel that limiter sidecars report to.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/aiquota/aiquota/internal/certs"
	"github.com/aiquota/aiquota/internal/controller"
	"github.com/aiquota/aiquota/internal/hub"
	"github.com/aiquota/aiquota/internal/scheme"
	"github.com/aiquota/aiquota/internal/webhook"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr   string
		secureMetrics bool
		probeAddr     string
		leaderElect   bool
		leaderElectNS string
		enableHTTP2   bool
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address of the metrics endpoint; 0 disables it.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, authenticated and authorised by the API server.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles.")
	flag.StringVar(&leaderElectNS, "leader-election-namespace", "", "Namespace of the leader-election Lease (default: the pod's namespace).")
	flag.BoolVar(&enableHTTP2, "enable-http2", false, "Serve HTTP/2 on the metrics and webhook servers (off: CVE-2023-44487 rapid reset).")
	var controllerOpts controller.Options
	flag.StringVar(&controllerOpts.ControlURL, "control-url", "", "URL of the control channel as limiter sidecars reach it, written into every rendered limiter config; empty renders none.")
	flag.StringVar(&controllerOpts.CABundleFile, "control-ca-file", "", "PEM CA bundle that verifies the control channel, copied into every rendered config as ca.crt (e.g. <cert-dir>/ca.crt); empty: sidecars use system roots.")
	flag.DurationVar(&controllerOpts.ReportInterval, "control-report-interval", 0, "How often limiter sidecars report over the control channel (0: 10s).")
	flag.DurationVar(&controllerOpts.SecretRecheckInterval, "secret-recheck-interval", controller.DefaultSecretRecheckInterval,
		"How often the credential Secrets that ProviderQuotas name are checked again by name (the manager may only get Secrets, not watch them).")
	var watchNamespaces []string
	flag.Func("watch-namespaces", "Comma-separated namespaces to reconcile and inject, for a namespace-scoped install whose Roles grant nothing elsewhere; empty: every namespace.", func(s string) error {
		for ns := range strings.SplitSeq(s, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				watchNamespaces = append(watchNamespaces, ns)
			}
		}
		return nil
	})
	webhookOpts := webhook.DefaultOptions()
	webhookOpts.BindFlags(flag.CommandLine)
	certOpts := certs.DefaultOptions()
	certOpts.BindFlags(flag.CommandLine)
	hubOpts := hub.DefaultOptions()
	hubOpts.BindFlags(flag.CommandLine)
	opts := zap.Options{Development: false, TimeEncoder: zapcore.ISO8601TimeEncoder}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	// One serving certificate for the webhook, the control channel and the metrics
	// endpoint, loaded before the webhook server needs it.
	certMgr, err := certs.New(certOpts)
	if err != nil {
		return err
	}
	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: secureMetrics, TLSOpts: tlsOpts}
	if secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
		// Not controller-runtime's throwaway self-signed certificate: Prometheus
		// verifies this one with the CA in the certificate Secret.
		metricsOpts.TLSOpts = append(slices.Clone(tlsOpts), certMgr.TLSOpt())
	}
	webhookOpts.WatchNamespaces = watchNamespaces
	webhookOpts.ExcludedNamespaces = append(webhookOpts.ExcludedNamespaces, certOpts.Namespace)
	webhookServer := crwebhook.NewServer(crwebhook.Options{Port: webhookOpts.Port, TLSOpts: append(slices.Clone(tlsOpts), certMgr.TLSOpt())})

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cacheOpts, err := controller.CacheOptions(watchNamespaces)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.New(),
		Cache:                   cacheOpts,
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "aiquota-manager.quota.aiquota.dev",
		LeaderElectionNamespace: leaderElectNS,
		WebhookServer:           webhookServer,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	// The CA file the renderer copies is written by the certificate manager; let it
	// announce changes so new configs carry a new CA at once.
	controllerOpts.CASource = certMgr
	if err := controller.SetupWithManager(mgr, controllerOpts); err != nil {
		return fmt.Errorf("set up controllers: %w", err)
	}
	if err := certMgr.SetupWithManager(context.Background(), mgr); err != nil {
		return fmt.Errorf("set up serving certificates: %w", err)
	}
	injector, err := webhook.SetupWithManager(mgr, webhookOpts)
	if err != nil {
		return fmt.Errorf("set up the injection webhook: %w", err)
	}
	// The control channel serves the manager's certificate unless given a directory.
	hubOpts.PodNamespace, hubOpts.PodName = os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")
	hubOpts.TLSOpts = slices.Clone(tlsOpts)
	if hubOpts.CertDir == "" {
		hubOpts.TLSOpts = append(hubOpts.TLSOpts, certMgr.TLSOpt())
	}
	if _, err := hub.SetupWithManager(mgr, hubOpts); err != nil {
		return fmt.Errorf("set up the control channel: %w", err)
	}
	// Ready only when the certificate is in place and trusted, the webhook serves,
	// and its informers have synced.
	for name, check := range map[string]healthz.Checker{
		"certificates":   certMgr.ReadyCheck(),
		"webhook-server": webhookServer.StartedChecker(),
		"webhook":        injector.ReadyCheck(),
	} {
		if err := mgr.AddReadyzCheck(name, check); err != nil {
			return fmt.Errorf("add ready check %s: %w", name, err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("add ready check: %w", err)
	}
	log.Info("starting manager", "metricsAddress", metricsAddr, "probeAddress", probeAddr, "leaderElection", leaderElect, "watchNamespaces", watchNamespaces)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}
