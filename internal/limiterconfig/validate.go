package limiterconfig

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

var (
	providerTypes = []string{ProviderOpenAI, ProviderAnthropic, ProviderGemini, ProviderDeepSeek, ProviderOpenAICompatible}
	tokenizers    = []string{"", TokenizerO200kBase, TokenizerCl100kBase, TokenizerEstimate}
	unlisted      = []string{"", UnlistedShareAccountLimits, UnlistedReject}
	failureKinds  = []string{
		FailureServerError, FailureUnavailable, FailureTimeout, FailureConnection, FailureRateLimited,
		FailureCircuitOpen, FailureContextLengthExceeded, FailureQuotaExhausted,
	}
)

// Validate reports every problem in the document at once, each naming its field path,
// so one round of fixes is enough.
func (c *Config) Validate() error {
	v := &validator{}
	if c.SchemaVersion != SchemaVersion {
		v.addf("schemaVersion", "is %q, this limiter reads %q", c.SchemaVersion, SchemaVersion)
	}
	if len(c.Providers) == 0 {
		v.addf("providers", "must list at least one provider")
	}
	providers, providerNames := map[string]*Provider{}, map[string]bool{}
	policies := map[string]bool{}
	for i := range c.Policies {
		p := &c.Policies[i]
		path := fmt.Sprintf("policies[%d]", i)
		v.uniqueName(path+".name", p.Name, policies)
		v.policy(path, p)
	}
	for i := range c.Providers {
		p := &c.Providers[i]
		path := fmt.Sprintf("providers[%d]", i)
		v.uniqueName(path+".name", p.Name, providerNames)
		providers[p.Name] = p
		v.provider(path, p)
		if p.Policy != "" && !policies[p.Policy] {
			v.addf(path+".policy", "names policy %q, which the document does not define", p.Policy)
		}
	}
	if c.Chain != nil {
		v.chain(c.Chain, providers, policies)
	}
	if c.Queue != nil && c.Queue.MaxWait < 0 {
		v.addf("queue.maxWait", "must not be negative")
	}
	if c.Queue != nil && c.Queue.MaxDepth < 0 {
		v.addf("queue.maxDepth", "must not be negative")
	}
	if c.Control != nil {
		v.url("control.url", c.Control.URL, "https")
		if c.Control.TokenFile == "" {
			v.addf("control.tokenFile", "must not be empty")
		}
		if c.Control.ReportInterval.D() <= 0 {
			v.addf("control.reportInterval", "must be positive")
		}
	}
	return v.err()
}

func (v *validator) provider(path string, p *Provider) {
	if !slices.Contains(providerTypes, p.Type) {
		v.addf(path+".type", "is %q, want one of %s", p.Type, strings.Join(providerTypes, ", "))
	}
	v.url(path+".endpoint", p.Endpoint, "http", "https")
	if len(p.Keys) == 0 {
		v.addf(path+".keys", "must list at least one key file")
	}
	ids := map[string]bool{}
	for j, k := range p.Keys {
		kp := fmt.Sprintf("%s.keys[%d]", path, j)
		v.uniqueName(kp+".id", k.ID, ids)
		if k.File == "" {
			v.addf(kp+".file", "must not be empty")
		}
	}
	v.limits(path+".limits", &p.Limits)
	if !slices.Contains(unlisted, p.UnlistedModels) {
		v.addf(path+".unlistedModels", "is %q, want %s or %s", p.UnlistedModels, UnlistedShareAccountLimits, UnlistedReject)
	}
	if p.SafetyMarginPercent < 0 || p.SafetyMarginPercent > 50 {
		v.addf(path+".safetyMarginPercent", "is %d, want 0..50", p.SafetyMarginPercent)
	}
	names := map[string]bool{}
	for j := range p.Models {
		m := &p.Models[j]
		mp := fmt.Sprintf("%s.models[%d]", path, j)
		if len(m.Names) == 0 {
			v.addf(mp+".names", "must list at least one model name")
		}
		for k, n := range m.Names {
			switch {
			case n == "":
				v.addf(fmt.Sprintf("%s.names[%d]", mp, k), "must not be empty")
			case n == UnlistedPool:
				v.addf(fmt.Sprintf("%s.names[%d]", mp, k), "%q names the pool of unlisted models; it cannot be a listed model", n)
			case names[n]:
				v.addf(fmt.Sprintf("%s.names[%d]", mp, k), "model %q is in more than one pool", n)
			}
			names[n] = true
		}
		if m.Limits != nil {
			v.limits(mp+".limits", m.Limits)
		}
		if m.ContextWindow < 0 {
			v.addf(mp+".contextWindow", "must not be negative")
		}
		if m.MaxOutputTokens < 0 {
			v.addf(mp+".maxOutputTokens", "must not be negative")
		}
		if !slices.Contains(tokenizers, m.Tokenizer) {
			v.addf(mp+".tokenizer", "is %q, want one of o200k_base, cl100k_base, estimate", m.Tokenizer)
		}
	}
}

func (v *validator) limits(path string, l *Limits) {
	for _, f := range []struct {
		name string
		val  int64
	}{
		{"requestsPerMinute", l.RequestsPerMinute},
		{"tokensPerMinute", l.TokensPerMinute},
		{"inputTokensPerMinute", l.InputTokensPerMinute},
		{"outputTokensPerMinute", l.OutputTokensPerMinute},
		{"maxConcurrency", l.MaxConcurrency},
		{"requestsPerDay", l.RequestsPerDay},
		{"tokensPerDay", l.TokensPerDay},
	} {
		if f.val < 0 {
			v.addf(path+"."+f.name, "is %d; a limit must be positive, or omitted for none", f.val)
		}
	}
}

// ValidatePolicy reports what makes one policy unusable, each problem's path under
// path (a field path such as "policies[2]" or "spec"), so a caller that holds a policy
// outside a document, like the CircuitPolicy controller, checks it with the same rules
// the sidecar applies and names its own fields.
func ValidatePolicy(path string, p *Policy) Problems {
	v := &validator{}
	v.policy(path, p)
	return v.problems
}

func (v *validator) policy(path string, p *Policy) {
	if p.FailureThreshold < 1 {
		v.addf(path+".failureThreshold", "is %d, want at least 1", p.FailureThreshold)
	}
	if p.RecoveryTimeout.D() <= 0 {
		v.addf(path+".recoveryTimeout", "must be positive")
	}
	if p.HalfOpenMaxCalls < 1 {
		v.addf(path+".halfOpenMaxCalls", "is %d, want at least 1", p.HalfOpenMaxCalls)
	}
	v.kinds(path+".failureOn", p.FailureOn)
	r := &p.Retry
	if r.MaxRetries < 0 {
		v.addf(path+".retry.maxRetries", "must not be negative")
	}
	if r.BaseDelay.D() <= 0 {
		v.addf(path+".retry.baseDelay", "must be positive")
	}
	if r.MaxDelay < r.BaseDelay {
		v.addf(path+".retry.maxDelay", "(%s) must not be below baseDelay (%s)", r.MaxDelay.D(), r.BaseDelay.D())
	}
	if r.JitterPercent < 0 || r.JitterPercent > 100 {
		v.addf(path+".retry.jitterPercent", "is %d, want 0..100", r.JitterPercent)
	}
	if r.UnavailableBaseDelay < 0 {
		v.addf(path+".retry.unavailableBaseDelay", "must not be negative")
	}
	if r.MaxTotal < 0 {
		v.addf(path+".retry.maxTotal", "must not be negative")
	}
	if p.RequestTimeout.D() <= 0 {
		v.addf(path+".requestTimeout", "must be positive")
	}
}

func (v *validator) chain(c *Chain, providers map[string]*Provider, policies map[string]bool) {
	if len(c.Entries) == 0 {
		v.addf("chain.entries", "must list at least one entry")
	}
	seen := map[string]bool{}
	for i, e := range c.Entries {
		path := fmt.Sprintf("chain.entries[%d]", i)
		p := providers[e.Provider]
		if p == nil {
			v.addf(path+".provider", "names provider %q, which the document does not define", e.Provider)
		}
		switch {
		case e.Model == "":
			v.addf(path+".model", "must not be empty")
		case p != nil && p.RejectsUnlisted() && !p.Lists(e.Model):
			// The entry could never serve a request.
			v.addf(path+".model", "%q is not listed by provider %q, which rejects unlisted models", e.Model, e.Provider)
		}
		if key := e.Provider + "\x00" + e.Model; seen[key] {
			v.addf(path, "repeats %s/%s", e.Provider, e.Model)
		} else {
			seen[key] = true
		}
		if e.Policy != "" && !policies[e.Policy] {
			v.addf(path+".policy", "names policy %q, which the document does not define", e.Policy)
		}
	}
	v.kinds("chain.fallbackOn", c.FallbackOn)
	if c.DefaultPriority != 0 && (c.DefaultPriority < 1 || c.DefaultPriority > 9) {
		v.addf("chain.defaultPriority", "is %d, want 1..9", c.DefaultPriority)
	}
	if c.WaitInteractive < 0 || c.WaitBatch < 0 {
		v.addf("chain.waitInteractive", "and waitBatch must not be negative")
	}
}

// uniqueName checks that name is set and not yet in seen, and adds it.
func (v *validator) uniqueName(path, name string, seen map[string]bool) {
	if name == "" {
		v.addf(path, "must not be empty")
	} else if seen[name] {
		v.addf(path, "%q is listed twice", name)
	}
	seen[name] = true
}

func (v *validator) kinds(path string, kinds []string) {
	for i, k := range kinds {
		if !slices.Contains(failureKinds, k) {
			v.addf(fmt.Sprintf("%s[%d]", path, i), "is %q, want one of %s", k, strings.Join(failureKinds, ", "))
		}
	}
}

func (v *validator) url(path, raw string, schemes ...string) {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		v.addf(path, "must not be empty")
	case err != nil:
		v.addf(path, "is not a URL: %v", err)
	case !slices.Contains(schemes, u.Scheme) || u.Host == "":
		v.addf(path, "is %q, want an absolute %s URL", raw, strings.Join(schemes, " or "))
	}
}

// Problem is one thing wrong with a limiter config or part of one.
type Problem struct {
	// Path is the field's path, as in "providers[0].keys[1].id".
	Path   string
	Detail string
}

func (p Problem) String() string { return p.Path + ": " + p.Detail }

// Problems lists what a validation found, in field order.
type Problems []Problem

// Error joins every problem, so one message carries all the fixes needed.
func (ps Problems) Error() string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, "; ")
}

// Err is nil when there are no problems, so callers can return it as an error.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

type validator struct{ problems Problems }

func (v *validator) addf(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Detail: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return fmt.Errorf("invalid limiter config: %w", v.problems)
}
