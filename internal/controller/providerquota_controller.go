package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/render"
)

const kindProviderQuota = "ProviderQuota"

// notOwnedRetry is how soon an owner whose ConfigMap name is taken looks again; that
// ConfigMap is not in our cache, so no watch event would tell us it went away.
const notOwnedRetry = time.Minute

// ProviderQuotaReconciler checks a quota's CircuitPolicy and credential Secrets and
// renders the config for pods that use the quota directly.
type ProviderQuotaReconciler struct {
	*deps
}

// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=providerquotas,verbs=get;list;watch
// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=providerquotas/status,verbs=get;patch
// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=providerquotas/finalizers,verbs=update
// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=circuitpolicies,verbs=get;list;watch
// Rendered ConfigMaps are created, then changed by merge patches only (configmap.go);
// list and watch feed the cache of labelled ConfigMaps (newOwnedCache).
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

func (r *ProviderQuotaReconciler) setup(mgr ctrl.Manager, wrap wrapFunc) error {
	// Besides spec changes, a change of the learned limits, which effectiveLimits
	// shows, is the one status write that triggers a reconcile.
	b := r.newController(mgr, controllerNameProviderQuota, &quotav1alpha1.ProviderQuota{}, learnedLimitsChanged).
		Watches(&quotav1alpha1.CircuitPolicy{}, handler.EnqueueRequestsFromMapFunc(r.quotasForPolicy),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.ConfigMap{})
	return r.complete(b, controllerNameProviderQuota, kindProviderQuota, r, wrap,
		func() client.ObjectList { return &quotav1alpha1.ProviderQuotaList{} })
}

// Reconcile brings one ProviderQuota's ConfigMap and status up to date.
func (r *ProviderQuotaReconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	q, err := reconciled[quotav1alpha1.ProviderQuota](ctx, r.deps, kindProviderQuota, req.NamespacedName)
	if q == nil || err != nil {
		return ctrl.Result{}, err
	}
	before := q.DeepCopy()

	var problems []problem
	var policies []quotav1alpha1.CircuitPolicy
	if ref := q.Spec.CircuitPolicyRef; ref != nil {
		cp := &quotav1alpha1.CircuitPolicy{}
		err := r.client.Get(ctx, types.NamespacedName{Namespace: q.Namespace, Name: ref.Name}, cp)
		switch {
		case apierrors.IsNotFound(err):
			problems = append(problems, problem{quotav1alpha1.ReasonCircuitPolicyNotFound, fmt.Sprintf("CircuitPolicy %q not found", ref.Name)})
		case err != nil:
			return ctrl.Result{}, fmt.Errorf("get CircuitPolicy %s/%s: %w", q.Namespace, ref.Name, err)
		default:
			policies = append(policies, *cp)
		}
	}
	credentials, err := r.credentialProblems(ctx, q)
	if err != nil {
		return ctrl.Result{}, err
	}
	problems = append(problems, credentials...)
	resolved := condition(quotav1alpha1.ConditionReferencesResolved, true, quotav1alpha1.ReasonResolved, "the CircuitPolicy and credential Secrets exist (keys are judged from the Secrets' managed fields; Secret data is never read)")
	if len(problems) > 0 {
		resolved = condition(quotav1alpha1.ConditionReferencesResolved, false,
			firstReason(problems, quotav1alpha1.ReasonCircuitPolicyNotFound, quotav1alpha1.ReasonSecretNotFound, quotav1alpha1.ReasonSecretKeyNotFound),
			joinProblems(problems))
	}

	cmName := naming.QuotaConfigMap(q.Name)
	current, err := r.currentConfigMap(ctx, q.Namespace, cmName)
	if err != nil {
		return ctrl.Result{}, err
	}
	endpoint, endpointErr := render.Endpoint(&q.Spec)
	var pub published
	switch {
	case endpointErr != nil:
		pub = r.blocked(q, cmName, current, quotav1alpha1.ReasonInvalidSpec, endpointErr.Error()+".")
	case len(policies) == 0 && q.Spec.CircuitPolicyRef != nil:
		// Rendered with the built-in defaults, so that pods the webhook admitted
		// start (a FallbackChain does the same); conditions and an Event say so,
		// and the config follows when the policy appears. Missing Secrets do not
		// change the config at all.
		withoutPolicy := q.DeepCopy()
		withoutPolicy.Spec.CircuitPolicyRef = nil
		pub = r.publish(ctx, q, kindProviderQuota, cmName, current, func() (*limiterconfig.Config, error) {
			return render.Quota(withoutPolicy, nil, r.render)
		})
		markPartial(r.recorder, q, &pub, problems[:1], "Calls have the built-in circuit-breaker and retry defaults until the CircuitPolicy exists")
	default:
		pub = r.publish(ctx, q, kindProviderQuota, cmName, current, func() (*limiterconfig.Config, error) {
			return render.Quota(q, policies, r.render)
		})
	}
	announceRendered(r.recorder, q, pub, current)

	q.Status.ObservedGeneration = q.Generation
	setConditions(&q.Status.Conditions, q.Generation, resolved, pub.condition, readyOf(resolved, pub.condition))
	q.Status.Endpoint = endpoint
	q.Status.ConfigMapName = pub.configMapName
	q.Status.EffectiveLimits = effectiveLimits(q)
	if err := r.patchStatus(ctx, kindProviderQuota, q, before, &before.Status, &q.Status); err != nil {
		return ctrl.Result{}, err
	}
	announceReady(r.recorder, q, before.Status.Conditions, q.Status.Conditions,
		fmt.Sprintf("ready: pods annotated %s=%s use ConfigMap %s", naming.AnnotationProviderQuota, q.Name, cmName))
	if pub.err != nil {
		// controller-runtime ignores a delay returned with an error; the error's
		// backoff decides when to look again.
		return ctrl.Result{}, pub.err
	}
	return ctrl.Result{RequeueAfter: r.recheckSecrets(len(q.Spec.Credentials) > 0, pub.retryAfter)}, nil
}

// patchStatus sends one JSON merge patch holding exactly the status fields that
// changed, if any. The patch carries no resourceVersion: the control channel writes
// other fields of the same status, and neither writer may fail or clobber the other.
func (d *deps) patchStatus(ctx context.Context, kind string, obj, before client.Object, beforeStatus, afterStatus any) error {
	if equality.Semantic.DeepEqual(beforeStatus, afterStatus) {
		return nil
	}
	if err := d.client.Status().Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("patch %s %s status: %w", kind, client.ObjectKeyFromObject(obj), err)
	}
	d.writes.remember(kind, obj)
	ctrl.LoggerFrom(ctx).V(1).Info("patched status", "generation", obj.GetGeneration())
	return nil
}

func (r *ProviderQuotaReconciler) quotasForPolicy(ctx context.Context, obj client.Object) []reconcile.Request {
	names, err := dependents(ctx, r.client, &quotav1alpha1.ProviderQuotaList{}, obj.GetNamespace(), indexQuotaPolicy, obj.GetName())
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "cannot map a CircuitPolicy to its ProviderQuotas", "circuitPolicy", klog.KObj(obj))
	}
	return requests(obj.GetNamespace(), names)
}
