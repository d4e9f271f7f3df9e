package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/render"
)

const kindFallbackChain = "FallbackChain"

// FallbackChainReconciler resolves a chain's quotas and policies and renders its config.
type FallbackChainReconciler struct {
	*deps
}

// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=fallbackchains,verbs=get;list;watch
// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=fallbackchains/status,verbs=get;patch
// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=fallbackchains/finalizers,verbs=update
// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=providerquotas,verbs=get;list;watch
// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=circuitpolicies,verbs=get;list;watch
// Rendered ConfigMaps are created, then changed by merge patches only (configmap.go);
// list and watch feed the cache of labelled ConfigMaps (newOwnedCache).
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;patch

func (r *FallbackChainReconciler) setup(mgr ctrl.Manager, wrap wrapFunc) error {
	generation := builder.WithPredicates(predicate.GenerationChangedPredicate{})
	b := r.newController(mgr, controllerNameFallbackChain, &quotav1alpha1.FallbackChain{}).
		// A quota's spec, and its verdict on its credential Secrets (the quota
		// rechecks those; the chain takes its word), but not the control channel's
		// frequent utilisation writes.
		Watches(&quotav1alpha1.ProviderQuota{}, handler.EnqueueRequestsFromMapFunc(r.chainsForQuota),
			builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, credentialVerdictChanged))).
		Watches(&quotav1alpha1.CircuitPolicy{}, handler.EnqueueRequestsFromMapFunc(r.chainsForPolicy), generation).
		Owns(&corev1.ConfigMap{})
	return r.complete(b, controllerNameFallbackChain, kindFallbackChain, r, wrap,
		func() client.ObjectList { return &quotav1alpha1.FallbackChainList{} })
}

// Reconcile brings one FallbackChain's ConfigMap and status up to date.
func (r *FallbackChainReconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	chain, err := reconciled[quotav1alpha1.FallbackChain](ctx, r.deps, kindFallbackChain, req.NamespacedName)
	if chain == nil || err != nil {
		return ctrl.Result{}, err
	}
	before := chain.DeepCopy()

	res, err := r.resolve(ctx, chain)
	if err != nil {
		return ctrl.Result{}, err
	}
	resolved := condition(quotav1alpha1.ConditionReferencesResolved, true, quotav1alpha1.ReasonResolved,
		fmt.Sprintf("the ProviderQuotas and CircuitPolicies of all %d entries exist", len(chain.Spec.Entries)))
	if len(res.missing) > 0 {
		resolved = condition(quotav1alpha1.ConditionReferencesResolved, false,
			firstReason(res.missing, quotav1alpha1.ReasonProviderQuotaNotFound, quotav1alpha1.ReasonCircuitPolicyNotFound),
			joinProblems(res.missing))
	}

	cmName := naming.ChainConfigMap(chain.Name)
	current, err := r.currentConfigMap(ctx, chain.Namespace, cmName)
	if err != nil {
		return ctrl.Result{}, err
	}
	// What exists is rendered, so that pods the webhook admitted start and use it;
	// the config follows when a missing object appears (see docs/ARCHITECTURE.md).
	var pub published
	partial := append(slices.Clone(res.missing), res.rejected...)
	if len(res.render.Spec.Entries) == 0 {
		pub = r.blocked(chain, cmName, current, quotav1alpha1.ReasonReferencesUnresolved, "no entry can be used: "+joinProblems(partial)+".")
	} else {
		pub = r.publish(ctx, chain, kindFallbackChain, cmName, current, func() (*limiterconfig.Config, error) {
			return render.Chain(res.render, res.quotas, res.policies, r.render)
		})
		markPartial(r.recorder, chain, &pub, partial,
			"Entries whose ProviderQuota is missing, or whose model their quota rejects, are left out, and a missing CircuitPolicy is replaced by the policy that applies without it")
	}
	announceRendered(r.recorder, chain, pub, current)
	partialReady := condition(quotav1alpha1.ConditionReady, len(partial) == 0, quotav1alpha1.ReasonRenderedPartially, joinProblems(partial))
	// Quotas that exist but lack their Secrets do not block the config (pods wait for
	// the Secret and start when it appears), but the chain is not ready to serve.
	quotasReady := condition(quotav1alpha1.ConditionReady, true, quotav1alpha1.ReasonReady, "")
	if len(res.notReady) > 0 {
		quotasReady = condition(quotav1alpha1.ConditionReady, false, quotav1alpha1.ReasonProviderQuotaNotReady, joinProblems(res.notReady))
	}

	chain.Status.ObservedGeneration = chain.Generation
	setConditions(&chain.Status.Conditions, chain.Generation, resolved, pub.condition, readyOf(resolved, pub.condition, partialReady, quotasReady))
	chain.Status.ResolvedEntries = res.entries
	chain.Status.ConfigMapName = pub.configMapName
	if err := r.patchStatus(ctx, kindFallbackChain, chain, before, &before.Status, &chain.Status); err != nil {
		return ctrl.Result{}, err
	}
	announceReady(r.recorder, chain, before.Status.Conditions, chain.Status.Conditions,
		fmt.Sprintf("ready: pods annotated %s=%s use ConfigMap %s", naming.AnnotationFallbackChain, chain.Name, cmName))
	if pub.err != nil {
		// controller-runtime ignores a delay returned with an error; the error's
		// backoff decides when to look again.
		return ctrl.Result{}, pub.err
	}
	return ctrl.Result{RequeueAfter: pub.retryAfter}, nil
}

// chainResolution is what a chain's references resolved to.
type chainResolution struct {
	quotas   []quotav1alpha1.ProviderQuota
	policies []quotav1alpha1.CircuitPolicy
	entries  []quotav1alpha1.ResolvedEntry
	// render is the chain as rendered: the entries that can be used, with
	// references to missing policies dropped (the policy that applies without
	// them is used); quotas whose policy is missing are rendered likewise.
	render *quotav1alpha1.FallbackChain
	// missing are references that do not exist.
	missing []problem
	// rejected are entries for a model their quota does not list and rejects.
	rejected []problem
	// notReady are quotas whose credentials are missing.
	notReady []problem
}

// resolve looks up every quota and policy the chain depends on: each entry's quota,
// the entry's policy, and the quota's own policy (the rendered provider names it, and
// entries without a policy of their own use it).
func (r *FallbackChainReconciler) resolve(ctx context.Context, chain *quotav1alpha1.FallbackChain) (*chainResolution, error) {
	rv := &resolver{
		ctx: ctx, client: r.client, namespace: chain.Namespace,
		quotas: map[string]*quotav1alpha1.ProviderQuota{}, policies: map[string]*quotav1alpha1.CircuitPolicy{},
		missingAt: map[missingRef][]string{},
	}
	res := &chainResolution{render: chain.DeepCopy()}
	res.render.Spec.Entries = nil
	for i, e := range chain.Spec.Entries {
		at := fmt.Sprintf("spec.entries[%d]", i)
		entry, rendered, err := rv.entry(at, e)
		if err != nil {
			return nil, err
		}
		res.entries = append(res.entries, entry)
		switch {
		case rendered != nil:
			res.render.Spec.Entries = append(res.render.Spec.Entries, *rendered)
		case entry.Provider != "":
			// The quota exists, so the entry was left out for its model.
			res.rejected = append(res.rejected, problem{quotav1alpha1.ReasonRenderedPartially, fmt.Sprintf("%s: %s", at, rejectedModel(e.Model, e.ProviderQuotaRef.Name))})
		}
	}
	res.missing = rv.missing()
	for _, name := range sortedKeys(rv.quotas) {
		q := rv.quotas[name]
		if q == nil {
			continue
		}
		if ref := q.Spec.CircuitPolicyRef; ref != nil && rv.policies[ref.Name] == nil {
			// Rendered with the built-in defaults until the policy exists.
			q = q.DeepCopy()
			q.Spec.CircuitPolicyRef = nil
		}
		res.quotas = append(res.quotas, *q)
		if msg := credentialVerdict(q); msg != "" {
			res.notReady = append(res.notReady, problem{quotav1alpha1.ReasonProviderQuotaNotReady, fmt.Sprintf("ProviderQuota %q: %s", q.Name, msg)})
		}
	}
	for _, name := range sortedKeys(rv.policies) {
		if p := rv.policies[name]; p != nil {
			res.policies = append(res.policies, *p)
		}
	}
	return res, nil
}

// resolver reads each referenced object once per resolve (nil for one that does not
// exist) and collects, per missing object, the entries that need it, so that each
// missing object is one problem however many entries name it.
type resolver struct {
	ctx       context.Context
	client    client.Client
	namespace string
	quotas    map[string]*quotav1alpha1.ProviderQuota
	policies  map[string]*quotav1alpha1.CircuitPolicy
	missingAt map[missingRef][]string
	order     []missingRef
}

// missingRef is an object a chain needs and does not find; via names the quota that
// refers to it, when the chain does not name it itself.
type missingRef struct{ kind, name, via string }

func (rv *resolver) miss(k missingRef, at string) {
	if _, ok := rv.missingAt[k]; !ok {
		rv.order = append(rv.order, k)
	}
	rv.missingAt[k] = append(rv.missingAt[k], at)
}

// entry resolves one chain entry, at field path at, and returns it as rendered: nil
// when it is left out of the config (its quota is missing, or rejects its model).
func (rv *resolver) entry(at string, e quotav1alpha1.ChainEntry) (quotav1alpha1.ResolvedEntry, *quotav1alpha1.ChainEntry, error) {
	entry := quotav1alpha1.ResolvedEntry{ProviderQuota: e.ProviderQuotaRef.Name, Model: e.Model, Resolved: true}
	var gaps []string
	q, err := lookup(rv.ctx, rv.client, rv.namespace, kindProviderQuota, e.ProviderQuotaRef.Name, rv.quotas)
	if err != nil {
		return entry, nil, err
	}
	var quotaPolicy string
	if q == nil {
		gaps = append(gaps, fmt.Sprintf("ProviderQuota %q not found: the entry is left out of the config until it exists", e.ProviderQuotaRef.Name))
		rv.miss(missingRef{kind: kindProviderQuota, name: e.ProviderQuotaRef.Name}, at)
	} else {
		entry.Provider = q.Spec.Provider
		if q.Spec.CircuitPolicyRef != nil {
			quotaPolicy = q.Spec.CircuitPolicyRef.Name
		}
	}
	entry.CircuitPolicy = quotaPolicy
	entryPolicyMissing := false
	if e.CircuitPolicyRef != nil {
		entry.CircuitPolicy = e.CircuitPolicyRef.Name
		p, err := lookup(rv.ctx, rv.client, rv.namespace, kindCircuitPolicy, e.CircuitPolicyRef.Name, rv.policies)
		if err != nil {
			return entry, nil, err
		}
		if p == nil {
			entryPolicyMissing = true
			gaps = append(gaps, fmt.Sprintf("CircuitPolicy %q not found: until it exists the entry has the policy it would have without it", e.CircuitPolicyRef.Name))
			rv.miss(missingRef{kind: kindCircuitPolicy, name: e.CircuitPolicyRef.Name}, at)
		}
	}
	// The quota's policy is rendered even when the entry names its own: the
	// rendered provider refers to it.
	if quotaPolicy != "" && (e.CircuitPolicyRef == nil || e.CircuitPolicyRef.Name != quotaPolicy) {
		p, err := lookup(rv.ctx, rv.client, rv.namespace, kindCircuitPolicy, quotaPolicy, rv.policies)
		if err != nil {
			return entry, nil, err
		}
		if p == nil {
			gaps = append(gaps, fmt.Sprintf("CircuitPolicy %q, named by ProviderQuota %q, not found: until it exists the quota's calls have the built-in defaults", quotaPolicy, q.Name))
			rv.miss(missingRef{kind: kindCircuitPolicy, name: quotaPolicy, via: q.Name}, at)
		}
	}
	// Gaps so far are missing references; a rejected model is not one.
	entry.Resolved = len(gaps) == 0
	var rendered *quotav1alpha1.ChainEntry
	switch {
	case q == nil:
	case !listsModel(q, e.Model) && q.Spec.UnlistedModels == quotav1alpha1.UnlistedModelsReject:
		gaps = append(gaps, rejectedModel(e.Model, q.Name))
	default:
		rendered = e.DeepCopy()
		if entryPolicyMissing {
			rendered.CircuitPolicyRef = nil
		}
	}
	if len(gaps) > 0 {
		entry.Message = strings.Join(gaps, "; ")
	} else if !listsModel(q, e.Model) {
		// Allowed, as for any request to a quota. Said here because it is easy
		// to miss that the model then shares the quota's spec.limits with every
		// other unlisted model.
		entry.Message = fmt.Sprintf("model %q is not in ProviderQuota %q's model pools: it shares the pool of unlisted models, with the quota's spec.limits", e.Model, q.Name)
	}
	return entry, rendered, nil
}

func rejectedModel(model, quota string) string {
	return fmt.Sprintf("model %q is not in ProviderQuota %q's model pools, and the quota rejects unlisted models: the entry is left out of the config", model, quota)
}

// missing is one problem per missing object, in the order entries first named them.
func (rv *resolver) missing() []problem {
	var out []problem
	for _, k := range rv.order {
		reason := quotav1alpha1.ReasonCircuitPolicyNotFound
		if k.kind == kindProviderQuota {
			reason = quotav1alpha1.ReasonProviderQuotaNotFound
		}
		via := ""
		if k.via != "" {
			via = fmt.Sprintf(", named by ProviderQuota %q,", k.via)
		}
		out = append(out, problem{reason, fmt.Sprintf("%s %q%s not found (%s)", k.kind, k.name, via, strings.Join(rv.missingAt[k], ", "))})
	}
	return out
}

// lookup reads a namespaced object once; seen remembers it, nil if it does not exist.
func lookup[T any, P interface {
	*T
	client.Object
}](ctx context.Context, c client.Client, namespace, kind, name string, seen map[string]P) (P, error) {
	if o, ok := seen[name]; ok {
		return o, nil
	}
	o := P(new(T))
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, o); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("get %s %s/%s: %w", kind, namespace, name, err)
		}
		o = nil
	}
	seen[name] = o
	return o, nil
}

func listsModel(q *quotav1alpha1.ProviderQuota, model string) bool {
	for _, m := range q.Spec.Models {
		if m.Name == model || slices.Contains(m.AdditionalNames, model) {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (r *FallbackChainReconciler) chainsForQuota(ctx context.Context, obj client.Object) []reconcile.Request {
	names, err := dependents(ctx, r.client, &quotav1alpha1.FallbackChainList{}, obj.GetNamespace(), indexChainQuota, obj.GetName())
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "cannot map a ProviderQuota to its FallbackChains", "providerQuota", klog.KObj(obj))
	}
	return requests(obj.GetNamespace(), names)
}

// chainsForPolicy finds the chains whose entries name the policy and the chains of the
// quotas that name it.
func (r *FallbackChainReconciler) chainsForPolicy(ctx context.Context, obj client.Object) []reconcile.Request {
	ns, name := obj.GetNamespace(), obj.GetName()
	log := ctrl.LoggerFrom(ctx).WithValues("circuitPolicy", klog.KObj(obj))
	direct, err := dependents(ctx, r.client, &quotav1alpha1.FallbackChainList{}, ns, indexChainPolicy, name)
	if err != nil {
		log.Error(err, "cannot map a CircuitPolicy to the FallbackChains naming it")
	}
	all := [][]string{direct}
	quotas, err := dependents(ctx, r.client, &quotav1alpha1.ProviderQuotaList{}, ns, indexQuotaPolicy, name)
	if err != nil {
		log.Error(err, "cannot map a CircuitPolicy to the ProviderQuotas naming it")
	}
	for _, q := range quotas {
		chains, err := dependents(ctx, r.client, &quotav1alpha1.FallbackChainList{}, ns, indexChainQuota, q)
		if err != nil {
			log.Error(err, "cannot map a ProviderQuota to its FallbackChains", "providerQuota", klog.KRef(ns, q))
		}
		all = append(all, chains)
	}
	return requests(ns, all...)
}

// credentialVerdict is what a quota's own reconcile found wrong with its credential
// Secrets ("" for nothing): chains do not read Secrets themselves.
func credentialVerdict(q *quotav1alpha1.ProviderQuota) string {
	c := meta.FindStatusCondition(q.Status.Conditions, quotav1alpha1.ConditionReferencesResolved)
	if c == nil || c.Status != metav1.ConditionFalse {
		return ""
	}
	if c.Reason != quotav1alpha1.ReasonSecretNotFound && c.Reason != quotav1alpha1.ReasonSecretKeyNotFound {
		return "" // a missing policy: the chain resolves policies itself
	}
	return c.Message
}

// credentialVerdictChanged passes quota updates that change credentialVerdict.
var credentialVerdictChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		before, okBefore := e.ObjectOld.(*quotav1alpha1.ProviderQuota)
		after, okAfter := e.ObjectNew.(*quotav1alpha1.ProviderQuota)
		return okBefore && okAfter && credentialVerdict(before) != credentialVerdict(after)
	},
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}
