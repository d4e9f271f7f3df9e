package controller

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/presets"
	"github.com/aiquota/aiquota/internal/testkit"
)

// TestTierPresetFillsLimits is issue 11's acceptance: a quota with tier-3 and no
// limits shows the tier's limits in status and renders them, a spec limit wins over
// the preset, and a lower limit the provider's headers reported (as the hub writes
// it) shows as learned.
func TestTierPresetFillsLimits(t *testing.T) {
	ns := newNamespace(t)
	create(t, secret(ns, "openai-key", "api-key"))
	q := providerQuota(ns, "tiered", "openai-key", 0, "")
	q.Spec.Limits = quotav1alpha1.QuotaLimits{}
	q.Spec.Tier = "tier-3"
	q.Spec.Models = []quotav1alpha1.ModelPool{{Name: "gpt-5.5", Limits: &quotav1alpha1.QuotaLimits{RequestsPerMinute: 42}}}
	create(t, q)

	limit := func(kind string, v int64, source quotav1alpha1.LimitSource) quotav1alpha1.EffectiveLimit {
		return quotav1alpha1.EffectiveLimit{Kind: kind, Value: v, Source: source}
	}
	want := &quotav1alpha1.EffectiveLimits{Tier: "tier-3", PresetVersion: presets.Version(), Pools: []quotav1alpha1.PoolLimits{
		{Name: limiterconfig.UnlistedPool, Limits: []quotav1alpha1.EffectiveLimit{
			limit("requestsPerMinute", 10_000, quotav1alpha1.LimitFromPreset), limit("tokensPerMinute", 10_000_000, quotav1alpha1.LimitFromPreset)}},
		{Name: "gpt-5.5", Limits: []quotav1alpha1.EffectiveLimit{
			limit("requestsPerMinute", 42, quotav1alpha1.LimitFromSpec), limit("tokensPerMinute", 10_000_000, quotav1alpha1.LimitFromPreset)}},
	}}
	waitEffectiveLimits(t, q, want)
	_, cfg := waitConfig(t, ns, naming.QuotaConfigMap(q.Name), anyConfig)
	p := cfg.Providers[0]
	if got := (limiterconfig.Limits{RequestsPerMinute: 10_000, TokensPerMinute: 10_000_000}); p.Limits != got {
		t.Errorf("rendered base limits %+v, want the tier's %+v", p.Limits, got)
	}
	if got := p.PoolFor("gpt-5.5").Limits; got != (limiterconfig.Limits{RequestsPerMinute: 42, TokensPerMinute: 10_000_000}) {
		t.Errorf("rendered gpt-5.5 limits %+v, want the spec's RPM and the tier's TPM", got)
	}

	// The hub records a lower TPM the provider's headers reported.
	learned := q.DeepCopy()
	learned.Status.LearnedLimits = &quotav1alpha1.QuotaLimits{TokensPerMinute: 2_000_000}
	if err := k8s.Status().Patch(context.Background(), learned, client.MergeFrom(q)); err != nil {
		t.Fatalf("patch learnedLimits: %v", err)
	}
	fromHeaders := quotav1alpha1.EffectiveLimit{Kind: "tokensPerMinute", Value: 2_000_000, Source: quotav1alpha1.LimitFromLearned, Declared: 10_000_000}
	want.Pools[0].Limits[1], want.Pools[1].Limits[1] = fromHeaders, fromHeaders
	waitEffectiveLimits(t, q, want)
}

func waitEffectiveLimits(t *testing.T, q *quotav1alpha1.ProviderQuota, want *quotav1alpha1.EffectiveLimits) {
	t.Helper()
	testkit.Eventually(t, waitTimeout, "status.effectiveLimits", func() error {
		got := &quotav1alpha1.ProviderQuota{}
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(q), got); err != nil {
			return err
		}
		if diff := cmp.Diff(want, got.Status.EffectiveLimits); diff != "" {
			return fmt.Errorf("(-want +got):\n%s", diff)
		}
		return nil
	})
}
