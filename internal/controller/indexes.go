package controller

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
)

// Field indexes: each maps an object to the names of the objects it refers to, so a
// change to the referenced object finds its dependents with one indexed List.
const (
	// indexChainQuota: FallbackChain -> spec.entries[].providerQuotaRef.name.
	indexChainQuota = "spec.entries.providerQuotaRef.name"
	// indexChainPolicy: FallbackChain -> spec.entries[].circuitPolicyRef.name. A
	// chain also depends on its quotas' policies; that edge goes through
	// indexQuotaPolicy and indexChainQuota.
	indexChainPolicy = "spec.entries.circuitPolicyRef.name"
	// indexQuotaPolicy: ProviderQuota -> spec.circuitPolicyRef.name.
	indexQuotaPolicy = "spec.circuitPolicyRef.name"
)

func addIndexes(ctx context.Context, idx client.FieldIndexer) error {
	for _, i := range []struct {
		obj     client.Object
		field   string
		extract client.IndexerFunc
	}{
		{&quotav1alpha1.FallbackChain{}, indexChainQuota, func(o client.Object) []string {
			var names []string
			for _, e := range o.(*quotav1alpha1.FallbackChain).Spec.Entries {
				names = append(names, e.ProviderQuotaRef.Name)
			}
			return uniqueSorted(names)
		}},
		{&quotav1alpha1.FallbackChain{}, indexChainPolicy, func(o client.Object) []string {
			var names []string
			for _, e := range o.(*quotav1alpha1.FallbackChain).Spec.Entries {
				if e.CircuitPolicyRef != nil {
					names = append(names, e.CircuitPolicyRef.Name)
				}
			}
			return uniqueSorted(names)
		}},
		{&quotav1alpha1.ProviderQuota{}, indexQuotaPolicy, func(o client.Object) []string {
			if ref := o.(*quotav1alpha1.ProviderQuota).Spec.CircuitPolicyRef; ref != nil {
				return []string{ref.Name}
			}
			return nil
		}},
	} {
		if err := idx.IndexField(ctx, i.obj, i.field, i.extract); err != nil {
			return fmt.Errorf("index %T by %s: %w", i.obj, i.field, err)
		}
	}
	return nil
}

func uniqueSorted(names []string) []string {
	slices.Sort(names)
	return slices.Compact(names)
}

// dependents lists the names of objects in namespace whose index field holds value.
func dependents(ctx context.Context, c client.Reader, list client.ObjectList, namespace, field, value string) ([]string, error) {
	if err := c.List(ctx, list, client.InNamespace(namespace), client.MatchingFields{field: value}); err != nil {
		return nil, fmt.Errorf("list %T with %s=%s: %w", list, field, value, err)
	}
	var names []string
	switch l := list.(type) {
	case *quotav1alpha1.FallbackChainList:
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
	case *quotav1alpha1.ProviderQuotaList:
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
	}
	return names, nil
}

func requests(namespace string, names ...[]string) []reconcile.Request {
	var all []string
	for _, n := range names {
		all = append(all, n...)
	}
	all = uniqueSorted(all)
	out := make([]reconcile.Request, 0, len(all))
	for _, n := range all {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: namespace, Name: n}})
	}
	return out
}
