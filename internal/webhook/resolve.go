package webhook

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/naming"
)

// defaultSecretKey is the CRD default of SecretKeyRef.key, for objects that reached
// us without defaulting (they cannot through the API server, but a reader may be fed
// anything).
const defaultSecretKey = "api-key"

// credential is one Secret key the sidecar needs as a file.
type credential struct{ secret, key string }

// target is what a pod's chain or quota resolved to.
type target struct {
	configMap string
	// owner is the chain or quota the pod names: the only object whose ConfigMap
	// the limiter may load.
	owner ownerRef
	// credentials are sorted and unique.
	credentials []credential
	// providers are the provider types involved, sorted and unique.
	providers []quotav1alpha1.ProviderType
	// warnings are problems that do not stop injection (a chain entry whose
	// ProviderQuota is missing); they go into the admission response and an event.
	warnings []string
}

// ownerRef identifies the chain or quota that must control the ConfigMap.
type ownerRef struct {
	kind, name, annotation string
	uid                    types.UID
}

// secrets returns the credential Secrets' names, sorted and unique.
func (t *target) secrets() []string {
	var out []string
	for _, c := range t.credentials {
		if len(out) == 0 || out[len(out)-1] != c.secret {
			out = append(out, c.secret)
		}
	}
	return out
}

// notFoundError is a chain or quota the pod names that does not exist.
type notFoundError struct {
	kind, name, namespace, annotation string
	// detail, when set, replaces the default explanation.
	detail string
}

func (e *notFoundError) Error() string {
	if e.detail != "" {
		return e.detail
	}
	return fmt.Sprintf("%s %q named by annotation %s does not exist in namespace %q; create it or fix the annotation",
		e.kind, e.name, e.annotation, e.namespace)
}

// resolver reads chains and quotas: from the informer cache first, and from the API
// server when the cache misses, so a chain applied together with its Deployment is
// not refused because the cache lags a few milliseconds.
type resolver struct {
	cache  client.Reader
	direct client.Reader
}

// checkConfigMap refuses a ConfigMap of the rendered name that the pod's chain or
// quota does not control. Anyone who may create ConfigMaps in the namespace could
// otherwise plant one (say, before the chain exists) that points the limiter, and
// the keys it sends, at an endpoint of their choosing. The reconcilers never take
// over a ConfigMap they did not create, so a missing one is admitted: it can only
// be rendered by the owner (the sidecar's startup probe waits for it).
//
// The read is a metadata-only GET from the API server, not the cache: the
// manager caches only the ConfigMaps it labels, and a planted one need not carry
// the label; one GET per injected pod is the price.
func (r *resolver) checkConfigMap(ctx context.Context, namespace string, t *target) error {
	reader := r.direct
	if reader == nil {
		reader = r.cache
	}
	cm := &metav1.PartialObjectMetadata{}
	cm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	key := types.NamespacedName{Namespace: namespace, Name: t.configMap}
	err := reader.Get(ctx, key, cm)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get ConfigMap %s: %w", key, err)
	}
	o := t.owner
	ref := metav1.GetControllerOfNoCopy(cm)
	if ref != nil && ref.UID == o.uid && ref.Kind == o.kind && ref.Name == o.name {
		if gv, err := schema.ParseGroupVersion(ref.APIVersion); err == nil && gv.Group == quotav1alpha1.GroupVersion.Group {
			return nil
		}
	}
	controlled := "it has no controller"
	if ref != nil {
		controlled = fmt.Sprintf("its controller is %s %s", ref.Kind, quote(ref.Name))
		if ref.Kind == o.kind && ref.Name == o.name {
			controlled = fmt.Sprintf("its controller is an earlier %s of that name (uid %s)", ref.Kind, ref.UID)
		}
	}
	return &conflictError{fmt.Sprintf(
		"ConfigMap %q in namespace %q is not owned by %s %q (annotation %s): %s, so the limiter would load a configuration aiquota did not render; delete or rename that ConfigMap and aiquota renders its own",
		t.configMap, namespace, o.kind, o.name, o.annotation, controlled)}
}

func (r *resolver) get(ctx context.Context, key types.NamespacedName, obj client.Object) (bool, error) {
	err := r.cache.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) && r.direct != nil {
		err = r.direct.Get(ctx, key, obj)
	}
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %s: %w", key, err)
	}
	return true, nil
}

func (r *resolver) resolve(ctx context.Context, namespace string, req podRequest) (*target, error) {
	if req.quota != "" {
		return r.resolveQuota(ctx, namespace, req.quota)
	}
	return r.resolveChain(ctx, namespace, req.chain)
}

// getNamed reads into obj the object of kind that the pod's annotation names; a
// missing one is a notFoundError.
func (r *resolver) getNamed(ctx context.Context, namespace, name, kind, annotation string, obj client.Object) error {
	found, err := r.get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, obj)
	if err != nil {
		return err
	}
	if !found {
		return &notFoundError{kind: kind, name: name, namespace: namespace, annotation: annotation}
	}
	return nil
}

func (r *resolver) resolveQuota(ctx context.Context, namespace, name string) (*target, error) {
	var pq quotav1alpha1.ProviderQuota
	if err := r.getNamed(ctx, namespace, name, "ProviderQuota", naming.AnnotationProviderQuota, &pq); err != nil {
		return nil, err
	}
	t := &target{configMap: naming.QuotaConfigMap(name), owner: ownerRef{"ProviderQuota", name, naming.AnnotationProviderQuota, pq.UID}}
	t.add(&pq)
	t.normalize()
	return t, nil
}

func (r *resolver) resolveChain(ctx context.Context, namespace, name string) (*target, error) {
	var fc quotav1alpha1.FallbackChain
	if err := r.getNamed(ctx, namespace, name, "FallbackChain", naming.AnnotationFallbackChain, &fc); err != nil {
		return nil, err
	}
	t := &target{configMap: naming.ChainConfigMap(name), owner: ownerRef{"FallbackChain", name, naming.AnnotationFallbackChain, fc.UID}}
	var missing []string
	seen := map[string]bool{}
	for _, e := range fc.Spec.Entries {
		q := e.ProviderQuotaRef.Name
		if seen[q] {
			continue
		}
		seen[q] = true
		var pq quotav1alpha1.ProviderQuota
		found, err := r.get(ctx, types.NamespacedName{Namespace: namespace, Name: q}, &pq)
		if err != nil {
			return nil, err
		}
		if !found {
			missing = append(missing, q)
			continue
		}
		t.add(&pq)
	}
	if len(missing) > 0 && len(t.credentials) == 0 {
		// Nothing of the chain exists: the sidecar could never become ready.
		return nil, &notFoundError{
			kind: "FallbackChain", name: name, namespace: namespace, annotation: naming.AnnotationFallbackChain,
			detail: fmt.Sprintf("FallbackChain %q (annotation %s) names ProviderQuota %s, none of which exists in namespace %q; create them or fix the chain",
				name, naming.AnnotationFallbackChain, quoteList(missing), namespace),
		}
	}
	if len(missing) > 0 {
		t.warnings = append(t.warnings, fmt.Sprintf(
			"FallbackChain %q names ProviderQuota %s, which does not exist in namespace %q: its credentials are not mounted, so its entries stay unusable in this pod until the pod is recreated after creating it",
			name, quoteList(missing), namespace))
	}
	t.normalize()
	return t, nil
}

func (t *target) add(pq *quotav1alpha1.ProviderQuota) {
	for _, c := range pq.Spec.Credentials {
		key := c.Key
		if key == "" {
			key = defaultSecretKey
		}
		t.credentials = append(t.credentials, credential{secret: c.Name, key: key})
	}
	t.providers = append(t.providers, pq.Spec.Provider)
}

func (t *target) normalize() {
	slices.SortFunc(t.credentials, func(a, b credential) int {
		if c := strings.Compare(a.secret, b.secret); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	t.credentials = slices.Compact(t.credentials)
	slices.Sort(t.providers)
	t.providers = slices.Compact(t.providers)
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
