package controller

import (
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/presets"
)

// effectiveLimits is a quota's status.effectiveLimits: every pool's limits as
// rendered (render resolves them the same way, through presets.Resolve), each with
// its source, and a lower limit the provider's headers reported where the hub has
// recorded one. It is nil when the spec does not resolve (an unknown tier), which
// ConfigRendered reports.
//
// The hub records learned limits per quota (status.learnedLimits, the lowest that
// differs from the declared one, over all pools), not per pool, so a learned limit
// is shown on every pool that declares more.
func effectiveLimits(q *quotav1alpha1.ProviderQuota) *quotav1alpha1.EffectiveLimits {
	base, pools, err := presets.Resolve(&q.Spec)
	if err != nil {
		return nil
	}
	out := &quotav1alpha1.EffectiveLimits{}
	if q.Spec.Tier != "" {
		out.Tier, out.PresetVersion = q.Spec.Tier, presets.Version()
	}
	var learned quotav1alpha1.QuotaLimits
	if q.Status.LearnedLimits != nil {
		learned = *q.Status.LearnedLimits
	}
	if q.Spec.UnlistedModels != quotav1alpha1.UnlistedModelsReject {
		out.Pools = append(out.Pools, poolLimits(base, &learned))
	}
	for _, p := range pools {
		out.Pools = append(out.Pools, poolLimits(p, &learned))
	}
	return out
}

func poolLimits(e presets.Effective, learned *quotav1alpha1.QuotaLimits) quotav1alpha1.PoolLimits {
	pl := quotav1alpha1.PoolLimits{Name: e.Pool}
	values, fromPreset, fromHeaders := presets.Fields(&e.Limits), presets.Fields(&e.Preset), presets.Fields(learned)
	for i, v := range values {
		l := quotav1alpha1.EffectiveLimit{Kind: presets.LimitNames[i], Value: *v, Source: quotav1alpha1.LimitFromSpec}
		switch h := *fromHeaders[i]; {
		case h > 0 && (*v == 0 || h < *v):
			l.Value, l.Source, l.Declared = h, quotav1alpha1.LimitFromLearned, *v
		case *v == 0:
			continue
		case *fromPreset[i] != 0:
			l.Source = quotav1alpha1.LimitFromPreset
		}
		pl.Limits = append(pl.Limits, l)
	}
	return pl
}

// learnedLimitsChanged passes the hub's status writes that change
// status.learnedLimits, which status.effectiveLimits follows; the hub's other,
// frequent writes stay filtered out.
var learnedLimitsChanged = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		before, okBefore := e.ObjectOld.(*quotav1alpha1.ProviderQuota)
		after, okAfter := e.ObjectNew.(*quotav1alpha1.ProviderQuota)
		return okBefore && okAfter &&
			ptr.Deref(before.Status.LearnedLimits, quotav1alpha1.QuotaLimits{}) != ptr.Deref(after.Status.LearnedLimits, quotav1alpha1.QuotaLimits{})
	},
}
