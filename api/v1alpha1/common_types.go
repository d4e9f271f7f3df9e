package v1alpha1

// Condition types shared by all three kinds.
const (
	// ConditionReady is True when the resource is valid, its references resolve and
	// the limiter configuration it feeds has been rendered.
	ConditionReady = "Ready"
	// ConditionReferencesResolved is True when every object the spec names exists.
	ConditionReferencesResolved = "ReferencesResolved"
	// ConditionConfigRendered is True when the limiter ConfigMap matches the spec.
	ConditionConfigRendered = "ConfigRendered"
	// ConditionDemandExceedsQuota (ProviderQuota only) is True while requests wait
	// in the sidecars' queues although the account's leases already grant the whole
	// account (less its margin and the reserve for new pods). The control channel
	// writes it, not the reconciler, and only while sidecars hold leases.
	ConditionDemandExceedsQuota = "DemandExceedsQuota"
)

// Condition reasons. They are part of the API: alerts and scripts match on them.
const (
	ReasonReady                 = "Ready"
	ReasonResolved              = "Resolved"
	ReasonRendered              = "Rendered"
	ReasonSecretNotFound        = "SecretNotFound"
	ReasonSecretKeyNotFound     = "SecretKeyNotFound"
	ReasonProviderQuotaNotFound = "ProviderQuotaNotFound"
	ReasonCircuitPolicyNotFound = "CircuitPolicyNotFound"
	ReasonProviderQuotaNotReady = "ProviderQuotaNotReady"
	ReasonInvalidSpec           = "InvalidSpec"
	ReasonRenderFailed          = "RenderFailed"
	ReasonReferencesUnresolved  = "ReferencesUnresolved"
	// ReasonRenderedPartially: the ConfigMap holds a config of what exists. Entries
	// whose ProviderQuota is missing (or that name a model their quota rejects) are
	// left out, and a missing CircuitPolicy is replaced by the policy that applies
	// without it, until the object appears.
	ReasonRenderedPartially = "RenderedPartially"
	// ReasonQueuedAtFullGrant: DemandExceedsQuota is True, requests wait although
	// the account is fully granted.
	ReasonQueuedAtFullGrant = "QueuedAtFullGrant"
	// ReasonWithinQuota: DemandExceedsQuota is False, the leases cover the demand.
	ReasonWithinQuota = "WithinQuota"
)

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// name of the referenced object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// FailureKind names a class of failed call. CircuitPolicy counts some of them toward
// opening a breaker; FallbackChain moves to the next entry on some of them.
// +kubebuilder:validation:Enum=serverError;unavailable;timeout;connectionError;rateLimited;circuitOpen;contextLengthExceeded;quotaExhausted
type FailureKind string

// Failure kinds.
const (
	// FailureServerError is an upstream 500, 502, 504 or other 5xx except 503.
	FailureServerError FailureKind = "serverError"
	// FailureUnavailable is an upstream 503, or Anthropic's 529 overloaded_error.
	FailureUnavailable FailureKind = "unavailable"
	// FailureTimeout is a request that got no response in time.
	FailureTimeout FailureKind = "timeout"
	// FailureConnectionError is a refused or reset connection, or a DNS or TLS failure.
	FailureConnectionError FailureKind = "connectionError"
	// FailureRateLimited is a retryable upstream 429.
	FailureRateLimited FailureKind = "rateLimited"
	// FailureCircuitOpen is a call the breaker refused locally.
	FailureCircuitOpen FailureKind = "circuitOpen"
	// FailureContextLengthExceeded is a prompt plus output that does not fit the model.
	FailureContextLengthExceeded FailureKind = "contextLengthExceeded"
	// FailureQuotaExhausted is a billing stop: OpenAI's insufficient_quota, DeepSeek's 402.
	FailureQuotaExhausted FailureKind = "quotaExhausted"
)
