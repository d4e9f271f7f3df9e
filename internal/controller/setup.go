// Package controller holds one reconciler per aiquota kind. The ProviderQuota and
// FallbackChain reconcilers resolve references, render the limiter configuration
// (internal/render) into a ConfigMap they own, and write the reconciler-owned status
// fields; the CircuitPolicy reconciler validates policies. Every dependency edge is a
// field index, so a change re-reconciles exactly the objects it affects.
package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/render"
)

// Events go through the manager's events.k8s.io recorder (GetEventRecorder); only
// leader election writes core Events, in the manager's own namespace.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Options are the manager-wide facts every rendered config carries.
type Options struct {
	// ControlURL is the https URL of the control channel as sidecars reach it (e.g.
	// https://aiquota-control.aiquota-system.svc:8443/v1/report). Empty renders no
	// control section: sidecars then run on their static limits alone.
	ControlURL string
	// ReportInterval is how often sidecars report; 0 means render.DefaultReportInterval.
	ReportInterval time.Duration
	// CABundleFile is a PEM file with the CA that signed the control channel's serving
	// certificate. Its contents go into every rendered ConfigMap as ca.crt and the
	// config points the sidecar at it. Empty: no ca.crt, sidecars use system roots.
	// The file is re-read every CABundlePollInterval and a change re-renders every
	// config, so a CA that appears or rotates after startup reaches the pods.
	CABundleFile string
	// CABundlePollInterval defaults to one minute.
	CABundlePollInterval time.Duration
	// CASource, when set, announces CA changes as they happen (the manager's
	// certificate manager), so a new CA reaches rendered configs at once instead of
	// at the next poll. The file stays the source of the bytes; polling remains as a
	// backstop.
	CASource interface{ OnCAChange(func(caPEM []byte)) }
	// MaxConcurrentReconciles per kind; default 2 (the work is mostly waiting on the
	// API server, so a little concurrency shortens fan-outs such as a policy change
	// re-rendering many chains).
	MaxConcurrentReconciles int
	// SecretRecheckInterval is how often a quota's credential Secrets are checked
	// again (no watch on Secrets: the role may only get them); default
	// DefaultSecretRecheckInterval.
	SecretRecheckInterval time.Duration
}

// Controller names, as in controller-runtime's metrics and logs.
const (
	controllerNameCircuitPolicy = "circuitpolicy"
	controllerNameProviderQuota = "providerquota"
	controllerNameFallbackChain = "fallbackchain"
)

// eventSource is the reportingController of our Events.
const eventSource = "aiquota-manager"

// SetupWithManager registers every reconciler with the manager.
func SetupWithManager(mgr ctrl.Manager, opts Options) error {
	_, err := setup(mgr, opts, func(_ string, r reconcile.Reconciler) reconcile.Reconciler { return r })
	return err
}

// setup registers the reconcilers, each through wrap (tests observe them with it).
func setup(mgr ctrl.Manager, opts Options, wrap wrapFunc) (*deps, error) {
	d, err := newDeps(mgr, opts)
	if err != nil {
		return nil, err
	}
	if err := (&CircuitPolicyReconciler{deps: d}).setup(mgr, wrap); err != nil {
		return nil, err
	}
	if err := (&ProviderQuotaReconciler{deps: d}).setup(mgr, wrap); err != nil {
		return nil, err
	}
	if err := (&FallbackChainReconciler{deps: d}).setup(mgr, wrap); err != nil {
		return nil, err
	}
	return d, nil
}

// wrapFunc wraps a reconciler as it is registered (tests observe them with it).
type wrapFunc func(controllerName string, r reconcile.Reconciler) reconcile.Reconciler

// newController starts the builder every reconciler shares: named, reconciling obj
// when its spec changes or one of also says so, with the configured concurrency.
// Status writes (ours, and the control channel's frequent ones) do not change the
// generation, so only those that also names trigger a reconcile.
func (d *deps) newController(mgr ctrl.Manager, name string, obj client.Object, also ...predicate.Predicate) *builder.Builder {
	return ctrl.NewControllerManagedBy(mgr).
		Named(name).
		For(obj, builder.WithPredicates(predicate.Or(append([]predicate.Predicate{predicate.GenerationChangedPredicate{}}, also...)...))).
		WithOptions(controller.Options{MaxConcurrentReconciles: d.opts.MaxConcurrentReconciles})
}

// complete registers r, built by b, through wrap. A kind whose configs carry the CA
// bundle passes newList: a change of the bundle then requeues every object of the
// kind, listed with it.
func (d *deps) complete(b *builder.Builder, name, kind string, r reconcile.Reconciler, wrap wrapFunc, newList func() client.ObjectList) error {
	if newList != nil && d.ca != nil {
		b = b.WatchesRawSource(source.Channel(d.ca.subscribe(), handler.EnqueueRequestsFromMapFunc(d.requeueAll(kind, newList))))
	}
	if err := b.Complete(wrap(name, r)); err != nil {
		return fmt.Errorf("set up the %s controller: %w", kind, err)
	}
	return nil
}

// requeueAll answers a change of the CA bundle, which every config carries.
func (d *deps) requeueAll(kind string, newList func() client.ObjectList) handler.MapFunc {
	return func(ctx context.Context, _ client.Object) []reconcile.Request {
		list := newList()
		if err := d.client.List(ctx, list); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "cannot list objects to re-render them with the new CA bundle", "kind", kind)
			return nil
		}
		out := make([]reconcile.Request, 0, meta.LenList(list))
		_ = meta.EachListItem(list, func(o runtime.Object) error {
			if obj, ok := o.(client.Object); ok {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
			}
			return nil
		})
		return out
	}
}

// deps is what the reconcilers share.
type deps struct {
	// client is the manager's: our kinds and the ConfigMaps we render come from its
	// cache (see CacheOptions).
	client client.Client
	// apiReader reads uncached, for the ConfigMaps the cache cannot see (see
	// currentConfigMap).
	apiReader client.Reader
	recorder  eventRecorder
	opts      Options
	render    render.Options
	ca        *caBundle // nil without a CA bundle file
	writes    *lastWrites
}

func newDeps(mgr ctrl.Manager, opts Options) (*deps, error) {
	if opts.MaxConcurrentReconciles <= 0 {
		opts.MaxConcurrentReconciles = 2
	}
	if opts.SecretRecheckInterval <= 0 {
		opts.SecretRecheckInterval = DefaultSecretRecheckInterval
	}
	if err := addIndexes(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}
	d := &deps{
		client:    mgr.GetClient(),
		apiReader: mgr.GetAPIReader(),
		recorder:  mgr.GetEventRecorder(eventSource),
		opts:      opts,
		writes:    newLastWrites(),
	}
	if opts.ControlURL != "" {
		d.render.Control = &render.Control{URL: opts.ControlURL, ReportInterval: opts.ReportInterval, WithCA: opts.CABundleFile != ""}
	}
	if opts.CABundleFile != "" {
		d.ca = newCABundle(opts.CABundleFile, opts.CABundlePollInterval)
		if opts.CASource != nil {
			opts.CASource.OnCAChange(func([]byte) { d.ca.refresh() })
		}
		if err := mgr.Add(d.ca); err != nil {
			return nil, fmt.Errorf("add the CA bundle watcher to the manager: %w", err)
		}
	}
	return d, nil
}

// CacheOptions are the manager's cache options the reconcilers rely on: ConfigMaps
// are cached only when labelled as rendered by us. Without the selector the cache
// would hold every ConfigMap in the cluster (Helm releases, kube-system data); with
// it, a ConfigMap of one of our names that lacks the label is invisible to the
// cache, which currentConfigMap accounts for. Secrets are never cached (see
// secrets.go).
//
// watchNamespaces, when not empty, restricts every namespaced object the cache
// holds (our kinds, rendered ConfigMaps) to those namespaces: a namespace-scoped
// install, whose Roles grant nothing elsewhere. Cluster-scoped objects are not
// affected.
func CacheOptions(watchNamespaces []string) (cache.Options, error) {
	rendered, err := labels.NewRequirement(naming.LabelConfigFor, selection.Exists, nil)
	if err != nil {
		return cache.Options{}, fmt.Errorf("label selector for rendered ConfigMaps: %w", err)
	}
	o := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {Label: labels.NewSelector().Add(*rendered)},
		},
	}
	if len(watchNamespaces) > 0 {
		o.DefaultNamespaces = make(map[string]cache.Config, len(watchNamespaces))
		for _, ns := range watchNamespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return o, nil
}
