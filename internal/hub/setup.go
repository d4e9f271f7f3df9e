// Package hub is the manager's side of the control channel: an HTTPS endpoint
// where limiter sidecars report what they experience (internal/hubapi), the
// authentication of those reports with the pods' projected service-account tokens
// (TokenReview, audience aiquota.dev/control), an aggregator that folds them into
// per-resource state, a status writer that puts that state into the ProviderQuota,
// FallbackChain and CircuitPolicy status fields it owns at a bounded rate, and
// metrics that mirror the status for alerting.
//
// Leader election: every replica serves the endpoint, only the leader aggregates
// and writes status; followers answer 503 notLeader (see Handler). A new leader
// starts empty and rebuilds its state from the next reports, continuing the daily
// ledgers and failover totals from the status the previous leader wrote.
package hub

import (
	"cmp"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// eventSource is the reportingController of the control channel's Events.
const eventSource = "aiquota-control"

// DefaultBindAddress is where the control channel listens.
const DefaultBindAddress = ":9444"

// Options configure the control channel.
type Options struct {
	// BindAddress to listen on; "" or "0" disables the control channel.
	BindAddress string
	// CertDir holds tls.crt and tls.key, watched for changes. Used when TLSOpts do
	// not provide a certificate.
	CertDir string
	// TLSOpts adjust the serving TLS config, e.g. the manager's certificate
	// (certs.Manager.TLSOpt) or HTTP/2 settings.
	TLSOpts []func(*tls.Config)
	// StatusWriteInterval is the least time between two status writes of a resource.
	StatusWriteInterval time.Duration
	// ExpiryIntervals is how many report intervals of silence make a sidecar gone.
	ExpiryIntervals int
	// StatusWriters is how many status patches run at once.
	StatusWriters int
	// TokenCacheTTL and TokenCacheSize bound the cache of token reviews.
	TokenCacheTTL  time.Duration
	TokenCacheSize int
	// ReviewsPerSecondPerSource and ReviewBurstPerSource size the token bucket of
	// TokenReviews each source address gets; ReviewSources is how many addresses'
	// buckets are remembered.
	ReviewsPerSecondPerSource float64
	ReviewBurstPerSource      int
	ReviewSources             int
	// InjectedCacheSize bounds the pods whose injection record is remembered.
	InjectedCacheSize int

	// AccountLeases shares each account's limits among its sidecars by leases;
	// off, every sidecar enforces the full limits (the behaviour before leases,
	// kept as a baseline for benchmarks). LeaseTTL is a lease's lifetime.
	AccountLeases bool
	LeaseTTL      time.Duration

	// PodNamespace and PodName are the manager's own pod. When both are set, the
	// elected leader labels its pod with LeaderLabel, which the control channel's
	// Service selects on, so reports reach the leader directly.
	PodNamespace, PodName string

	// Now replaces the clock (tests).
	Now func() time.Time
	// Authenticator replaces the TokenReview authenticator (load tests).
	Authenticator Authenticator
	// Registerer receives the metrics; nil means controller-runtime's registry.
	Registerer prometheus.Registerer
	// Ready receives the bound address once the listener is up (tests).
	Ready chan<- net.Addr
}

// DefaultOptions are the manager's defaults.
func DefaultOptions() Options {
	return Options{
		BindAddress:         DefaultBindAddress,
		StatusWriteInterval: DefaultStatusWriteInterval,
		ExpiryIntervals:     3,
		StatusWriters:       8,
		TokenCacheTTL:       DefaultTokenCacheTTL,
		TokenCacheSize:      20000,

		ReviewsPerSecondPerSource: DefaultReviewsPerSecondPerSource,
		ReviewBurstPerSource:      DefaultReviewBurstPerSource,
		ReviewSources:             DefaultReviewSources,
		InjectedCacheSize:         DefaultInjectedCacheSize,
		AccountLeases:             true,
		LeaseTTL:                  DefaultLeaseTTL,
	}
}

// BindFlags registers the control channel's flags with o's values as defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.BindAddress, "control-bind-address", o.BindAddress, "Address of the control channel sidecars report to (HTTPS); 0 disables it.")
	fs.StringVar(&o.CertDir, "control-cert-dir", o.CertDir, "Directory with tls.crt and tls.key for the control channel; empty uses the manager's serving certificate.")
	fs.DurationVar(&o.StatusWriteInterval, "status-write-interval", o.StatusWriteInterval, "Least time between two writes of a resource's aggregated status.")
	fs.IntVar(&o.ExpiryIntervals, "control-sidecar-expiry-intervals", o.ExpiryIntervals, "Report intervals of silence after which a sidecar no longer counts as active.")
	fs.IntVar(&o.StatusWriters, "status-writers", o.StatusWriters, "Status patches of aggregated fields sent at once.")
	fs.DurationVar(&o.TokenCacheTTL, "control-token-cache-ttl", o.TokenCacheTTL, "How long a verified sidecar token is trusted before it is reviewed again (capped by the token's expiry).")
	fs.IntVar(&o.TokenCacheSize, "control-token-cache-size", o.TokenCacheSize, "Most verified tokens remembered (by hash).")
	fs.Float64Var(&o.ReviewsPerSecondPerSource, "control-token-reviews-per-source", o.ReviewsPerSecondPerSource,
		"TokenReviews per second one source address may cause (a token bucket per address; cached tokens and tokens refused unread cost none).")
	fs.IntVar(&o.ReviewBurstPerSource, "control-token-review-burst-per-source", o.ReviewBurstPerSource, "Size of each source address's token bucket of TokenReviews.")
	fs.IntVar(&o.ReviewSources, "control-token-review-sources", o.ReviewSources, "Most source addresses whose TokenReview buckets are remembered (least recently seen forgotten first).")
	fs.BoolVar(&o.AccountLeases, "account-leases", o.AccountLeases,
		"Share each ProviderQuota account's limits among its pods by leases from the leader; false: every pod enforces the full limits (the baseline before leases).")
	fs.DurationVar(&o.LeaseTTL, "account-lease-ttl", o.LeaseTTL, "How long an account lease lasts unrenewed; keep it a few report intervals.")
	fs.IntVar(&o.InjectedCacheSize, "control-injected-cache-size", o.InjectedCacheSize, "Most pods whose aiquota.dev/injected record is remembered (by pod UID).")
}

// Enabled reports whether the options ask for a control channel.
func (o *Options) Enabled() bool { return o.BindAddress != "" && o.BindAddress != "0" }

// Channel is a set-up control channel, exposed for tests and for the allocator,
// which will hang off the same aggregator.
type Channel struct {
	Aggregator *Aggregator
	Writer     *StatusWriter
	Handler    *Handler
	Metrics    *Metrics
}

// SetupWithManager adds the listener (every replica) and the status writer (leader
// only) to mgr. It returns nil, nil when the channel is disabled.
func SetupWithManager(mgr manager.Manager, o Options) (*Channel, error) {
	if !o.Enabled() {
		return nil, nil
	}
	d := DefaultOptions()
	if o.StatusWriteInterval <= 0 {
		o.StatusWriteInterval = d.StatusWriteInterval
	}
	if o.StatusWriters <= 0 {
		o.StatusWriters = d.StatusWriters
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Registerer == nil {
		o.Registerer = crmetrics.Registry
	}
	log := mgr.GetLogger().WithName("hub")
	m, err := NewMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	for _, opt := range o.TLSOpts {
		opt(tlsCfg)
	}
	if tlsCfg.GetCertificate == nil && len(tlsCfg.Certificates) == 0 {
		if o.CertDir == "" {
			return nil, errors.New("control channel: no serving certificate: set --control-cert-dir or give the manager's certificate")
		}
		cw, err := certwatcher.New(filepath.Join(o.CertDir, "tls.crt"), filepath.Join(o.CertDir, "tls.key"))
		if err != nil {
			return nil, fmt.Errorf("control channel: load the serving certificate from %s: %w", o.CertDir, err)
		}
		if err := mgr.Add(cw); err != nil {
			return nil, fmt.Errorf("control channel: watch the serving certificate: %w", err)
		}
		tlsCfg.GetCertificate = cw.GetCertificate
	}
	auth := o.Authenticator
	if auth == nil {
		auth = NewTokenReviewer(mgr.GetClient(), TokenReviewerOptions{
			TTL: o.TokenCacheTTL, MaxEntries: o.TokenCacheSize, Now: o.Now,
			OnReview:                  func(result string) { m.tokenReviews.WithLabelValues(result).Inc() },
			ReviewsPerSecondPerSource: o.ReviewsPerSecondPerSource, ReviewBurstPerSource: o.ReviewBurstPerSource, ReviewSources: o.ReviewSources,
		})
	}
	agg := NewAggregator(o.Now, o.ExpiryIntervals)
	leases := &Leases{Enabled: o.AccountLeases, TTL: cmp.Or(o.LeaseTTL, DefaultLeaseTTL), Reserve: DefaultLeaseReserve, Now: o.Now, Log: log}
	if o.AccountLeases && o.PodNamespace != "" {
		leases.Record = &HorizonRecord{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: o.PodNamespace, Holder: o.PodName}
		if err := mgr.Add(leases); err != nil {
			return nil, fmt.Errorf("control channel: add the grant horizon keeper: %w", err)
		}
	}
	ch := &Channel{
		Aggregator: agg,
		Metrics:    m,
		Handler: &Handler{
			Aggregator: agg, Authenticator: auth, Metrics: m, Log: log, Leading: mgr.Elected(),
			Leases:     leases,
			Injections: NewInjectionChecker(mgr.GetAPIReader(), o.InjectedCacheSize, o.Now),
		},
		Writer: &StatusWriter{
			Client: mgr.GetClient(), Pods: mgr.GetAPIReader(), Aggregator: agg, Metrics: m, Log: log,
			Interval: o.StatusWriteInterval, Workers: o.StatusWriters, Now: o.Now,
			Events: mgr.GetEventRecorder(eventSource),
		},
	}
	if err := mgr.Add(&Listener{Address: o.BindAddress, Handler: ch.Handler, TLS: tlsCfg, Log: log, Ready: o.Ready}); err != nil {
		return nil, fmt.Errorf("control channel: add the listener: %w", err)
	}
	if o.PodNamespace != "" && o.PodName != "" {
		if err := mgr.Add(&LeaderLabeler{Reader: mgr.GetAPIReader(), Client: mgr.GetClient(), Namespace: o.PodNamespace, Pod: o.PodName, Log: log}); err != nil {
			return nil, fmt.Errorf("control channel: add the leader labeler: %w", err)
		}
	}
	if err := mgr.Add(ch.Writer); err != nil {
		return nil, fmt.Errorf("control channel: add the status writer: %w", err)
	}
	return ch, nil
}

// The listener runs on every replica, the status writer on the leader only.
var (
	_ manager.LeaderElectionRunnable = (*Listener)(nil)
	_ manager.LeaderElectionRunnable = (*StatusWriter)(nil)
)
