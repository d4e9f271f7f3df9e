// Package presets ships the providers' published usage-tier tables as versioned
// data (tiers.json, embedded), so that a ProviderQuota's spec.tier can stand in for
// the limits a user would otherwise type. The renderer fills a quota's unset limits
// from them and the reconciler shows in status which limit came from where.
//
// The figures are data, never logic: a new table is a new tiers.json with a new
// version, and the CRD's tier rule (api/v1alpha1) lists the same tier names, which
// TestTierRuleMatchesPresets keeps honest.
package presets

import (
	"cmp"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
)

//go:embed tiers.json
var tiersJSON []byte

// Table is the whole tier data set.
type Table struct {
	// Version is the date of the figures, shown in status as presetVersion.
	Version string `json:"version"`
	// Source says where the figures come from.
	Source    string          `json:"source"`
	Providers []ProviderTiers `json:"providers"`
}

// ProviderTiers are one provider type's tiers, in ascending order.
type ProviderTiers struct {
	Provider quotav1alpha1.ProviderType `json:"provider"`
	Note     string                     `json:"note"`
	Tiers    []Tier                     `json:"tiers"`
}

// Tier is one usage tier: limits for every pool, or rows per model family.
type Tier struct {
	Name string `json:"name"`
	// Limits apply to every pool (the provider publishes one set of figures).
	Limits quotav1alpha1.QuotaLimits `json:"limits"`
	// Models are per-family rows (the provider publishes figures per model).
	Models []ModelRow `json:"models,omitempty"`
}

// ModelRow is a tier's figures for one model family.
type ModelRow struct {
	Family string `json:"family"`
	// Prefixes name the family's models: a model is in the family when its name is
	// a prefix or starts with one followed by "-" or "." (dated snapshots, minor
	// versions, variants).
	Prefixes []string                  `json:"prefixes"`
	Limits   quotav1alpha1.QuotaLimits `json:"limits"`
}

var table = mustParse(tiersJSON)

func mustParse(data []byte) *Table {
	t := &Table{}
	if err := json.Unmarshal(data, t); err != nil {
		panic(fmt.Sprintf("presets: embedded tiers.json does not parse: %v", err))
	}
	return t
}

// Data is the embedded tier data set. Callers must not modify it.
func Data() *Table { return table }

// Version is the embedded data's version (its date).
func Version() string { return table.Version }

// Tiers names the known tiers of a provider type, in ascending order; none for a
// type without published tiers (openai-compatible).
func Tiers(provider quotav1alpha1.ProviderType) []string {
	var out []string
	for _, p := range table.Providers {
		if p.Provider == provider {
			for _, t := range p.Tiers {
				out = append(out, t.Name)
			}
		}
	}
	return out
}

// UnknownTierError is a tier that the data set does not have for the provider type.
type UnknownTierError struct {
	Provider quotav1alpha1.ProviderType
	Tier     string
}

func (e *UnknownTierError) Error() string {
	known := Tiers(e.Provider)
	if len(known) == 0 {
		return fmt.Sprintf("tier %q: provider %s has no tier presets; omit spec.tier", e.Tier, e.Provider)
	}
	return fmt.Sprintf("tier %q is not a known %s tier (known: %s)", e.Tier, e.Provider, strings.Join(known, ", "))
}

// Lookup finds a provider type's tier.
func Lookup(provider quotav1alpha1.ProviderType, tier string) (*Tier, error) {
	for i := range table.Providers {
		p := &table.Providers[i]
		if p.Provider != provider {
			continue
		}
		for j := range p.Tiers {
			if p.Tiers[j].Name == tier {
				return &p.Tiers[j], nil
			}
		}
	}
	return nil, &UnknownTierError{Provider: provider, Tier: tier}
}

// For returns the tier's figures for a pool with the given model names: the row of
// the first family one of the names belongs to, else (a per-model tier and a pool
// it has no row for, or the pool of unlisted models) the tightest figure of every
// row, since such a pool may carry any of the tier's models.
func (t *Tier) For(names []string) quotav1alpha1.QuotaLimits {
	if len(t.Models) == 0 {
		return t.Limits
	}
	for _, row := range t.Models {
		if slices.ContainsFunc(names, row.matches) {
			return overlay(t.Limits, row.Limits)
		}
	}
	tight := t.Models[0].Limits
	for _, row := range t.Models[1:] {
		tight = tightest(tight, row.Limits)
	}
	return overlay(t.Limits, tight)
}

func (r *ModelRow) matches(model string) bool {
	for _, p := range r.Prefixes {
		if model == p || (strings.HasPrefix(model, p) && (model[len(p)] == '-' || model[len(p)] == '.')) {
			return true
		}
	}
	return false
}

// Effective is one pool's limits after the preset and the spec, and which of them
// the preset supplied.
type Effective struct {
	// Pool is the pool's name (its first model name, or limiterconfig's unlisted
	// pool name for the base).
	Pool string
	// Limits are what the pool enforces before header learning.
	Limits quotav1alpha1.QuotaLimits
	// Preset holds the fields of Limits that came from the tier; a zero field came
	// from the spec or is not limited.
	Preset quotav1alpha1.QuotaLimits
}

// UnlistedPool names the base limits, which the pool of unlisted models uses. It
// equals limiterconfig.UnlistedPool; this package stays clear of the data plane.
const UnlistedPool = "(unlisted)"

// Resolve computes the effective limits of a quota's base (the unlisted models'
// pool, which every listed pool starts from) and of each listed pool, in spec
// order. Precedence per limit: the pool's own limits, then spec.limits, then the
// tier's row for the pool. Without a tier the preset contributes nothing.
func Resolve(spec *quotav1alpha1.ProviderQuotaSpec) (base Effective, pools []Effective, err error) {
	var tier *Tier
	if spec.Tier != "" {
		if tier, err = Lookup(spec.Provider, spec.Tier); err != nil {
			return Effective{}, nil, err
		}
	}
	resolve := func(pool string, names []string, own *quotav1alpha1.QuotaLimits) Effective {
		declared := spec.Limits
		if own != nil {
			declared = overlay(declared, *own)
		}
		var preset quotav1alpha1.QuotaLimits
		if tier != nil {
			preset = missing(tier.For(names), declared)
		}
		return Effective{Pool: pool, Limits: overlay(preset, declared), Preset: preset}
	}
	base = resolve(UnlistedPool, nil, nil)
	for _, m := range spec.Models {
		pools = append(pools, resolve(m.Name, append([]string{m.Name}, m.AdditionalNames...), m.Limits))
	}
	return base, pools, nil
}

// LimitNames are the JSON names of a QuotaLimits' fields, in the order of Fields:
// the kinds status.effectiveLimits names, spelled as the sidecar's config and
// reports spell them.
var LimitNames = []string{hubapi.LimitRequestsPerMinute, hubapi.LimitTokensPerMinute, hubapi.LimitInputTokensPerMinute,
	hubapi.LimitOutputTokensPerMinute, hubapi.LimitMaxConcurrency, hubapi.LimitRequestsPerDay, hubapi.LimitTokensPerDay}

// Fields lists a QuotaLimits' fields in declaration order, so that code going
// field by field cannot forget one.
func Fields(l *quotav1alpha1.QuotaLimits) []*int64 {
	return []*int64{&l.RequestsPerMinute, &l.TokensPerMinute, &l.InputTokensPerMinute, &l.OutputTokensPerMinute,
		&l.MaxConcurrency, &l.RequestsPerDay, &l.TokensPerDay}
}

// overlay is base with over's set fields.
func overlay(base, over quotav1alpha1.QuotaLimits) quotav1alpha1.QuotaLimits {
	return merge(base, over, func(b, o int64) int64 { return cmp.Or(o, b) })
}

// missing is the fields of preset that declared leaves unset.
func missing(preset, declared quotav1alpha1.QuotaLimits) quotav1alpha1.QuotaLimits {
	return merge(preset, declared, func(p, d int64) int64 {
		if d != 0 {
			return 0
		}
		return p
	})
}

// tightest is the lower of each field that either sets.
func tightest(a, b quotav1alpha1.QuotaLimits) quotav1alpha1.QuotaLimits {
	return merge(a, b, func(x, y int64) int64 {
		if y != 0 && (x == 0 || y < x) {
			return y
		}
		return x
	})
}

// merge combines a and b field by field.
func merge(a, b quotav1alpha1.QuotaLimits, pick func(x, y int64) int64) quotav1alpha1.QuotaLimits {
	out := a
	bs := Fields(&b)
	for i, f := range Fields(&out) {
		*f = pick(*f, *bs[i])
	}
	return out
}
