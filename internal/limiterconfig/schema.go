// Package limiterconfig is the versioned configuration document that the operator
// renders (one per FallbackChain or lone ProviderQuota) and the limiter sidecar loads.
//
// It is the only package shared by the control plane and the data plane, so it holds
// plain data, parsing and validation, and nothing else: no Kubernetes types, no I/O
// beyond reading bytes handed to it.
package limiterconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aiquota/aiquota/internal/jsonduration"
)

// SchemaVersion is the value of Config.SchemaVersion this package reads and writes.
// A sidecar refuses documents of any other version instead of guessing their meaning.
const SchemaVersion = "aiquota.dev/limiter-config/v1"

// MaxDocumentBytes bounds what Parse accepts; a rendered config for even a very large
// chain is a few kilobytes, so anything near this is a mistake, not a config.
const MaxDocumentBytes = 1 << 20

// Provider types. They match the ProviderQuota `provider` enum.
const (
	ProviderOpenAI           = "openai"
	ProviderAnthropic        = "anthropic"
	ProviderGemini           = "gemini"
	ProviderDeepSeek         = "deepseek"
	ProviderOpenAICompatible = "openai-compatible"
)

// Tokenizers the limiter knows. "estimate" is a character-based estimate used for
// models whose vocabulary is not public.
const (
	TokenizerO200kBase  = "o200k_base"
	TokenizerCl100kBase = "cl100k_base"
	TokenizerEstimate   = "estimate"
)

// Failure kinds, shared by CircuitPolicy.failureOn and FallbackChain.fallbackOn.
const (
	FailureServerError           = "serverError"           // 500, 502, 504 (and other 5xx but 503)
	FailureUnavailable           = "unavailable"           // 503, Anthropic 529
	FailureTimeout               = "timeout"               // request or header timeout
	FailureConnection            = "connectionError"       // refused, reset, DNS, TLS
	FailureRateLimited           = "rateLimited"           // retryable 429
	FailureCircuitOpen           = "circuitOpen"           // breaker refused locally
	FailureContextLengthExceeded = "contextLengthExceeded" // prompt + output over the window
	FailureQuotaExhausted        = "quotaExhausted"        // billing: 429 insufficient_quota, 402
)

// Config is the whole document.
type Config struct {
	// SchemaVersion must equal SchemaVersion.
	SchemaVersion string `json:"schemaVersion"`
	// Source names the resource this document was rendered from, for reports and logs.
	Source Source `json:"source"`
	// Providers are the accounts this sidecar may call, keyed by Name.
	Providers []Provider `json:"providers"`
	// Chain, when set, is the ordered list of models the app's requests go to.
	// Without it, a request goes to the provider that serves the requested model.
	Chain *Chain `json:"chain,omitempty"`
	// Policies are the circuit-breaker and retry policies, keyed by Name.
	// The empty name is never used: DefaultPolicy applies where no policy is named.
	Policies []Policy `json:"policies,omitempty"`
	// Queue bounds how long and how many requests wait for capacity; absent means
	// DefaultQueue. A present queue is taken as written: maxWait 0 never queues.
	Queue *Queue `json:"queue,omitempty"`
	// Control, when set, is the manager's control channel.
	Control *Control `json:"control,omitempty"`
}

// Source identifies the rendering resource.
type Source struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Generation int64  `json:"generation,omitempty"`
}

// Provider is one ProviderQuota: an endpoint, the keys of its accounts, and limits.
type Provider struct {
	// Name is the ProviderQuota's name; unique within the document.
	Name string `json:"name"`
	// Type is one of the Provider* constants; it selects the wire dialect.
	Type string `json:"type"`
	// Endpoint is the provider's base URL, e.g. https://api.openai.com.
	Endpoint string `json:"endpoint"`
	// Tier is a free-form label, reported back, never interpreted.
	Tier string `json:"tier,omitempty"`
	// Keys are the accounts. Each key gets its own buckets: limits are per account,
	// so N keys carry N times the limits.
	Keys []Key `json:"keys"`
	// Limits apply to every model pool of every key unless a model overrides them.
	Limits Limits `json:"limits"`
	// Models lists pools with their own limits or metadata. What happens to a model
	// none of them lists is UnlistedModels.
	Models []ModelPool `json:"models,omitempty"`
	// UnlistedModels is UnlistedShareAccountLimits ("" means the same) or
	// UnlistedReject.
	UnlistedModels string `json:"unlistedModels,omitempty"`
	// SafetyMarginPercent is taken off every rate limit, 0..50.
	SafetyMarginPercent int32 `json:"safetyMarginPercent"`
	// LearnFromHeaders lets provider rate-limit headers correct local state.
	LearnFromHeaders bool `json:"learnFromHeaders"`
	// Policy names the default Policy for this provider's models ("" = DefaultPolicy).
	Policy string `json:"policy,omitempty"`
}

// Key points at a mounted secret file. The key material itself never appears here.
type Key struct {
	// ID is a stable, non-secret label ("<secret>/<key>") used in state and metrics.
	ID string `json:"id"`
	// File is the path of the mounted file holding the API key.
	File string `json:"file"`
}

// Limits are per pool. Zero means "not limited"; negative values are invalid.
type Limits struct {
	RequestsPerMinute     int64 `json:"requestsPerMinute,omitempty"`
	TokensPerMinute       int64 `json:"tokensPerMinute,omitempty"`
	InputTokensPerMinute  int64 `json:"inputTokensPerMinute,omitempty"`
	OutputTokensPerMinute int64 `json:"outputTokensPerMinute,omitempty"`
	MaxConcurrency        int64 `json:"maxConcurrency,omitempty"`
	RequestsPerDay        int64 `json:"requestsPerDay,omitempty"`
	TokensPerDay          int64 `json:"tokensPerDay,omitempty"`
}

// ModelPool is a pool as declared: one model, or a family of models sharing one set
// of limits (the API's ModelPool).
type ModelPool struct {
	// Names are the model names in the pool; the first is the pool's name.
	Names []string `json:"names"`
	// Limits, when set, replace the provider's Limits field by field (a zero field
	// keeps the provider's value).
	Limits *Limits `json:"limits,omitempty"`
	// ContextWindow in tokens; 0 means the catalogue's window for the requested
	// model (LookupModel), or none.
	ContextWindow int64 `json:"contextWindow,omitempty"`
	// MaxOutputTokens is assumed when a request does not say; 0 means
	// DefaultMaxOutputTokens, or the model's own maximum if the catalogue has a
	// smaller one.
	MaxOutputTokens int64 `json:"maxOutputTokens,omitempty"`
	// Tokenizer is one of the Tokenizer* constants; "" picks by model name.
	Tokenizer string `json:"tokenizer,omitempty"`
}

// What a provider does with a model that none of its pools lists (the API's
// spec.unlistedModels).
const (
	// UnlistedShareAccountLimits: every unlisted model draws on one pool,
	// UnlistedPool, with the provider's limits. Any number of made-up model names
	// then gets no more than one pool's limits, as the account has.
	UnlistedShareAccountLimits = "shareAccountLimits"
	// UnlistedReject: the sidecar refuses a request for an unlisted model.
	UnlistedReject = "reject"
)

// UnlistedPool names the pool that a provider's unlisted models share. No listed
// model may carry this name (Validate refuses it), so it never merges with a
// declared pool.
const UnlistedPool = "(unlisted)"

// DefaultMaxOutputTokens is the output budget reserved for a request that states
// none, when its pool does not set one. There is no default context window: a
// model neither its pool nor the catalogue gives a window is not checked.
const DefaultMaxOutputTokens = 4_096

// Chain is the ordered fallback list of a FallbackChain.
type Chain struct {
	Entries []ChainEntry `json:"entries"`
	// FallbackOn are the failure kinds (Failure* constants) that move to the next entry.
	FallbackOn []string `json:"fallbackOn,omitempty"`
	// ModelAliases are model names the app may send that mean "this chain".
	ModelAliases []string `json:"modelAliases,omitempty"`
	// DefaultPriority applies to requests without a priority header, 1..9.
	DefaultPriority int32 `json:"defaultPriority,omitempty"`
	// WaitInteractive and WaitBatch are how long a request of priority 1 and 9
	// waits at an entry (for its quota, or for its retry policy's next attempt)
	// before moving to the next entry; priorities between get a budget in
	// proportion. Zero means DefaultWaitInteractive and DefaultWaitBatch.
	WaitInteractive Duration `json:"waitInteractive,omitempty"`
	WaitBatch       Duration `json:"waitBatch,omitempty"`
}

// Defaults of a chain's wait budget: an interactive request moves on after a
// short wait, batch work waits for the primary's capacity.
const (
	DefaultWaitInteractive = Duration(time.Second)
	DefaultWaitBatch       = Duration(60 * time.Second)
)

// WaitBudget is how long a request of priority p (1..9) waits at an entry that is
// not the chain's last before moving on.
func (c *Chain) WaitBudget(p int) time.Duration {
	lo, hi := c.WaitInteractive, c.WaitBatch
	if lo <= 0 {
		lo = DefaultWaitInteractive
	}
	if hi <= 0 {
		hi = DefaultWaitBatch
	}
	p = min(max(p, 1), 9)
	return lo.D() + (hi.D()-lo.D())*time.Duration(p-1)/8
}

// ChainEntry is one model at one provider.
type ChainEntry struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	Policy   string `json:"policy,omitempty"`
}

// Policy is a CircuitPolicy.
type Policy struct {
	Name             string   `json:"name"`
	FailureThreshold int32    `json:"failureThreshold"`
	RecoveryTimeout  Duration `json:"recoveryTimeout"`
	HalfOpenMaxCalls int32    `json:"halfOpenMaxCalls"`
	// FailureOn are the failure kinds that count toward opening the breaker.
	FailureOn      []string `json:"failureOn"`
	Retry          Retry    `json:"retry"`
	RequestTimeout Duration `json:"requestTimeout"`
}

// Retry is the retry half of a Policy.
type Retry struct {
	MaxRetries           int32    `json:"maxRetries"`
	BaseDelay            Duration `json:"baseDelay"`
	MaxDelay             Duration `json:"maxDelay"`
	JitterPercent        int32    `json:"jitterPercent"`
	RespectRetryAfter    bool     `json:"respectRetryAfter"`
	UnavailableBaseDelay Duration `json:"unavailableBaseDelay"`
	// MaxTotal bounds the whole attempt sequence including waits; 0 means
	// MaxDelay * (MaxRetries+1).
	MaxTotal Duration `json:"maxTotal,omitempty"`
}

// Queue bounds waiting for capacity.
type Queue struct {
	// MaxWait is the longest a request waits for capacity before a local 429.
	MaxWait Duration `json:"maxWait"`
	// MaxDepth is the most requests waiting at once; further ones get a 429 at once.
	MaxDepth int32 `json:"maxDepth"`
}

// Control is the sidecar's side of the control channel.
type Control struct {
	// URL of the manager's report endpoint (https).
	URL string `json:"url"`
	// TokenFile is the projected service-account token presented as bearer.
	TokenFile string `json:"tokenFile"`
	// CAFile verifies the manager's serving certificate.
	CAFile string `json:"caFile,omitempty"`
	// ReportInterval between reports.
	ReportInterval Duration `json:"reportInterval"`
}

// DefaultPolicy is what CircuitPolicy's defaults render to; used where no policy is named.
func DefaultPolicy() Policy {
	return Policy{
		FailureThreshold: 5,
		RecoveryTimeout:  Duration(60 * time.Second),
		HalfOpenMaxCalls: 3,
		FailureOn:        []string{FailureServerError, FailureUnavailable, FailureTimeout, FailureConnection},
		Retry: Retry{
			MaxRetries:           5,
			BaseDelay:            Duration(time.Second),
			MaxDelay:             Duration(60 * time.Second),
			JitterPercent:        25,
			RespectRetryAfter:    true,
			UnavailableBaseDelay: Duration(30 * time.Second),
		},
		RequestTimeout: Duration(10 * time.Minute),
	}
}

// DefaultQueue is used when a document has no queue section.
func DefaultQueue() Queue {
	return Queue{MaxWait: Duration(30 * time.Second), MaxDepth: 1000}
}

// Parse decodes and validates a document. Unknown fields are errors: a typo in a
// hand-written config must not silently mean "default".
func Parse(data []byte) (*Config, error) {
	if len(data) > MaxDocumentBytes {
		return nil, fmt.Errorf("limiter config is %d bytes, more than the %d allowed", len(data), MaxDocumentBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode limiter config: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode limiter config: trailing data after the JSON document")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Marshal renders a document deterministically: the same Config always yields the
// same bytes (struct field order is fixed and there are no maps), with a trailing
// newline so the ConfigMap value diffs cleanly.
func Marshal(c *Config) ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode limiter config: %w", err)
	}
	return append(b, '\n'), nil
}

// Duration is a time.Duration written as a Go duration string ("1m30s").
type Duration = jsonduration.Duration

// Pool is a provider's model pool resolved for one model name.
type Pool struct {
	// Name is the pool's first model name, or UnlistedPool for an unlisted model.
	Name   string
	Limits Limits
	// ContextWindow is 0 when neither the pool nor the catalogue knows it: the
	// request is then not checked.
	ContextWindow   int64
	MaxOutputTokens int64
	Tokenizer       string
}

// PoolFor resolves the pool serving model: its listed pool with the provider's limits
// under the pool's overrides, or for an unlisted model UnlistedPool with the
// provider's limits. The window and output budget are the pool's where it sets
// them, else the model's from the catalogue. Whether an unlisted model may be used
// at all is RejectsUnlisted's question, not this one's.
func (p *Provider) PoolFor(model string) Pool {
	pool := Pool{Name: UnlistedPool, Limits: p.Limits, MaxOutputTokens: DefaultMaxOutputTokens}
	if info, ok := LookupModel(model); ok {
		pool.ContextWindow = info.ContextWindow
		if info.MaxOutputTokens > 0 {
			pool.MaxOutputTokens = min(pool.MaxOutputTokens, info.MaxOutputTokens)
		}
	}
	for i := range p.Models {
		m := &p.Models[i]
		if !slices.Contains(m.Names, model) {
			continue
		}
		pool.Name = m.Names[0]
		if m.Limits != nil {
			pool.Limits = overlay(p.Limits, *m.Limits)
		}
		if m.ContextWindow > 0 {
			pool.ContextWindow = m.ContextWindow
		}
		if m.MaxOutputTokens > 0 {
			pool.MaxOutputTokens = m.MaxOutputTokens
		}
		pool.Tokenizer = m.Tokenizer
		break
	}
	return pool
}

// Lists reports whether one of the provider's pools names model.
func (p *Provider) Lists(model string) bool {
	for i := range p.Models {
		if slices.Contains(p.Models[i].Names, model) {
			return true
		}
	}
	return false
}

// ListedModels are the model names the provider's pools list, in pool order.
func (p *Provider) ListedModels() []string {
	var out []string
	for i := range p.Models {
		out = append(out, p.Models[i].Names...)
	}
	return out
}

// RejectsUnlisted reports whether requests for models the provider does not list
// are refused.
func (p *Provider) RejectsUnlisted() bool { return p.UnlistedModels == UnlistedReject }

func overlay(base, over Limits) Limits {
	pick := func(b, o int64) int64 {
		if o != 0 {
			return o
		}
		return b
	}
	return Limits{
		RequestsPerMinute:     pick(base.RequestsPerMinute, over.RequestsPerMinute),
		TokensPerMinute:       pick(base.TokensPerMinute, over.TokensPerMinute),
		InputTokensPerMinute:  pick(base.InputTokensPerMinute, over.InputTokensPerMinute),
		OutputTokensPerMinute: pick(base.OutputTokensPerMinute, over.OutputTokensPerMinute),
		MaxConcurrency:        pick(base.MaxConcurrency, over.MaxConcurrency),
		RequestsPerDay:        pick(base.RequestsPerDay, over.RequestsPerDay),
		TokensPerDay:          pick(base.TokensPerDay, over.TokensPerDay),
	}
}

// QueueOrDefault returns the document's queue, or DefaultQueue when it has none.
func (c *Config) QueueOrDefault() Queue {
	if c.Queue == nil {
		return DefaultQueue()
	}
	return *c.Queue
}

// PolicyNamed returns the named policy, or DefaultPolicy for "" or an unknown name
// (Validate has already refused unknown names in a parsed document).
func (c *Config) PolicyNamed(name string) Policy {
	for _, p := range c.Policies {
		if p.Name == name {
			return p
		}
	}
	return DefaultPolicy()
}
