package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProviderType is an AI provider's API family; it selects the wire dialect.
// +kubebuilder:validation:Enum=openai;anthropic;gemini;deepseek;openai-compatible
type ProviderType string

// Provider types.
const (
	ProviderOpenAI           ProviderType = "openai"
	ProviderAnthropic        ProviderType = "anthropic"
	ProviderGemini           ProviderType = "gemini"
	ProviderDeepSeek         ProviderType = "deepseek"
	ProviderOpenAICompatible ProviderType = "openai-compatible"
)

// DefaultEndpoints are the base URLs used when spec.endpoint is omitted.
// openai-compatible has none: its endpoint is required.
var DefaultEndpoints = map[ProviderType]string{
	ProviderOpenAI:    "https://api.openai.com",
	ProviderAnthropic: "https://api.anthropic.com",
	ProviderGemini:    "https://generativelanguage.googleapis.com",
	ProviderDeepSeek:  "https://api.deepseek.com",
}

// UnlistedModelPolicy is what a ProviderQuota does with a model its spec.models
// does not list.
// +kubebuilder:validation:Enum=shareAccountLimits;reject
type UnlistedModelPolicy string

// Unlisted model policies.
const (
	// UnlistedModelsShareAccountLimits: every unlisted model draws on one pool with
	// spec.limits.
	UnlistedModelsShareAccountLimits UnlistedModelPolicy = "shareAccountLimits"
	// UnlistedModelsReject: a request for an unlisted model is refused.
	UnlistedModelsReject UnlistedModelPolicy = "reject"
)

// ProviderQuotaSpec declares one provider account (or several accounts of the same
// tier) and the limits the limiter sidecars keep to when they call it.
// +kubebuilder:validation:XValidation:rule="self.provider != 'openai-compatible' || has(self.endpoint)",message="endpoint is required when provider is openai-compatible",fieldPath=".endpoint"
// +kubebuilder:validation:XValidation:rule="!has(self.unlistedModels) || self.unlistedModels != 'reject' || (has(self.models) && size(self.models) > 0)",message="unlistedModels: reject needs spec.models to list at least one model, or nothing could be called",fieldPath=".unlistedModels"
// The tier names below are internal/presets' tiers.json; TestTierRuleMatchesPresets
// fails when the two disagree.
// +kubebuilder:validation:XValidation:rule="!has(self.tier) || self.tier in {'openai': ['tier-1', 'tier-2', 'tier-3', 'tier-4', 'tier-5'], 'anthropic': ['build-tier-4'], 'gemini': ['free', 'pay-as-you-go', 'enterprise'], 'deepseek': ['starter', 'basic', 'standard', 'enterprise'], 'openai-compatible': []}[self.provider]",messageExpression="self.provider == 'openai-compatible' ? 'tier ' + self.tier + ': provider openai-compatible has no tier presets; omit spec.tier' : 'tier ' + self.tier + ' is not a known ' + self.provider + ' tier (known: ' + {'openai': 'tier-1, tier-2, tier-3, tier-4, tier-5', 'anthropic': 'build-tier-4', 'gemini': 'free, pay-as-you-go, enterprise', 'deepseek': 'starter, basic, standard, enterprise'}[self.provider] + ')'",fieldPath=".tier"
type ProviderQuotaSpec struct {
	// provider is the API family: openai, anthropic, gemini, deepseek or
	// openai-compatible (any endpoint that speaks the OpenAI API).
	// +required
	Provider ProviderType `json:"provider"`

	// endpoint is the provider's base URL, without the /v1 path. Omitted, it is the
	// provider's public API (https://api.openai.com, https://api.anthropic.com,
	// https://generativelanguage.googleapis.com, https://api.deepseek.com); required
	// for openai-compatible. status.endpoint shows the one in use. It must be https
	// (the sidecars send the API key to it), except to a loopback address
	// (localhost, 127.0.0.0/8, ::1) or an in-cluster Service (a host ending in .svc
	// or .svc.cluster.local), where plain http does not leave the node or cluster.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHost() != ''",message="endpoint must be an absolute http or https URL"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^(?i)http://') || self.matches('^(?i)http://(localhost|127([.][0-9]{1,3}){3}|\\\\[::1\\\\]|([a-z0-9]([-a-z0-9]*[a-z0-9])?[.])+svc([.]cluster[.]local)?)(:[0-9]{1,5})?(/.*)?$')",message="endpoint must use https: the API key would cross the network in cleartext; plain http is allowed only to loopback (localhost, 127.0.0.0/8, ::1) and to in-cluster Services (*.svc, *.svc.cluster.local)"
	// +kubebuilder:validation:XValidation:rule="!self.contains('?') && !self.contains('#')",message="endpoint must not carry a query or fragment"
	Endpoint string `json:"endpoint,omitempty"`

	// tier names the account's usage tier in the provider's published tables
	// (docs/tiers.md): openai tier-1 to tier-5; anthropic build-tier-4; gemini free,
	// pay-as-you-go, enterprise; deepseek starter, basic, standard, enterprise
	// (openai-compatible has none). Every limit that spec.limits and a pool's limits
	// leave unset takes the tier's figure, per model where the provider publishes
	// them per model; status.effectiveLimits shows what each pool enforces and where
	// each figure came from. The provider's rate-limit headers still lower a figure
	// that is out of date.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Tier string `json:"tier,omitempty"`

	// credentials are Secret keys holding API keys, one per provider account. Every
	// account gets the full limits below, so N credentials carry N times the limits.
	// The keys are mounted into the limiter sidecars as files; the operator never
	// reads them.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +kubebuilder:validation:XValidation:rule="self.all(c, self.exists_one(d, d.name == c.name && d.key == c.key))",message="credentials must not name the same Secret key twice"
	Credentials []SecretKeyRef `json:"credentials"`

	// limits apply to each model pool of each account, as the providers apply their
	// tier limits per model. An omitted limit is not enforced (and may still be
	// learned from the provider's rate-limit headers).
	// +optional
	Limits QuotaLimits `json:"limits,omitempty"`

	// unlistedModels says what a request for a model that spec.models does not list
	// gets. shareAccountLimits (the default): all such models draw on one pool,
	// named "(unlisted)" in status and metrics, with spec.limits (and a model's
	// context window from the model catalogue, docs/models.md, or none), so no
	// choice of model names gets more than one pool's limits out of each account. reject: the sidecars refuse such a request with a 404 that names
	// the listed models, so only spec.models may be used (a FallbackChain entry for
	// an unlisted model is then left out of the chain's config).
	// +optional
	// +kubebuilder:default=shareAccountLimits
	UnlistedModels UnlistedModelPolicy `json:"unlistedModels,omitempty"`

	// models lists model pools with their own limits or metadata. A model that is not
	// listed is served as spec.unlistedModels says.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +kubebuilder:validation:XValidation:rule="self.all(m, self.exists_one(n, n.name == m.name))",message="model pool names must be unique"
	// +kubebuilder:validation:XValidation:rule="self.all(a, self.all(b, a.name == b.name || !has(b.additionalNames) || !(a.name in b.additionalNames)))",message="a model name must belong to one pool only"
	// +kubebuilder:validation:XValidation:rule="self.all(a, !has(a.additionalNames) || self.all(b, a.name == b.name || !has(b.additionalNames) || a.additionalNames.all(x, !(x in b.additionalNames))))",message="a model name must belong to one pool only"
	Models []ModelPool `json:"models,omitempty"`

	// safetyMarginPercent is kept free below every rate limit, so that clock skew and
	// estimates never push the account over.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=50
	SafetyMarginPercent *int32 `json:"safetyMarginPercent,omitempty"`

	// learnFromHeaders lets the provider's rate-limit headers correct the sidecars'
	// local state and lower limits that were declared higher than the account's real
	// ones.
	// +optional
	// +kubebuilder:default=true
	LearnFromHeaders *bool `json:"learnFromHeaders,omitempty"`

	// circuitPolicyRef names the CircuitPolicy for calls to this provider when a pod
	// uses the quota directly (a FallbackChain's entries name their own). Omitted,
	// the built-in defaults apply.
	// +optional
	CircuitPolicyRef *LocalObjectReference `json:"circuitPolicyRef,omitempty"`

	// queue bounds how long and how many requests wait for capacity in each sidecar
	// before the app gets a 429.
	// +optional
	// +kubebuilder:default={}
	Queue QueueSpec `json:"queue,omitempty"`
}

// SecretKeyRef names one key of a Secret in the ProviderQuota's namespace.
type SecretKeyRef struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// key within the Secret's data.
	// +optional
	// +kubebuilder:default=api-key
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
}

// QuotaLimits are per-minute, per-day and concurrency limits. Each is enforced only
// when set; zero is not a valid value (omit the field for "not limited").
type QuotaLimits struct {
	// requestsPerMinute (RPM), a token bucket refilled continuously.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000000
	RequestsPerMinute int64 `json:"requestsPerMinute,omitempty"`
	// tokensPerMinute (TPM), input plus output tokens.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000000
	TokensPerMinute int64 `json:"tokensPerMinute,omitempty"`
	// inputTokensPerMinute (ITPM), for providers that limit input separately (Anthropic).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000000
	InputTokensPerMinute int64 `json:"inputTokensPerMinute,omitempty"`
	// outputTokensPerMinute (OTPM), for providers that limit output separately (Anthropic).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000000
	OutputTokensPerMinute int64 `json:"outputTokensPerMinute,omitempty"`
	// maxConcurrency is the most requests in flight at once.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	MaxConcurrency int64 `json:"maxConcurrency,omitempty"`
	// requestsPerDay limits requests in a fixed window per UTC day.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000000000
	RequestsPerDay int64 `json:"requestsPerDay,omitempty"`
	// tokensPerDay limits tokens in a fixed window per UTC day.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000000000
	TokensPerDay int64 `json:"tokensPerDay,omitempty"`
}

// ModelPool is one model, or several models that share one set of limits (Anthropic
// pools limits per model family; dated snapshots share their model's limits).
// +kubebuilder:validation:XValidation:rule="!has(self.maxOutputTokens) || !has(self.contextWindow) || self.maxOutputTokens <= self.contextWindow",message="maxOutputTokens must not exceed contextWindow",fieldPath=".maxOutputTokens"
// +kubebuilder:validation:XValidation:rule="!has(self.additionalNames) || !(self.name in self.additionalNames)",message="additionalNames must not repeat name",fieldPath=".additionalNames"
// +kubebuilder:validation:XValidation:rule="self.name != '(unlisted)' && (!has(self.additionalNames) || !('(unlisted)' in self.additionalNames))",message="(unlisted) is the name of the pool of unlisted models; it cannot be listed",fieldPath=".name"
type ModelPool struct {
	// name is the model name as requests carry it (e.g. "gpt-5.5"); it also names
	// the pool in status and metrics.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name"`
	// additionalNames are further model names that draw on this pool's limits.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +listType=set
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	AdditionalNames []string `json:"additionalNames,omitempty"`
	// limits replace spec.limits field by field for this pool; a field left out here
	// keeps the spec.limits value.
	// +optional
	Limits *QuotaLimits `json:"limits,omitempty"`
	// contextWindow is the model's context length in tokens; requests whose prompt
	// plus output cannot fit are refused before they are sent. Omitted, each model
	// of the pool has the window the model catalogue (docs/models.md) gives it, and
	// a model the catalogue does not list is not checked: the provider decides.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000000
	ContextWindow int64 `json:"contextWindow,omitempty"`
	// maxOutputTokens is reserved for a request that does not state its own maximum.
	// Default 4096, or the model's own maximum where the catalogue gives a smaller one.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000000
	MaxOutputTokens int64 `json:"maxOutputTokens,omitempty"`
	// tokenizer counts prompt tokens: o200k_base (GPT-4o and later), cl100k_base
	// (GPT-4, GPT-3.5) or estimate (models without a public tokenizer). Omitted, it
	// is chosen from the model name.
	// +optional
	// +kubebuilder:validation:Enum=o200k_base;cl100k_base;estimate
	Tokenizer string `json:"tokenizer,omitempty"`
}

// QueueSpec bounds waiting for capacity.
type QueueSpec struct {
	// maxWait is the longest a request waits for capacity before the app gets a 429.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('1h')",message="maxWait must be between 0s and 1h"
	MaxWait *metav1.Duration `json:"maxWait,omitempty"`
	// maxDepth is the most requests waiting at once in one sidecar; more get a 429 at once.
	// +optional
	// +kubebuilder:default=1000
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	MaxDepth *int32 `json:"maxDepth,omitempty"`
}

// ProviderQuotaStatus is what the operator and the sidecars observe.
type ProviderQuotaStatus struct {
	// conditions are Ready, ReferencesResolved (credential Secrets exist),
	// ConfigRendered (the limiter config for direct use is up to date; reason
	// RenderedPartially while a missing CircuitPolicy is replaced by the built-in
	// defaults), written by the reconciler; and DemandExceedsQuota (requests wait
	// although the leases grant the whole account), written by the control channel
	// while sidecars hold leases.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// endpoint is the base URL in use (spec.endpoint or the provider's default).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Endpoint string `json:"endpoint,omitempty"`

	// configMapName is the ConfigMap holding the limiter configuration for pods that
	// use this quota directly.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ConfigMapName string `json:"configMapName,omitempty"`

	// utilization summarises the busiest pool over the last minute, in percent of
	// each limit, for kubectl get.
	// +optional
	Utilization *UtilizationSummary `json:"utilization,omitempty"`

	// models is the utilisation of each pool that saw traffic, as the sidecars report it.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Models []ModelUtilization `json:"models,omitempty"`

	// tokensToday counts tokens used in the current UTC day across all sidecars; it
	// survives operator restarts.
	// +optional
	TokensToday int64 `json:"tokensToday,omitempty"`
	// requestsToday counts requests sent in the current UTC day.
	// +optional
	RequestsToday int64 `json:"requestsToday,omitempty"`
	// day is the UTC date (YYYY-MM-DD) that tokensToday and requestsToday count.
	// +optional
	// +kubebuilder:validation:MaxLength=10
	Day string `json:"day,omitempty"`

	// activeSidecars is the number of limiter sidecars that reported recently.
	// +optional
	ActiveSidecars int32 `json:"activeSidecars,omitempty"`

	// learnedLimits are the limits the provider's headers revealed, where they differ
	// from the declared ones.
	// +optional
	LearnedLimits *QuotaLimits `json:"learnedLimits,omitempty"`

	// effectiveLimits are the limits each pool enforces and where each came from.
	// +optional
	EffectiveLimits *EffectiveLimits `json:"effectiveLimits,omitempty"`

	// sharing is how the account's limits are shared among its pods by leases from
	// the manager; absent when no sidecar holds a lease (leases off, or no traffic).
	// +optional
	Sharing *AccountSharing `json:"sharing,omitempty"`

	// lastUpdated is when the sidecars' reports were last folded into this status.
	// +optional
	LastUpdated *metav1.Time `json:"lastUpdated,omitempty"`
}

// EffectiveLimits are a quota's limits per pool as its sidecars enforce them: the
// spec's, the tier preset's for what the spec leaves unset, and lower limits the
// provider's headers reported. The reconciler writes them.
type EffectiveLimits struct {
	// tier is the spec.tier whose preset filled limits, if any.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Tier string `json:"tier,omitempty"`
	// presetVersion is the version (date) of the tier tables the preset came from.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	PresetVersion string `json:"presetVersion,omitempty"`
	// pools are the pool of unlisted models, "(unlisted)" (unless
	// spec.unlistedModels is reject), then spec.models in order.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=33
	Pools []PoolLimits `json:"pools,omitempty"`
}

// PoolLimits are one pool's effective limits; a limit not listed is not enforced.
type PoolLimits struct {
	// name of the pool.
	// +required
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name"`
	// limits the pool enforces, in the order of spec.limits' fields.
	// +optional
	// +listType=map
	// +listMapKey=kind
	// +kubebuilder:validation:MaxItems=7
	Limits []EffectiveLimit `json:"limits,omitempty"`
}

// LimitSource says where an effective limit came from.
// +kubebuilder:validation:Enum=spec;preset;learned
type LimitSource string

// Limit sources.
const (
	// LimitFromSpec: spec.limits or the pool's limits.
	LimitFromSpec LimitSource = "spec"
	// LimitFromPreset: the spec.tier preset.
	LimitFromPreset LimitSource = "preset"
	// LimitFromLearned: the provider's rate-limit headers reported a lower limit
	// (status.learnedLimits) than the spec or preset declares.
	LimitFromLearned LimitSource = "learned"
)

// EffectiveLimit is one limit's value and origin.
type EffectiveLimit struct {
	// kind is the limit, named as in spec.limits.
	// +required
	// +kubebuilder:validation:Enum=requestsPerMinute;tokensPerMinute;inputTokensPerMinute;outputTokensPerMinute;maxConcurrency;requestsPerDay;tokensPerDay
	Kind string `json:"kind"`
	// value of the limit.
	// +required
	Value int64 `json:"value"`
	// source of the value.
	// +required
	Source LimitSource `json:"source"`
	// declared is the spec or preset value a learned limit replaces.
	// +optional
	Declared int64 `json:"declared,omitempty"`
}

// AccountSharing is how an account is shared among the pods that use it: each
// sidecar holds a lease, a share of each limit, and the leases together never
// exceed the limit less the safety margin.
type AccountSharing struct {
	// leaseHolders is the number of sidecars holding a lease.
	// +optional
	LeaseHolders int32 `json:"leaseHolders"`
	// grantedPercent is the most of any limit of any pool and key granted in
	// leases, in percent of the limit.
	// +optional
	GrantedPercent int32 `json:"grantedPercent"`
	// queued is the number of requests waiting in the sidecars' queues.
	// +optional
	Queued int64 `json:"queued"`
	// pods are the lease holders with the largest request grants, at most 16.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Pods []PodShare `json:"pods,omitempty"`
}

// PodShare is one sidecar's lease on one pool: granted against used.
type PodShare struct {
	// pod is the pod's name.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Pod string `json:"pod"`
	// pool is the model pool.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Pool string `json:"pool"`
	// requestsPerMinuteGranted is the lease's rate.
	// +optional
	RequestsPerMinuteGranted int64 `json:"requestsPerMinuteGranted,omitempty"`
	// requestsPerMinuteUsed is the requests the pod sent in the last minute.
	// +optional
	RequestsPerMinuteUsed int64 `json:"requestsPerMinuteUsed,omitempty"`
	// concurrencyGranted is the lease's concurrency slots.
	// +optional
	ConcurrencyGranted int64 `json:"concurrencyGranted,omitempty"`
	// inFlight is the pod's requests in flight.
	// +optional
	InFlight int64 `json:"inFlight,omitempty"`
}

// UtilizationSummary is the highest utilisation of any pool, per limit, in percent.
type UtilizationSummary struct {
	// requestsPercent of requestsPerMinute.
	// +optional
	RequestsPercent int32 `json:"requestsPercent"`
	// tokensPercent of the tightest token limit (TPM, ITPM or OTPM).
	// +optional
	TokensPercent int32 `json:"tokensPercent"`
	// concurrencyPercent of maxConcurrency.
	// +optional
	ConcurrencyPercent int32 `json:"concurrencyPercent,omitempty"`
	// dailyPercent of the tightest daily cap.
	// +optional
	DailyPercent int32 `json:"dailyPercent,omitempty"`
}

// ModelUtilization is one pool's usage over the last minute.
type ModelUtilization struct {
	// name of the pool.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// requestsPerMinute used and allowed.
	// +optional
	RequestsPerMinute *Usage `json:"requestsPerMinute,omitempty"`
	// tokensPerMinute used and allowed.
	// +optional
	TokensPerMinute *Usage `json:"tokensPerMinute,omitempty"`
	// inputTokensPerMinute used and allowed.
	// +optional
	InputTokensPerMinute *Usage `json:"inputTokensPerMinute,omitempty"`
	// outputTokensPerMinute used and allowed.
	// +optional
	OutputTokensPerMinute *Usage `json:"outputTokensPerMinute,omitempty"`
	// concurrency in flight and allowed.
	// +optional
	Concurrency *Usage `json:"concurrency,omitempty"`
	// rateLimited counts upstream 429s in the last minute.
	// +optional
	RateLimited int64 `json:"rateLimited,omitempty"`
	// serverErrors counts upstream 5xx in the last minute.
	// +optional
	ServerErrors int64 `json:"serverErrors,omitempty"`
}

// Usage is an amount used against a limit.
type Usage struct {
	// used in the window.
	// +required
	Used int64 `json:"used"`
	// limit in the window; 0 when the limit is not set.
	// +optional
	Limit int64 `json:"limit,omitempty"`
	// percent is used/limit*100, rounded down; absent without a limit.
	// +optional
	Percent int32 `json:"percent,omitempty"`
}

// ProviderQuota declares an AI provider account's limits. Limiter sidecars that use it
// keep every call inside those limits, and report utilisation back into its status.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pq,categories=aiquota
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.provider`
// +kubebuilder:printcolumn:name="Tier",type=string,JSONPath=`.spec.tier`
// +kubebuilder:printcolumn:name="RPM Limit",type=integer,JSONPath=`.status.effectiveLimits.pools[0].limits[?(@.kind=="requestsPerMinute")].value`,priority=1
// +kubebuilder:printcolumn:name="Preset",type=string,JSONPath=`.status.effectiveLimits.presetVersion`,priority=1
// +kubebuilder:printcolumn:name="RPM%",type=integer,JSONPath=`.status.utilization.requestsPercent`
// +kubebuilder:printcolumn:name="TPM%",type=integer,JSONPath=`.status.utilization.tokensPercent`
// +kubebuilder:printcolumn:name="Sidecars",type=integer,JSONPath=`.status.activeSidecars`
// +kubebuilder:printcolumn:name="Leases",type=integer,JSONPath=`.status.sharing.leaseHolders`
// +kubebuilder:printcolumn:name="Granted%",type=integer,JSONPath=`.status.sharing.grantedPercent`,priority=1
// +kubebuilder:printcolumn:name="Queued",type=integer,JSONPath=`.status.sharing.queued`,priority=1
// +kubebuilder:printcolumn:name="Exceeded",type=string,JSONPath=`.status.conditions[?(@.type=="DemandExceedsQuota")].status`,priority=1
// +kubebuilder:printcolumn:name="Tokens Today",type=integer,JSONPath=`.status.tokensToday`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ProviderQuota struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the account and its limits.
	// +required
	Spec ProviderQuotaSpec `json:"spec"`

	// status is observed state.
	// +optional
	Status ProviderQuotaStatus `json:"status,omitempty"`
}

// ProviderQuotaList is a list of ProviderQuota.
// +kubebuilder:object:root=true
type ProviderQuotaList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ProviderQuota `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ProviderQuota{}, &ProviderQuotaList{})
}
