package certs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// The manager reads and writes one Secret in its own namespace (config/webhook
// grants that with a Role); cluster-wide it only touches the webhook configuration:
// get and update by name (the chart's hack/chartsync substitutes the release's name
// for aiquota-pod-injector, --cert-webhook-config). The rotator's cache lists and
// watches webhook configurations without a field selector, which RBAC can only
// allow for all of them.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;update,resourceNames=aiquota-pod-injector
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=list;watch

// fieldOwner is the field manager of the caBundle writes.
const fieldOwner = "aiquota-manager"

// SetupWithManager makes sure the Secret exists (self-signed mode), adds the
// rotator (self-signed mode) and the Secret watcher that loads the certificate on
// every replica.
func (m *Manager) SetupWithManager(ctx context.Context, mgr manager.Manager) error {
	log := mgr.GetLogger().WithName("certs")
	m.reader = mgr.GetAPIReader()
	if m.opts.Mode == ModeSelfSigned {
		if err := m.bootstrap(ctx, mgr.GetAPIReader(), mgr.GetClient(), log); err != nil {
			return err
		}
		names := m.opts.DNSNames()
		r := &rotator.CertRotator{
			SecretKey:              types.NamespacedName{Namespace: m.opts.Namespace, Name: m.opts.SecretName},
			CertDir:                m.opts.CertDir,
			CAName:                 "aiquota-ca",
			CAOrganization:         "aiquota",
			DNSName:                names[0],
			ExtraDNSNames:          names[1:],
			IsReady:                make(chan struct{}),
			FieldOwner:             fieldOwner,
			RequireLeaderElection:  false, // every replica serves; writes are optimistic
			CaCertDuration:         m.opts.CAValidity,
			ServerCertDuration:     m.opts.CertValidity,
			LookaheadInterval:      m.opts.RenewBefore,
			RotationCheckFrequency: m.opts.CheckInterval,
			// Controller names are unique per process; the Secret makes it so.
			ControllerName: "aiquota-cert-rotator-" + m.opts.Namespace + "-" + m.opts.SecretName,
		}
		if m.opts.WebhookConfigName != "" {
			r.Webhooks = []rotator.WebhookInfo{{Name: m.opts.WebhookConfigName, Type: rotator.Mutating}}
		}
		if err := rotator.AddRotator(mgr, r); err != nil {
			return fmt.Errorf("add the certificate rotator: %w", err)
		}
	}
	w := &secretWatcher{m: m, mgr: mgr, log: log}
	if err := mgr.Add(w); err != nil {
		return fmt.Errorf("add the certificate Secret watcher: %w", err)
	}
	return nil
}

// bootstrap creates the Secret when it is missing (the rotator only updates it),
// and drops a serving certificate that does not cover every wanted name, so that
// adding a name (the control channel's Service) takes effect on the next start
// instead of at the certificate's expiry. The CA is kept: the caBundle stays valid.
func (m *Manager) bootstrap(ctx context.Context, reader client.Reader, writer client.Client, log logr.Logger) error {
	key := types.NamespacedName{Namespace: m.opts.Namespace, Name: m.opts.SecretName}
	return wait.ExponentialBackoffWithContext(ctx, wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Steps: 8}, func(ctx context.Context) (bool, error) {
		var s corev1.Secret
		err := reader.Get(ctx, key, &s)
		switch {
		case apierrors.IsNotFound(err):
			s = corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{"app.kubernetes.io/managed-by": "aiquota"}},
				Type:       corev1.SecretTypeOpaque,
			}
			if err := writer.Create(ctx, &s); err != nil && !apierrors.IsAlreadyExists(err) {
				log.Info("creating the certificate Secret failed; retrying", "secret", klog.KRef(key.Namespace, key.Name), "error", err)
				return false, nil
			}
			log.Info("created the certificate Secret", "secret", klog.KRef(key.Namespace, key.Name))
			return true, nil
		case err != nil:
			log.Info("reading the certificate Secret failed; retrying", "secret", klog.KRef(key.Namespace, key.Name), "error", err)
			return false, nil
		}
		if crt := s.Data[CertFile]; len(crt) > 0 && !covers(crt, m.opts.DNSNames()) {
			delete(s.Data, CertFile)
			delete(s.Data, KeyFile)
			if err := writer.Update(ctx, &s); err != nil {
				log.Info("dropping the outdated serving certificate failed; retrying", "secret", klog.KRef(key.Namespace, key.Name), "error", err)
				return false, nil
			}
			log.Info("dropped a serving certificate that does not cover every DNS name; a new one will be issued", "secret", klog.KRef(key.Namespace, key.Name), "dnsNames", m.opts.DNSNames())
		}
		return true, nil
	})
}

// secretWatcher loads the certificate from the Secret on every change. It has a
// cache of its own that holds this one Secret, and runs on every replica.
type secretWatcher struct {
	m   *Manager
	mgr manager.Manager
	log logr.Logger
}

func (w *secretWatcher) NeedLeaderElection() bool { return false }

func (w *secretWatcher) Start(ctx context.Context) error {
	o := w.m.opts
	c, err := cache.New(w.mgr.GetConfig(), cache.Options{
		HTTPClient:        w.mgr.GetHTTPClient(),
		Scheme:            w.mgr.GetScheme(),
		Mapper:            w.mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{o.Namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Field: fields.OneTermEqualSelector("metadata.name", o.SecretName)},
		},
	})
	if err != nil {
		return fmt.Errorf("certificate Secret cache: %w", err)
	}
	inf, err := c.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("certificate Secret informer: %w", err)
	}
	handle := func(obj any) {
		s, ok := obj.(*corev1.Secret)
		if !ok || s.Name != o.SecretName {
			return
		}
		changed, err := w.m.load(s.Data)
		switch {
		case err != nil:
			w.log.Info("certificate not loaded", "error", err)
		case changed:
			b := w.m.current.Load()
			w.log.Info("serving certificate loaded", "secret", klog.KRef(o.Namespace, o.SecretName), "dnsNames", b.leaf.DNSNames,
				"notAfter", b.leaf.NotAfter.UTC().Format(time.RFC3339), "dir", o.CertDir)
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
	}); err != nil {
		return fmt.Errorf("certificate Secret handler: %w", err)
	}
	return c.Start(ctx)
}

// ReadyCheck passes when a certificate is loaded, has not expired, and every
// webhook of WebhookConfigName has a caBundle that trusts it.
func (m *Manager) ReadyCheck() healthz.Checker {
	return func(*http.Request) error {
		b := m.current.Load()
		if b == nil {
			return fmt.Errorf("no serving certificate loaded yet from Secret %s/%s", m.opts.Namespace, m.opts.SecretName)
		}
		if now := time.Now(); now.After(b.leaf.NotAfter) {
			return fmt.Errorf("the serving certificate expired at %s", b.leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		if m.opts.WebhookConfigName == "" {
			return nil
		}
		return m.caTrusted.check(b, func() error { return m.checkCABundle(b) })
	}
}

func (m *Manager) checkCABundle(b *bundle) error {
	if m.reader == nil {
		return errors.New("the certificate manager is not set up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wc admissionregistrationv1.MutatingWebhookConfiguration
	if err := m.reader.Get(ctx, types.NamespacedName{Name: m.opts.WebhookConfigName}, &wc); err != nil {
		return fmt.Errorf("read MutatingWebhookConfiguration %s: %w", m.opts.WebhookConfigName, err)
	}
	name := m.opts.DNSNames()[0]
	for _, wh := range wc.Webhooks {
		if err := verifyWith(b.leaf, wh.ClientConfig.CABundle, name, time.Now()); err != nil {
			return fmt.Errorf("the caBundle of webhook %s in MutatingWebhookConfiguration %s does not trust the serving certificate yet: %w", wh.Name, m.opts.WebhookConfigName, err)
		}
	}
	return nil
}

// trustCache remembers a passed caBundle check for a short while, so readiness
// probes do not read the webhook configuration every time; failures are
// re-checked at every probe.
type trustCache struct {
	mu     sync.Mutex
	passed *bundle
	at     time.Time
}

const trustTTL = 10 * time.Second

func (t *trustCache) check(b *bundle, check func() error) error {
	t.mu.Lock()
	if t.passed == b && time.Since(t.at) < trustTTL {
		t.mu.Unlock()
		return nil
	}
	t.mu.Unlock()
	if err := check(); err != nil {
		return err
	}
	t.mu.Lock()
	t.passed, t.at = b, time.Now()
	t.mu.Unlock()
	return nil
}

func (t *trustCache) reset() {
	t.mu.Lock()
	t.passed = nil
	t.mu.Unlock()
}
