package controller

import (
	"context"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/controller/managedfields"
	"github.com/aiquota/aiquota/internal/render"
)

// Secrets: the manager never reads key material. It watches Secret metadata only
// (name, labels, managed fields) through the owned cache, which drops annotations
// before storing anything: kubectl apply keeps the whole manifest, data included, in
// the last-applied-configuration annotation.
//
// A missing Secret is certain (SecretNotFound). A missing key is inferred from the
// Secret's managed fields, which record every data key some writer set, by name and
// without values (package managedfields); where they cannot be trusted, keys are
// presumed present. Neither check stops the config from rendering: a pod whose
// Secret is missing waits in ContainerCreating and starts once the Secret exists.

var secretGVK = corev1.SchemeGroupVersion.WithKind("Secret")

func secretMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(secretGVK)
	return m
}

// stripSecretMetadata is the owned cache's transform: it runs before an object is
// stored or handed to an event handler.
func stripSecretMetadata(obj any) (any, error) {
	switch o := obj.(type) {
	case *metav1.PartialObjectMetadata:
		// Secrets are the only kind this cache holds as metadata.
		o.Annotations = nil
	case *corev1.Secret:
		// Never requested; if someone ever asks the cache for a typed Secret, it
		// still holds no key material.
		o.Annotations, o.Data, o.StringData = nil, nil, nil
	}
	return obj, nil
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
			s = secretMetadata()
			err := d.owned.Get(ctx, types.NamespacedName{Namespace: q.Namespace, Name: c.Name}, s)
			switch {
			case apierrors.IsNotFound(err):
				s = nil
			case err != nil:
				return nil, fmt.Errorf("get Secret %s/%s metadata: %w", q.Namespace, c.Name, err)
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

type secretKeys struct {
	keys       map[string]bool
	conclusive bool
}

func keysOf(m *metav1.PartialObjectMetadata) secretKeys {
	k, c := managedfields.DataKeys(m.ManagedFields)
	return secretKeys{k, c}
}

// secretChanged passes what can change a credential check: a Secret appearing,
// disappearing, or its recorded keys changing. Rotating a key's value does not.
var secretChanged = predicate.TypedFuncs[*metav1.PartialObjectMetadata]{
	UpdateFunc: func(e event.TypedUpdateEvent[*metav1.PartialObjectMetadata]) bool {
		before, after := keysOf(e.ObjectOld), keysOf(e.ObjectNew)
		return before.conclusive != after.conclusive || !maps.Equal(before.keys, after.keys)
	},
}

func sortedNames(set map[string]bool) []string {
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	return uniqueSorted(names)
}
