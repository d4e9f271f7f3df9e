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

// options are the manager's command-line settings.
type options struct {
	metricsAddr     string
	secureMetrics   bool
	probeAddr       string
	leaderElect     bool
	leaderElectNS   string
	enableHTTP2     bool
	watchNamespaces []string
	controller      controller.Options
	webhook         webhook.Options
	certs           certs.Options
	hub             hub.Options
	zap             zap.Options
}

// parseFlags reads the command line into options.
func parseFlags() *options {
	o := &options{webhook: webhook.DefaultOptions(), certs: certs.DefaultOptions(), hub: hub.DefaultOptions(),
		zap: zap.Options{Development: false, TimeEncoder: zapcore.ISO8601TimeEncoder}}
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "Address of the metrics endpoint; 0 disables it.")
	flag.BoolVar(&o.secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, authenticated and authorised by the API server.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles.")
	flag.StringVar(&o.leaderElectNS, "leader-election-namespace", "", "Namespace of the leader-election Lease (default: the pod's namespace).")
	flag.BoolVar(&o.enableHTTP2, "enable-http2", false, "Serve HTTP/2 on the metrics and webhook servers (off: CVE-2023-44487 rapid reset).")
	flag.StringVar(&o.controller.ControlURL, "control-url", "", "URL of the control channel as limiter sidecars reach it, written into every rendered limiter config; empty renders none.")
	flag.StringVar(&o.controller.CABundleFile, "control-ca-file", "", "PEM CA bundle that verifies the control channel, copied into every rendered config as ca.crt (e.g. <cert-dir>/ca.crt); empty: sidecars use system roots.")
	flag.DurationVar(&o.controller.ReportInterval, "control-report-interval", 0, "How often limiter sidecars report over the control channel (0: 10s).")
	flag.DurationVar(&o.controller.SecretRecheckInterval, "secret-recheck-interval", controller.DefaultSecretRecheckInterval,
		"How often the credential Secrets that ProviderQuotas name are checked again by name (the manager may only get Secrets, not watch them).")
	flag.Func("watch-namespaces", "Comma-separated namespaces to reconcile and inject, for a namespace-scoped install whose Roles grant nothing elsewhere; empty: every namespace.", func(s string) error {
		for ns := range strings.SplitSeq(s, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				o.watchNamespaces = append(o.watchNamespaces, ns)
			}
		}
		return nil
	})
	o.webhook.BindFlags(flag.CommandLine)
	o.certs.BindFlags(flag.CommandLine)
	o.hub.BindFlags(flag.CommandLine)
	o.zap.BindFlags(flag.CommandLine)
	flag.Parse()
	return o
}

func run() error {
	o := parseFlags()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
	log := ctrl.Log.WithName("setup")

	var tlsOpts []func(*tls.Config)
	if !o.enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	// One serving certificate for the webhook, the control channel and the metrics
	// endpoint, loaded before the webhook server needs it.
	certMgr, err := certs.New(o.certs)
	if err != nil {
		return err
	}
	metricsOpts := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.secureMetrics, TLSOpts: tlsOpts}
	if o.secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
		// Not controller-runtime's throwaway self-signed certificate: Prometheus
		// verifies this one with the CA in the certificate Secret.
		metricsOpts.TLSOpts = append(slices.Clone(tlsOpts), certMgr.TLSOpt())
	}
	o.webhook.WatchNamespaces = o.watchNamespaces
	o.webhook.ExcludedNamespaces = append(o.webhook.ExcludedNamespaces, o.certs.Namespace)
	webhookServer := crwebhook.NewServer(crwebhook.Options{Port: o.webhook.Port, TLSOpts: append(slices.Clone(tlsOpts), certMgr.TLSOpt())})

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cacheOpts, err := controller.CacheOptions(o.watchNamespaces)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.New(),
		Cache:                   cacheOpts,
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "aiquota-manager.quota.aiquota.dev",
		LeaderElectionNamespace: o.leaderElectNS,
		WebhookServer:           webhookServer,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := setUp(mgr, o, certMgr, webhookServer, tlsOpts); err != nil {
		return err
	}
	log.Info("starting manager", "metricsAddress", o.metricsAddr, "probeAddress", o.probeAddr, "leaderElection", o.leaderElect, "watchNamespaces", o.watchNamespaces)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}

// setUp adds the reconcilers, the certificate manager, the injection webhook and the
// control channel to mgr, with its health and ready checks.
func setUp(mgr ctrl.Manager, o *options, certMgr *certs.Manager, webhookServer crwebhook.Server, tlsOpts []func(*tls.Config)) error {
	// The CA file the renderer copies is written by the certificate manager; let it
	// announce changes so new configs carry a new CA at once.
	o.controller.CASource = certMgr
	if err := controller.SetupWithManager(mgr, o.controller); err != nil {
		return fmt.Errorf("set up controllers: %w", err)
	}
	if err := certMgr.SetupWithManager(context.Background(), mgr); err != nil {
		return fmt.Errorf("set up serving certificates: %w", err)
	}
	injector, err := webhook.SetupWithManager(mgr, o.webhook)
	if err != nil {
		return fmt.Errorf("set up the injection webhook: %w", err)
	}
	// The control channel serves the manager's certificate unless given a directory.
	o.hub.PodNamespace, o.hub.PodName = os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")
	o.hub.TLSOpts = slices.Clone(tlsOpts)
	if o.hub.CertDir == "" {
		o.hub.TLSOpts = append(o.hub.TLSOpts, certMgr.TLSOpt())
	}
	if _, err := hub.SetupWithManager(mgr, o.hub); err != nil {
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
	return nil
}
