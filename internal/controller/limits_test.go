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

	preset := func(v int64) *quotav1alpha1.EffectiveLimit {
		return &quotav1alpha1.EffectiveLimit{Value: v, Source: quotav1alpha1.LimitFromPreset}
	}
	want := &quotav1alpha1.EffectiveLimits{Tier: "tier-3", PresetVersion: presets.Version(), Pools: []quotav1alpha1.PoolLimits{
		{Name: limiterconfig.UnlistedPool, RequestsPerMinute: preset(10_000), TokensPerMinute: preset(10_000_000)},
		{Name: "gpt-5.5", RequestsPerMinute: &quotav1alpha1.EffectiveLimit{Value: 42, Source: quotav1alpha1.LimitFromSpec}, TokensPerMinute: preset(10_000_000)},
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
	fromHeaders := &quotav1alpha1.EffectiveLimit{Value: 2_000_000, Source: quotav1alpha1.LimitFromLearned, Declared: 10_000_000}
	want.Pools[0].TokensPerMinute, want.Pools[1].TokensPerMinute = fromHeaders, fromHeaders
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
