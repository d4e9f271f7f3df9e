package presets

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/testkit"
)

type limits = quotav1alpha1.QuotaLimits

func TestDataIsWellFormed(t *testing.T) {
	if Version() == "" || Data().Source == "" {
		t.Errorf("tiers.json has version %q, source %q; both are required", Version(), Data().Source)
	}
	for _, p := range Data().Providers {
		if len(p.Tiers) == 0 {
			t.Errorf("%s has no tiers", p.Provider)
		}
		for _, tier := range p.Tiers {
			if tier.Limits == (limits{}) && len(tier.Models) == 0 {
				t.Errorf("%s %s has neither limits nor model rows", p.Provider, tier.Name)
			}
			for _, row := range tier.Models {
				if len(row.Prefixes) == 0 || row.Limits == (limits{}) {
					t.Errorf("%s %s row %s has no prefixes or no limits", p.Provider, tier.Name, row.Family)
				}
			}
		}
	}
}

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		provider quotav1alpha1.ProviderType
		tier     string
		want     string // error text; "" for found
	}{
		{quotav1alpha1.ProviderOpenAI, "tier-3", ""},
		{quotav1alpha1.ProviderDeepSeek, "enterprise", ""},
		{quotav1alpha1.ProviderOpenAI, "tier-9", `tier "tier-9" is not a known openai tier (known: tier-1, tier-2, tier-3, tier-4, tier-5)`},
		{quotav1alpha1.ProviderGemini, "tier-3", `tier "tier-3" is not a known gemini tier (known: free, pay-as-you-go, enterprise)`},
		{quotav1alpha1.ProviderOpenAICompatible, "tier-1", `tier "tier-1": provider openai-compatible has no tier presets; omit spec.tier`},
	} {
		got, err := Lookup(tc.provider, tc.tier)
		var unknown *UnknownTierError
		switch {
		case tc.want == "" && (err != nil || got.Name != tc.tier):
			t.Errorf("Lookup(%s, %s) = %v, %v; want the tier", tc.provider, tc.tier, got, err)
		case tc.want != "" && (!errors.As(err, &unknown) || err.Error() != tc.want):
			t.Errorf("Lookup(%s, %s) error %v, want %q", tc.provider, tc.tier, err, tc.want)
		}
	}
}

func TestTierFor(t *testing.T) {
	sonnet := limits{RequestsPerMinute: 4000, InputTokensPerMinute: 2_000_000, MaxConcurrency: 200}
	tightAnthropic := limits{RequestsPerMinute: 1000, InputTokensPerMinute: 400_000, MaxConcurrency: 50}
	for _, tc := range []struct {
		name     string
		provider quotav1alpha1.ProviderType
		tier     string
		names    []string
		want     limits
	}{
		{"one set of figures", quotav1alpha1.ProviderOpenAI, "tier-3", []string{"gpt-5.5"}, limits{RequestsPerMinute: 10_000, TokensPerMinute: 10_000_000}},
		{"daily cap", quotav1alpha1.ProviderDeepSeek, "basic", nil, limits{RequestsPerMinute: 500, TokensPerMinute: 500_000, TokensPerDay: 500_000_000}},
		{"family by prefix", quotav1alpha1.ProviderAnthropic, "build-tier-4", []string{"claude-sonnet-4-5"}, sonnet},
		{"family by snapshot", quotav1alpha1.ProviderAnthropic, "build-tier-4", []string{"claude-sonnet-4-20250514"}, sonnet},
		{"family by an additional name", quotav1alpha1.ProviderAnthropic, "build-tier-4", []string{"sonnet", "claude-sonnet-4"}, sonnet},
		{"a prefix is not a family", quotav1alpha1.ProviderAnthropic, "build-tier-4", []string{"claude-sonnet-40"}, tightAnthropic},
		{"unlisted pool: tightest row", quotav1alpha1.ProviderAnthropic, "build-tier-4", nil, tightAnthropic},
		{"gemini flash variant", quotav1alpha1.ProviderGemini, "pay-as-you-go", []string{"gemini-2.5-flash-lite"}, limits{RequestsPerMinute: 10_000, TokensPerMinute: 100_000_000}},
		{"gemini free pro", quotav1alpha1.ProviderGemini, "free", []string{"gemini-2.5-pro"}, limits{RequestsPerMinute: 15, TokensPerMinute: 1_000_000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tier, err := Lookup(tc.provider, tc.tier)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, tier.For(tc.names)); diff != "" {
				t.Errorf("For(%v) (-want +got):\n%s", tc.names, diff)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	type eff = Effective
	for _, tc := range []struct {
		name  string
		spec  quotav1alpha1.ProviderQuotaSpec
		base  eff
		pools []eff
	}{{
		name: "no tier: the spec alone",
		spec: quotav1alpha1.ProviderQuotaSpec{Provider: quotav1alpha1.ProviderOpenAI, Limits: limits{RequestsPerMinute: 100},
			Models: []quotav1alpha1.ModelPool{{Name: "gpt-5.5", Limits: &limits{TokensPerMinute: 5}}}},
		base:  eff{Pool: UnlistedPool, Limits: limits{RequestsPerMinute: 100}},
		pools: []eff{{Pool: "gpt-5.5", Limits: limits{RequestsPerMinute: 100, TokensPerMinute: 5}}},
	}, {
		name: "tier fills what the spec leaves unset",
		spec: quotav1alpha1.ProviderQuotaSpec{Provider: quotav1alpha1.ProviderOpenAI, Tier: "tier-3", Limits: limits{RequestsPerMinute: 100},
			Models: []quotav1alpha1.ModelPool{{Name: "gpt-5.5", Limits: &limits{TokensPerMinute: 5}}, {Name: "gpt-4.1-mini"}}},
		base: eff{Pool: UnlistedPool, Limits: limits{RequestsPerMinute: 100, TokensPerMinute: 10_000_000}, Preset: limits{TokensPerMinute: 10_000_000}},
		pools: []eff{
			{Pool: "gpt-5.5", Limits: limits{RequestsPerMinute: 100, TokensPerMinute: 5}},
			{Pool: "gpt-4.1-mini", Limits: limits{RequestsPerMinute: 100, TokensPerMinute: 10_000_000}, Preset: limits{TokensPerMinute: 10_000_000}},
		},
	}, {
		name: "per model: each pool its family's row",
		spec: quotav1alpha1.ProviderQuotaSpec{Provider: quotav1alpha1.ProviderAnthropic, Tier: "build-tier-4", Limits: limits{MaxConcurrency: 10},
			Models: []quotav1alpha1.ModelPool{{Name: "claude-haiku-4-5"}, {Name: "claude-opus-4-7", Limits: &limits{RequestsPerMinute: 7}}}},
		base: eff{Pool: UnlistedPool, Limits: limits{RequestsPerMinute: 1000, InputTokensPerMinute: 400_000, MaxConcurrency: 10},
			Preset: limits{RequestsPerMinute: 1000, InputTokensPerMinute: 400_000}},
		pools: []eff{
			{Pool: "claude-haiku-4-5", Limits: limits{RequestsPerMinute: 10_000, InputTokensPerMinute: 5_000_000, MaxConcurrency: 10},
				Preset: limits{RequestsPerMinute: 10_000, InputTokensPerMinute: 5_000_000}},
			{Pool: "claude-opus-4-7", Limits: limits{RequestsPerMinute: 7, InputTokensPerMinute: 400_000, MaxConcurrency: 10},
				Preset: limits{InputTokensPerMinute: 400_000}},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			base, pools, err := Resolve(&tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.base, base); diff != "" {
				t.Errorf("base (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.pools, pools); diff != "" {
				t.Errorf("pools (-want +got):\n%s", diff)
			}
		})
	}
	if _, _, err := Resolve(&quotav1alpha1.ProviderQuotaSpec{Provider: quotav1alpha1.ProviderOpenAI, Tier: "gold"}); err == nil {
		t.Error("Resolve accepted an unknown tier")
	}
}

// TestDocsListTheTiers keeps docs/tiers.md's table equal to the data.
func TestDocsListTheTiers(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "Data version **%s**. %s\n\n", Version(), Data().Source)
	b.WriteString("| provider | tier | models | RPM | TPM | ITPM | max concurrency | tokens per day |\n|---|---|---|---|---|---|---|---|\n")
	n := func(v int64) string {
		if v == 0 {
			return "-"
		}
		s := strconv.FormatInt(v, 10)
		for i := len(s) - 3; i > 0; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	}
	row := func(p quotav1alpha1.ProviderType, tier, models string, l limits) {
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s | %s | %s | %s |\n", p, tier, models,
			n(l.RequestsPerMinute), n(l.TokensPerMinute), n(l.InputTokensPerMinute), n(l.MaxConcurrency), n(l.TokensPerDay))
	}
	for _, p := range Data().Providers {
		for _, tier := range p.Tiers {
			if len(tier.Models) == 0 {
				row(p.Provider, tier.Name, "all", tier.Limits)
			}
			for _, m := range tier.Models {
				row(p.Provider, tier.Name, "`"+strings.Join(m.Prefixes, "*`, `")+"*`", overlay(tier.Limits, m.Limits))
			}
		}
	}
	b.WriteString("\n")
	for _, p := range Data().Providers {
		fmt.Fprintf(&b, "- %s: %s\n", p.Provider, p.Note)
	}
	testkit.DocBlock(t, "../../docs/tiers.md", "tiers", b.String())
}
