package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
)

// RecorderName is the reportingController of the webhook's events.
const RecorderName = "aiquota-webhook"

// SetupWithManager registers the injector on the manager's webhook server, with
// the manager's cache for chains and quotas, its uncached reader for cache misses
// and ReplicaSets, and its events.k8s.io recorder.
func SetupWithManager(mgr manager.Manager, opts Options) (*Injector, error) {
	log := mgr.GetLogger().WithName("webhook")
	inj, err := NewInjector(opts, mgr.GetClient(), mgr.GetAPIReader(), mgr.GetEventRecorder(RecorderName), log)
	if err != nil {
		return nil, err
	}
	inj.warmer = &cacheWarmer{cache: mgr.GetCache()}
	if err := mgr.Add(inj.warmer); err != nil {
		return nil, fmt.Errorf("add the webhook's cache warm-up: %w", err)
	}
	mgr.GetWebhookServer().Register(Path, &admission.Webhook{Handler: inj})
	return inj, nil
}

// ReadyCheck fails until the chain and quota informers have synced, so that a
// replica takes admission traffic only when its first lookups are answered from
// memory.
func (inj *Injector) ReadyCheck() healthz.Checker {
	return func(*http.Request) error {
		if inj.warmer == nil || inj.warmer.synced.Load() {
			return nil
		}
		return errors.New("the webhook's FallbackChain and ProviderQuota informers have not synced yet")
	}
}

// cacheWarmer starts the informers the injector reads before the first admission
// request needs them. It runs on every replica: all of them serve the webhook.
type cacheWarmer struct {
	cache  cache.Cache
	synced atomic.Bool
}

func (w *cacheWarmer) NeedLeaderElection() bool { return false }

func (w *cacheWarmer) Start(ctx context.Context) error {
	if _, err := w.cache.GetInformer(ctx, &quotav1alpha1.FallbackChain{}); err != nil {
		return fmt.Errorf("start the FallbackChain informer: %w", err)
	}
	if _, err := w.cache.GetInformer(ctx, &quotav1alpha1.ProviderQuota{}); err != nil {
		return fmt.Errorf("start the ProviderQuota informer: %w", err)
	}
	if !w.cache.WaitForCacheSync(ctx) {
		return nil // stopping
	}
	w.synced.Store(true)
	return nil
}
