package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/testkit"
)

// fourEntryChain builds the shape of the sample chain: three quotas, one policy and
// four entries, all Ready.
func fourEntryChain(t testing.TB, ns, name string) (*quotav1alpha1.FallbackChain, []client.Object) {
	p := policy(ns, "standard", 5)
	quotas := []*quotav1alpha1.ProviderQuota{
		providerQuota(ns, "openai", "openai-key", 10000, "standard"),
		providerQuota(ns, "anthropic", "anthropic-key", 4000, ""),
		providerQuota(ns, "deepseek", "deepseek-key", 500, ""),
	}
	quotas[1].Spec.Provider = quotav1alpha1.ProviderAnthropic
	quotas[1].Spec.Models = []quotav1alpha1.ModelPool{{Name: "claude-sonnet-4", AdditionalNames: []string{"claude-sonnet-4-20250514"}}}
	quotas[2].Spec.Provider = quotav1alpha1.ProviderDeepSeek
	quotas[2].Spec.Models = []quotav1alpha1.ModelPool{{Name: "deepseek-chat"}}
	objs := []client.Object{p}
	for _, q := range quotas {
		objs = append(objs, secret(ns, q.Spec.Credentials[0].Name, "api-key"), q)
	}
	create(t, objs...)
	for _, q := range quotas {
		waitReady(t, q)
	}
	waitReady(t, p)
	chain := fallbackChain(ns, name,
		entrySpec{"openai", "gpt-5.5", "standard"}, entrySpec{"anthropic", "claude-sonnet-4", "standard"},
		entrySpec{"deepseek", "deepseek-chat", "standard"}, entrySpec{"openai", "gpt-4.1-mini", "standard"})
	create(t, chain)
	waitReady(t, chain)
	others := []client.Object{p}
	for _, q := range quotas {
		others = append(others, q)
	}
	return chain, others
}

// TestNoWritesOnResync: once an object is Ready, reconciling it again, through the
// manager or directly and however soon after its own writes, writes nothing.
func TestNoWritesOnResync(t *testing.T) {
	ns := newNamespace(t)
	chain, others := fourEntryChain(t, ns, "chat")
	chainCM := &corev1.ConfigMap{}
	chainCM.Namespace, chainCM.Name = ns, naming.ChainConfigMap("chat")

	// Reconcile at once, while the informer may not have seen the status patch and
	// ConfigMap create the Ready condition came from: the reconcilers must recognise
	// their own writes.
	reconcileDirectly(t, chain, others...)

	// One status patch and one ConfigMap create, however many reconciles ran.
	if diff := cmp.Diff(map[string]int{"status-patch": 1}, writes.of(chain)); diff != "" {
		t.Errorf("writes to the chain (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"create": 1}, writes.of(chainCM)); diff != "" {
		t.Errorf("writes to the chain's ConfigMap (-want +got):\n%s", diff)
	}

	all := append([]client.Object{chain, chainCM}, others...)
	for _, q := range others {
		if pq, ok := q.(*quotav1alpha1.ProviderQuota); ok {
			cm := &corev1.ConfigMap{}
			cm.Namespace, cm.Name = ns, naming.QuotaConfigMap(pq.Name)
			all = append(all, cm)
		}
	}
	versions := resourceVersions(t, all)
	writesBefore := writes.total()

	// A GitOps re-apply of unchanged objects. (Unstructured: a typed round trip
	// would rewrite durations such as "60s" as "1m0s", a real spec change.)
	for _, o := range append([]client.Object{chain}, others...) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(quotav1alpha1.GroupVersion.WithKind(strings.TrimPrefix(fmt.Sprintf("%T", o), "*v1alpha1.")))
		u.SetNamespace(o.GetNamespace())
		u.SetName(o.GetName())
		update(t, u, func(*unstructured.Unstructured) {})
	}
	// A reconcile forced through the manager: an unrelated edit of the ConfigMap.
	before := fallbackChainReconciles()
	update(t, chainCM, func(cm *corev1.ConfigMap) {
		if cm.Annotations == nil {
			cm.Annotations = map[string]string{}
		}
		cm.Annotations["example.com/touched"] = "yes"
	})
	testkit.Eventually(t, waitTimeout, "a reconcile of the chain after the ConfigMap edit", func() error {
		if n := fallbackChainReconciles(); n <= before {
			return fmt.Errorf("%v reconciles, %v before", n, before)
		}
		return nil
	})
	// And directly, many times.
	for range 5 {
		reconcileDirectly(t, chain, others...)
	}

	if n := writes.total() - writesBefore; n != 0 {
		t.Errorf("%d writes while nothing changed", n)
	}
	after := resourceVersions(t, all)
	for k, rv := range versions {
		if k == fmt.Sprintf("%T %s", chainCM, chainCM.Name) {
			continue // our own annotation edit
		}
		if after[k] != rv {
			t.Errorf("%s changed: resourceVersion %s -> %s", k, rv, after[k])
		}
	}
	if got := getConfigMap(t, ns, chainCM.Name); got.Annotations["example.com/touched"] != "yes" {
		t.Error("the reconciler removed an annotation it does not own")
	}
}

// TestNoReconcileLoop: a settled chain is not reconciled again, although its quotas
// recheck their Secrets every SecretRecheckInterval (unchanged verdicts reach no
// chain), and a quota's rechecks write nothing.
func TestNoReconcileLoop(t *testing.T) {
	ns := newNamespace(t)
	chain, _ := fourEntryChain(t, ns, "chat")
	// The reconcile that the ConfigMap's creation triggers may still be on its way.
	testkit.Eventually(t, waitTimeout, "chain reconciles settle", func() error {
		before := len(timed.ofChain(chain))
		time.Sleep(time.Second)
		if n := len(timed.ofChain(chain)); n != before {
			return fmt.Errorf("%v reconciles in a second", n-before)
		}
		return nil
	})
	before, writesBefore := len(timed.ofChain(chain)), writes.total()
	time.Sleep(3 * mgrDeps.opts.SecretRecheckInterval)
	if n := len(timed.ofChain(chain)) - before; n != 0 {
		t.Errorf("%v reconciles of a settled chain in %s", n, 3*mgrDeps.opts.SecretRecheckInterval)
	}
	if n := writes.total() - writesBefore; n != 0 {
		t.Errorf("%d writes while quotas rechecked unchanged Secrets", n)
	}
}

func reconcileDirectly(t *testing.T, chain client.Object, others ...client.Object) {
	t.Helper()
	ctx := context.Background()
	for _, o := range append([]client.Object{chain}, others...) {
		var r reconcile.Reconciler
		switch o.(type) {
		case *quotav1alpha1.FallbackChain:
			r = &FallbackChainReconciler{deps: mgrDeps}
		case *quotav1alpha1.ProviderQuota:
			r = &ProviderQuotaReconciler{deps: mgrDeps}
		case *quotav1alpha1.CircuitPolicy:
			r = &CircuitPolicyReconciler{deps: mgrDeps}
		}
		// Quotas with credentials come back only to check their Secrets again, in
		// 0.75-1.25 recheck intervals; nothing else asks for another reconcile.
		res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
		if err != nil {
			t.Fatalf("reconcile %T %s: %v", o, o.GetName(), err)
		}
		interval := mgrDeps.opts.SecretRecheckInterval
		if q, ok := o.(*quotav1alpha1.ProviderQuota); ok && len(q.Spec.Credentials) > 0 {
			if res.RequeueAfter < interval*3/4 || res.RequeueAfter >= interval*5/4 {
				t.Errorf("reconcile %T %s: requeue after %s, want a recheck in [%s, %s)", o, o.GetName(), res.RequeueAfter, interval*3/4, interval*5/4)
			}
			res.RequeueAfter = 0
		}
		if !res.IsZero() {
			t.Errorf("reconcile %T %s: %+v, want nothing more", o, o.GetName(), res)
		}
	}
}

func resourceVersions(t *testing.T, objs []client.Object) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range objs {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(o), o); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("%T %s", o, o.GetName())] = o.GetResourceVersion()
	}
	return out
}

// fallbackChainReconciles is controller-runtime's count of finished reconciles of
// the FallbackChain controller.
func fallbackChainReconciles() float64 {
	n, err := testkit.CounterSum(metrics.Registry, "controller_runtime_reconcile_total", "controller", "fallbackchain")
	if err != nil {
		return -1
	}
	return n
}
