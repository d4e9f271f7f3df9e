package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/testkit"
)

// timed observes every reconcile of the suite's manager: how long it took and whether
// it wrote (to the object or its ConfigMap).
var timed = &reconcileTimer{samples: map[string][]reconcileSample{}}

type reconcileSample struct {
	took  time.Duration
	wrote bool
}

type reconcileTimer struct {
	mu      sync.Mutex
	samples map[string][]reconcileSample
}

func (rt *reconcileTimer) wrap(controllerName string, r reconcile.Reconciler) reconcile.Reconciler {
	return reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
		touched := ownedObjects(controllerName, req)
		before := writes.touching(touched...)
		start := time.Now()
		res, err := r.Reconcile(ctx, req)
		s := reconcileSample{took: time.Since(start), wrote: writes.touching(touched...) != before}
		rt.mu.Lock()
		key := controllerName + " " + req.String()
		rt.samples[key] = append(rt.samples[key], s)
		rt.mu.Unlock()
		return res, err
	})
}

// ofChain returns the samples of one FallbackChain's reconciles.
func (rt *reconcileTimer) ofChain(chain client.Object) []reconcileSample {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return slices.Clone(rt.samples[controllerNameFallbackChain+" "+client.ObjectKeyFromObject(chain).String()])
}

// ownedObjects are the objects a reconcile of req may write.
func ownedObjects(controllerName string, req reconcile.Request) []client.Object {
	cm := &corev1.ConfigMap{}
	cm.Namespace = req.Namespace
	var self client.Object
	switch controllerName {
	case controllerNameFallbackChain:
		self, cm.Name = &quotav1alpha1.FallbackChain{}, naming.ChainConfigMap(req.Name)
	case controllerNameProviderQuota:
		self, cm.Name = &quotav1alpha1.ProviderQuota{}, naming.QuotaConfigMap(req.Name)
	default:
		self = &quotav1alpha1.CircuitPolicy{}
	}
	self.SetNamespace(req.Namespace)
	self.SetName(req.Name)
	return []client.Object{self, cm}
}

// touching sums the writes to objs.
func (w *writeCounts) touching(objs ...client.Object) int {
	n := 0
	for _, o := range objs {
		for _, v := range w.of(o) {
			n += v
		}
	}
	return n
}

func quantiles(ds []time.Duration) (p50, p99 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99)
}

func reportQuantiles(b *testing.B, prefix string, ds []time.Duration) {
	p50, p99 := quantiles(ds)
	b.ReportMetric(float64(p50.Microseconds())/1000, prefix+"-p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, prefix+"-p99-ms")
}

// BenchmarkChainReconcile measures reconciles of a four-entry chain (the sample's
// shape) on the suite's manager and API server:
//   - resync: a direct Reconcile of the unchanged chain (reads from the cache only);
//   - rerender: one iteration changes the chain's spec and waits for the new config;
//     reported are the reconciles that wrote (render, ConfigMap patch, status patch),
//     the no-op reconciles that followed them, and the time from the update until
//     the manager's cache holds the new ConfigMap.
func BenchmarkChainReconcile(b *testing.B) {
	ns := newNamespace(b)
	chain, _ := fourEntryChain(b, ns, "bench")
	b.Run("resync", func(b *testing.B) {
		r := &FallbackChainReconciler{deps: mgrDeps}
		req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(chain)}
		var took []time.Duration
		for b.Loop() {
			start := time.Now()
			if _, err := r.Reconcile(context.Background(), req); err != nil {
				b.Fatal(err)
			}
			took = append(took, time.Since(start))
		}
		reportQuantiles(b, "reconcile", took)
	})
	b.Run("rerender", func(b *testing.B) {
		first := len(timed.ofChain(chain))
		var e2e []time.Duration
		priority := int32(1)
		for b.Loop() {
			priority = priority%9 + 1
			p := priority
			start := time.Now()
			update(b, chain, func(c *quotav1alpha1.FallbackChain) { c.Spec.DefaultPriority = ptr.To(p) })
			testkit.Eventually(b, waitTimeout, "re-rendered config", func() error {
				cm := &corev1.ConfigMap{}
				if err := mgrDeps.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: naming.ChainConfigMap("bench")}, cm); err != nil {
					return err
				}
				if want := fmt.Sprintf("\"defaultPriority\": %d\n", p); !strings.Contains(cm.Data[naming.ConfigKey], want) {
					return fmt.Errorf("no %s yet", want)
				}
				return nil
			})
			e2e = append(e2e, time.Since(start))
		}
		var wrote, noop []time.Duration
		for _, s := range timed.ofChain(chain)[first:] {
			if s.wrote {
				wrote = append(wrote, s.took)
			} else {
				noop = append(noop, s.took)
			}
		}
		reportQuantiles(b, "wrote", wrote)
		reportQuantiles(b, "noop", noop)
		reportQuantiles(b, "e2e", e2e)
	})
}

// BenchmarkPolicyFanout measures how long a CircuitPolicy change takes to re-render
// 100 chains that use it: from the update until every chain's ConfigMap changed.
func BenchmarkPolicyFanout(b *testing.B) {
	const chains = 100
	ns := newNamespace(b)
	p := policy(ns, "shared", 5)
	create(b, p, secret(ns, "k", "api-key"), providerQuota(ns, "a", "k", 100, ""), providerQuota(ns, "b", "k", 100, ""))
	var all []*quotav1alpha1.FallbackChain
	for i := range chains {
		c := fallbackChain(ns, fmt.Sprintf("chain-%03d", i), entrySpec{"a", "gpt-5.5", "shared"}, entrySpec{"b", "gpt-4.1-mini", "shared"})
		create(b, c)
		all = append(all, c)
	}
	for _, c := range all {
		waitReady(b, c)
	}
	versions := func() map[string]string {
		list := &corev1.ConfigMapList{}
		if err := mgrDeps.client.List(context.Background(), list, client.InNamespace(ns), client.MatchingLabels{naming.LabelConfigFor: "fallbackchain"}); err != nil {
			b.Fatal(err)
		}
		out := map[string]string{}
		for _, cm := range list.Items {
			out[cm.Name] = cm.ResourceVersion
		}
		return out
	}
	testkit.Eventually(b, waitTimeout, "all ConfigMaps in the cache", func() error {
		if n := len(versions()); n != chains {
			return fmt.Errorf("%d ConfigMaps", n)
		}
		return nil
	})
	threshold := int32(5)
	var took []time.Duration
	for b.Loop() {
		before := versions()
		threshold = threshold%100 + 1
		th := threshold
		start := time.Now()
		update(b, p, func(p *quotav1alpha1.CircuitPolicy) { p.Spec.FailureThreshold = th })
		testkit.Eventually(b, waitTimeout, "every chain re-rendered", func() error {
			changed := 0
			for name, rv := range versions() {
				if before[name] != rv {
					changed++
				}
			}
			if changed != chains {
				return fmt.Errorf("%d of %d re-rendered", changed, chains)
			}
			return nil
		})
		took = append(took, time.Since(start))
	}
	reportQuantiles(b, "fanout", took)
}
