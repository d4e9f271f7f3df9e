package controller

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/render"
)

const kindCircuitPolicy = "CircuitPolicy"

// CircuitPolicyReconciler checks what the schema cannot about a policy and reports it
// in Ready. The configs that use a policy are re-rendered by the ProviderQuota and
// FallbackChain reconcilers, which watch policies themselves.
type CircuitPolicyReconciler struct {
	*deps
}

// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=circuitpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=circuitpolicies/status,verbs=get;patch

func (r *CircuitPolicyReconciler) setup(mgr ctrl.Manager, wrap wrapFunc) error {
	// The control channel writes breaker states into status often; see newController.
	b := r.newController(mgr, controllerNameCircuitPolicy, &quotav1alpha1.CircuitPolicy{})
	return r.complete(b, controllerNameCircuitPolicy, kindCircuitPolicy, r, wrap, nil)
}

// Reconcile validates one CircuitPolicy.
func (r *CircuitPolicyReconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	cp, err := reconciled[quotav1alpha1.CircuitPolicy](ctx, r.deps, kindCircuitPolicy, req.NamespacedName)
	if cp == nil || err != nil {
		return ctrl.Result{}, err
	}
	before := cp.DeepCopy()

	ready := condition(quotav1alpha1.ConditionReady, true, quotav1alpha1.ReasonReady, "the policy is valid")
	if err := render.CheckPolicy(cp); err != nil {
		ready = condition(quotav1alpha1.ConditionReady, false, quotav1alpha1.ReasonInvalidSpec,
			fmt.Sprintf("%v; configs that use this policy keep their last rendered version until it is fixed", err))
	}
	cp.Status.ObservedGeneration = cp.Generation
	setConditions(&cp.Status.Conditions, cp.Generation, ready)
	if err := r.patchStatus(ctx, kindCircuitPolicy, cp, before, &before.Status, &cp.Status); err != nil {
		return ctrl.Result{}, err
	}
	announceReady(r.recorder, cp, before.Status.Conditions, cp.Status.Conditions, "ready: the policy is valid")
	return ctrl.Result{}, nil
}
