// Package render turns aiquota resources into the limiter configuration document
// (internal/limiterconfig) that a sidecar loads: one document per FallbackChain, and one
// per ProviderQuota for pods that use a quota directly.
//
// Everything here is a pure function of its arguments: no client, no clock, no
// randomness. The same resources always render to the same bytes, whatever order they
// are handed over in, so a re-render that changes nothing writes nothing and GitOps
// re-applies cause no churn in the pods that mount the result.
//
// Defaults are applied here as well as by the API server: an object that reached us
// without server-side defaulting (an older CRD, a hand-built test object) still renders
// what the API documents.
package render

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/presets"
)

// Kinds written to limiterconfig.Source.Kind.
const (
	KindFallbackChain = "FallbackChain"
	KindProviderQuota = "ProviderQuota"
)

// API defaults the renderer applies when a field reached it unset.
const (
	defaultSafetyMarginPercent = 2
	defaultCredentialKey       = "api-key"
	defaultChainPriority       = 5
	// DefaultReportInterval is the sidecars' report interval when Control leaves it 0.
	DefaultReportInterval = 10 * time.Second
)

// defaultFallbackOn is FallbackChainSpec.fallbackOn's API default.
var defaultFallbackOn = []string{
	limiterconfig.FailureRateLimited, limiterconfig.FailureServerError, limiterconfig.FailureUnavailable,
	limiterconfig.FailureTimeout, limiterconfig.FailureConnection, limiterconfig.FailureCircuitOpen,
	limiterconfig.FailureContextLengthExceeded,
}

// Options are the manager-wide inputs of every document.
type Options struct {
	// Control, when set, adds the control-channel section.
	Control *Control
}

// Control describes the manager's control channel as the sidecars must see it.
type Control struct {
	// URL is the https URL the sidecars report to.
	URL string
	// ReportInterval between reports; 0 means DefaultReportInterval.
	ReportInterval time.Duration
	// WithCA says the rendered ConfigMap carries a CA bundle (naming.CAKey), so the
	// sidecar verifies the manager with naming.CAPath() instead of the system roots.
	WithCA bool
}

// MissingError says that a resource names another one that was not handed to the
// renderer. Reconcilers resolve references before rendering, so seeing it means the
// caller and the renderer disagree about what a resource depends on.
type MissingError struct {
	Kind string
	Name string
}

func (e *MissingError) Error() string { return fmt.Sprintf("%s %q was not provided", e.Kind, e.Name) }

// Chain renders a FallbackChain with the ProviderQuotas and CircuitPolicies it refers
// to, directly or through a quota's circuitPolicyRef. Extra quotas and policies are
// ignored; their order does not matter.
//
// The chain's queue is the tightest of its quotas' queues (the smallest maxWait and the
// smallest maxDepth, each after defaults): a sidecar has one queue for all entries,
// and no quota's owner should see requests wait longer, or pile up deeper, than they
// asked for.
func Chain(chain *quotav1alpha1.FallbackChain, quotas []quotav1alpha1.ProviderQuota, policies []quotav1alpha1.CircuitPolicy, opts Options) (*limiterconfig.Config, error) {
	quotaByName, err := byName(quotas, func(q *quotav1alpha1.ProviderQuota) string { return q.Name }, KindProviderQuota)
	if err != nil {
		return nil, err
	}
	policyByName, err := byName(policies, func(p *quotav1alpha1.CircuitPolicy) string { return p.Name }, "CircuitPolicy")
	if err != nil {
		return nil, err
	}
	if len(chain.Spec.Entries) == 0 {
		return nil, errors.New("spec.entries: a chain needs at least one entry")
	}

	cfg := &limiterconfig.Config{
		SchemaVersion: limiterconfig.SchemaVersion,
		Source:        source(KindFallbackChain, chain.Namespace, chain.Name, chain.Generation),
		Chain: &limiterconfig.Chain{
			FallbackOn:      fallbackOn(chain.Spec.FallbackOn),
			ModelAliases:    sortedSet(chain.Spec.ModelAliases),
			DefaultPriority: derefOr(chain.Spec.DefaultPriority, defaultChainPriority),
		},
	}
	usedQuotas := map[string]*quotav1alpha1.ProviderQuota{}
	usedPolicies := map[string]bool{}
	for i, e := range chain.Spec.Entries {
		q, ok := quotaByName[e.ProviderQuotaRef.Name]
		if !ok {
			return nil, fmt.Errorf("spec.entries[%d]: %w", i, &MissingError{Kind: KindProviderQuota, Name: e.ProviderQuotaRef.Name})
		}
		usedQuotas[q.Name] = q
		entry := limiterconfig.ChainEntry{Provider: q.Name, Model: e.Model}
		if e.CircuitPolicyRef != nil {
			entry.Policy = e.CircuitPolicyRef.Name
			usedPolicies[entry.Policy] = true
		}
		cfg.Chain.Entries = append(cfg.Chain.Entries, entry)
	}

	queues := make([]limiterconfig.Queue, 0, len(usedQuotas))
	for _, name := range sortedKeys(usedQuotas) {
		q := usedQuotas[name]
		p, err := provider(q)
		if err != nil {
			return nil, fmt.Errorf("ProviderQuota %q: %w", q.Name, err)
		}
		if p.Policy != "" {
			usedPolicies[p.Policy] = true
		}
		cfg.Providers = append(cfg.Providers, p)
		queues = append(queues, queue(q.Spec.Queue))
	}
	cfg.Queue = tightest(queues)

	if cfg.Policies, err = renderPolicies(usedPolicies, policyByName); err != nil {
		return nil, err
	}
	cfg.Control = control(opts.Control)
	return cfg, nil
}

// Quota renders a ProviderQuota for pods that use it directly (no chain): the sidecar
// routes each request to the pool serving its model.
func Quota(quota *quotav1alpha1.ProviderQuota, policies []quotav1alpha1.CircuitPolicy, opts Options) (*limiterconfig.Config, error) {
	policyByName, err := byName(policies, func(p *quotav1alpha1.CircuitPolicy) string { return p.Name }, "CircuitPolicy")
	if err != nil {
		return nil, err
	}
	p, err := provider(quota)
	if err != nil {
		return nil, err
	}
	cfg := &limiterconfig.Config{
		SchemaVersion: limiterconfig.SchemaVersion,
		Source:        source(KindProviderQuota, quota.Namespace, quota.Name, quota.Generation),
		Providers:     []limiterconfig.Provider{p},
		Queue:         ptrTo(queue(quota.Spec.Queue)),
		Control:       control(opts.Control),
	}
	used := map[string]bool{}
	if p.Policy != "" {
		used[p.Policy] = true
	}
	if cfg.Policies, err = renderPolicies(used, policyByName); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Encode validates and serialises a document. The hash is the hex SHA-256 of the bytes:
// the value of naming.AnnotationConfigHash, and what a sidecar computes from the file
// it loaded, so status can tell which pods run which config.
func Encode(cfg *limiterconfig.Config) (data []byte, hash string, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, "", fmt.Errorf("rendered limiter config is invalid: %w", err)
	}
	data, err = limiterconfig.Marshal(cfg)
	if err != nil {
		return nil, "", err
	}
	return data, Hash(data), nil
}

// Hash is the hex SHA-256 of a rendered document.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Endpoint is the base URL a quota's sidecars call: spec.endpoint, else the provider's
// public API.
func Endpoint(spec *quotav1alpha1.ProviderQuotaSpec) (string, error) {
	if spec.Endpoint != "" {
		return spec.Endpoint, nil
	}
	if ep, ok := quotav1alpha1.DefaultEndpoints[spec.Provider]; ok {
		return ep, nil
	}
	if spec.Provider == quotav1alpha1.ProviderOpenAICompatible {
		return "", errors.New("spec.endpoint is required when provider is openai-compatible")
	}
	return "", fmt.Errorf("spec.provider %q is not a known provider type", spec.Provider)
}

// CredentialKey is the Secret key a credential names, after the API default.
func CredentialKey(c quotav1alpha1.SecretKeyRef) string {
	return cmp.Or(c.Key, defaultCredentialKey)
}

func source(kind, namespace, name string, generation int64) limiterconfig.Source {
	return limiterconfig.Source{Kind: kind, Namespace: namespace, Name: name, Generation: generation}
}

func provider(q *quotav1alpha1.ProviderQuota) (limiterconfig.Provider, error) {
	spec := &q.Spec
	endpoint, err := Endpoint(spec)
	if err != nil {
		return limiterconfig.Provider{}, err
	}
	base, pools, err := presets.Resolve(spec)
	if err != nil {
		return limiterconfig.Provider{}, fmt.Errorf("spec.tier: %w", err)
	}
	p := limiterconfig.Provider{
		Name:                q.Name,
		Type:                string(spec.Provider),
		Endpoint:            endpoint,
		Tier:                spec.Tier,
		Limits:              limits(base.Limits),
		UnlistedModels:      cmp.Or(string(spec.UnlistedModels), limiterconfig.UnlistedShareAccountLimits),
		SafetyMarginPercent: derefOr(spec.SafetyMarginPercent, defaultSafetyMarginPercent),
		LearnFromHeaders:    derefOr(spec.LearnFromHeaders, true),
	}
	// Credentials keep their spec order: it is a user-defined list, and the key IDs
	// are the same whichever order the sidecar holds them in.
	for _, c := range spec.Credentials {
		key := CredentialKey(c)
		p.Keys = append(p.Keys, limiterconfig.Key{ID: naming.KeyID(c.Name, key), File: naming.KeyFile(c.Name, key)})
	}
	for i, m := range spec.Models {
		model := limiterconfig.ModelPool{
			Names:           append([]string{m.Name}, sortedSet(slices.DeleteFunc(slices.Clone(m.AdditionalNames), func(n string) bool { return n == m.Name }))...),
			ContextWindow:   m.ContextWindow,
			MaxOutputTokens: m.MaxOutputTokens,
			Tokenizer:       m.Tokenizer,
		}
		// With a tier, every pool carries its effective limits, so the rendered
		// document says what each pool enforces whichever row of the preset
		// filled it; without one, a pool carries what its spec overrides.
		switch {
		case spec.Tier != "":
			l := limits(pools[i].Limits)
			model.Limits = &l
		case m.Limits != nil:
			l := limits(*m.Limits)
			model.Limits = &l
		}
		p.Models = append(p.Models, model)
	}
	if spec.CircuitPolicyRef != nil {
		p.Policy = spec.CircuitPolicyRef.Name
	}
	return p, nil
}

func limits(l quotav1alpha1.QuotaLimits) limiterconfig.Limits {
	return limiterconfig.Limits{
		RequestsPerMinute:     l.RequestsPerMinute,
		TokensPerMinute:       l.TokensPerMinute,
		InputTokensPerMinute:  l.InputTokensPerMinute,
		OutputTokensPerMinute: l.OutputTokensPerMinute,
		MaxConcurrency:        l.MaxConcurrency,
		RequestsPerDay:        l.RequestsPerDay,
		TokensPerDay:          l.TokensPerDay,
	}
}

func queue(q quotav1alpha1.QueueSpec) limiterconfig.Queue {
	out := limiterconfig.DefaultQueue()
	if q.MaxWait != nil {
		out.MaxWait = limiterconfig.Duration(q.MaxWait.Duration)
	}
	if q.MaxDepth != nil {
		out.MaxDepth = *q.MaxDepth
	}
	return out
}

func tightest(qs []limiterconfig.Queue) *limiterconfig.Queue {
	if len(qs) == 0 {
		return nil
	}
	out := qs[0]
	for _, q := range qs[1:] {
		out.MaxWait = min(out.MaxWait, q.MaxWait)
		out.MaxDepth = min(out.MaxDepth, q.MaxDepth)
	}
	return &out
}

func ptrTo[T any](v T) *T { return &v }

func fallbackOn(kinds []quotav1alpha1.FailureKind) []string {
	// nil is "not set" (the API default applies); an explicit empty list, which the
	// API server keeps as [], means "never fall back".
	if kinds == nil {
		return sortedSet(defaultFallbackOn)
	}
	out := make([]string, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, string(k))
	}
	return sortedSet(out)
}

func control(c *Control) *limiterconfig.Control {
	if c == nil || c.URL == "" {
		return nil
	}
	out := &limiterconfig.Control{
		URL:            c.URL,
		TokenFile:      naming.TokenPath(),
		ReportInterval: limiterconfig.Duration(cmp.Or(c.ReportInterval, DefaultReportInterval)),
	}
	if c.WithCA {
		out.CAFile = naming.CAPath()
	}
	return out
}

func renderPolicies(used map[string]bool, available map[string]*quotav1alpha1.CircuitPolicy) ([]limiterconfig.Policy, error) {
	var out []limiterconfig.Policy
	for _, name := range sortedKeys(used) {
		cp, ok := available[name]
		if !ok {
			return nil, &MissingError{Kind: "CircuitPolicy", Name: name}
		}
		out = append(out, Policy(cp))
	}
	return out, nil
}

// byName indexes objects by name and refuses duplicates: with two objects of one name
// the output would depend on their order.
func byName[T any](items []T, name func(*T) string, kind string) (map[string]*T, error) {
	out := make(map[string]*T, len(items))
	for i := range items {
		n := name(&items[i])
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("%s %q was provided twice", kind, n)
		}
		out[n] = &items[i]
	}
	return out, nil
}

// sortedSet sorts and de-duplicates a list whose order carries no meaning (the API's
// listType=set fields), so that a reordering by an apply never changes the bytes.
func sortedSet(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, strings.Compare)
	return keys
}

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
