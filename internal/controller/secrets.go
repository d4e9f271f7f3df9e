package controller

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/controller/managedfields"
	"github.com/aiquota/aiquota/internal/render"
)

// Secrets: the manager never reads key material, and its role may only `get`
// Secrets: no list, no watch, so it holds no Secret in a cache and cannot enumerate
// the cluster's. A reconcile reads the metadata of each Secret its quota names (a
// metadata-only GET; annotations are dropped at once, as kubectl apply keeps the whole
// manifest, data included, in the last-applied-configuration annotation). With no
// watch to say that a Secret appeared, lost a key or went away, a quota with
// credentials is checked again every Options.SecretRecheckInterval. Chains read no
// Secrets: they take their quotas' verdict from the quotas' status, and a change of
// that verdict triggers them.
//
// A missing Secret is certain (SecretNotFound). A missing key is inferred from the
// Secret's managed fields, which record every data key some writer set, by name and
// without values (package managedfields); where they cannot be trusted, keys are
// presumed present. Neither check stops the config from rendering: a pod whose
// Secret is missing waits in ContainerCreating and starts once the Secret exists.

var secretGVK = corev1.SchemeGroupVersion.WithKind("Secret")

// DefaultSecretRecheckInterval is Options.SecretRecheckInterval's default.
const DefaultSecretRecheckInterval = time.Minute

// secretMetadata gets a Secret's metadata without its annotations; nil when the
// Secret does not exist.
func (d *deps) secretMetadata(ctx context.Context, key types.NamespacedName) (*metav1.PartialObjectMetadata, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(secretGVK)
	err := d.apiReader.Get(ctx, key, m)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get Secret %s metadata: %w", key, err)
	}
	m.Annotations = nil
	return m, nil
}

// recheckSecrets is when a quota's reconcile should run again to recheck its
// credentials, merged with the requeue it already asks for. The recheck is spread
// over 0.75-1.25 intervals, so that quotas created together (a GitOps sync applies
// hundreds at once) do not recheck in bursts.
func (d *deps) recheckSecrets(hasCredentials bool, requeue time.Duration) time.Duration {
	if !hasCredentials {
		return requeue
	}
	interval := d.opts.SecretRecheckInterval
	if requeue > 0 && requeue < interval*3/4 {
		return requeue
	}
	if interval < 2 {
		return interval
	}
	return interval*3/4 + rand.N(interval/2)
}

// problem is one unresolved reference, with the condition reason it maps to.
type problem struct {
	reason  string
	message string
}

// credentialProblems checks that each credential's Secret exists and, as far as its
// managed fields can tell, holds the named key.
func (d *deps) credentialProblems(ctx context.Context, q *quotav1alpha1.ProviderQuota) ([]problem, error) {
	var out []problem
	secrets := map[string]*metav1.PartialObjectMetadata{}
	for _, c := range q.Spec.Credentials {
		s, seen := secrets[c.Name]
		if !seen {
			var err error
			if s, err = d.secretMetadata(ctx, types.NamespacedName{Namespace: q.Namespace, Name: c.Name}); err != nil {
				return nil, err
			}
			secrets[c.Name] = s
		}
		key := render.CredentialKey(c)
		if s == nil {
			if !seen {
				out = append(out, problem{quotav1alpha1.ReasonSecretNotFound, fmt.Sprintf("Secret %q not found", c.Name)})
			}
			continue
		}
		if keys, conclusive := managedfields.DataKeys(s.ManagedFields); conclusive && !keys[key] {
			held := "it has no keys"
			if len(keys) > 0 {
				held = "its keys are " + strings.Join(sortedNames(keys), ", ")
			}
			out = append(out, problem{quotav1alpha1.ReasonSecretKeyNotFound, fmt.Sprintf(
				"Secret %q has no key %q (%s; judged from the Secret's managed fields, as the operator never reads Secret data)",
				c.Name, key, held)})
		}
	}
	return out, nil
}

func sortedNames(set map[string]bool) []string {
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	return uniqueSorted(names)
}
