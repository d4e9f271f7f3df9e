package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CircuitPolicySpec is the breaker and retry policy for calls to one provider model.
type CircuitPolicySpec struct {
	// failureThreshold is the number of consecutive counted failures that opens the
	// breaker for a provider model.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	FailureThreshold int32 `json:"failureThreshold,omitempty"`

	// recoveryTimeout is how long an open breaker refuses calls before it lets
	// half-open probes through.
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="recoveryTimeout must be between 1s and 24h"
	RecoveryTimeout *metav1.Duration `json:"recoveryTimeout,omitempty"`

	// halfOpenMaxCalls is the most probe calls in flight while half-open; one success
	// closes the breaker, one failure opens it again.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	HalfOpenMaxCalls int32 `json:"halfOpenMaxCalls,omitempty"`

	// failureOn are the failures that count toward opening the breaker. 429s
	// (rateLimited) count only when listed: they are usually the limiter's business,
	// not a sign of a broken provider.
	// +optional
	// +kubebuilder:default={serverError,unavailable,timeout,connectionError}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=5
	// +listType=set
	FailureOn []BreakerFailureKind `json:"failureOn,omitempty"`

	// retry is the retry policy for failed calls.
	// +optional
	// +kubebuilder:default={}
	Retry RetryPolicy `json:"retry,omitempty"`

	// requestTimeout bounds one attempt: the time to the response's first byte and
	// any silence between streamed bytes after it (provider keep-alives count as bytes).
	// +optional
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="requestTimeout must be between 1s and 1h"
	RequestTimeout *metav1.Duration `json:"requestTimeout,omitempty"`
}

// BreakerFailureKind is a FailureKind that a breaker can count: failures of the
// upstream call itself, not local refusals or the caller's own mistakes.
// +kubebuilder:validation:Enum=serverError;unavailable;timeout;connectionError;rateLimited
type BreakerFailureKind string

// RetryPolicy is exponential backoff with jitter that honours the provider's
// Retry-After.
// +kubebuilder:validation:XValidation:rule="!has(self.baseDelay) || !has(self.maxDelay) || duration(self.maxDelay) >= duration(self.baseDelay)",message="maxDelay must not be shorter than baseDelay",fieldPath=".maxDelay"
// +kubebuilder:validation:XValidation:rule="!has(self.maxTotal) || !has(self.baseDelay) || duration(self.maxTotal) >= duration(self.baseDelay)",message="maxTotal must not be shorter than baseDelay",fieldPath=".maxTotal"
type RetryPolicy struct {
	// maxRetries is the most retries after the first attempt; 0 disables retries.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=20
	MaxRetries *int32 `json:"maxRetries,omitempty"`
	// baseDelay is the first backoff delay; each retry doubles it.
	// +optional
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('1h')",message="baseDelay must be between 1ms and 1h"
	BaseDelay *metav1.Duration `json:"baseDelay,omitempty"`
	// maxDelay caps one backoff delay.
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('1h')",message="maxDelay must be between 1ms and 1h"
	MaxDelay *metav1.Duration `json:"maxDelay,omitempty"`
	// jitterPercent spreads each delay by up to this percent either way, so that
	// clients that failed together do not retry together.
	// +optional
	// +kubebuilder:default=25
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	JitterPercent *int32 `json:"jitterPercent,omitempty"`
	// respectRetryAfter waits at least as long as the provider's Retry-After,
	// retry-after-ms or RetryInfo says.
	// +optional
	// +kubebuilder:default=true
	RespectRetryAfter *bool `json:"respectRetryAfter,omitempty"`
	// unavailableBaseDelay is the first delay after a 503 or 529 (overloaded), which
	// rarely clears within seconds.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('1h')",message="unavailableBaseDelay must be between 0s and 1h"
	UnavailableBaseDelay *metav1.Duration `json:"unavailableBaseDelay,omitempty"`
	// maxTotal bounds all attempts of one request together, waits included.
	// Omitted, it is maxDelay times (maxRetries + 1).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('6h')",message="maxTotal must be between 1ms and 6h"
	MaxTotal *metav1.Duration `json:"maxTotal,omitempty"`
}

// BreakerState is a circuit breaker's state.
// +kubebuilder:validation:Enum=Closed;Open;HalfOpen
type BreakerState string

// Breaker states.
const (
	BreakerClosed   BreakerState = "Closed"
	BreakerOpen     BreakerState = "Open"
	BreakerHalfOpen BreakerState = "HalfOpen"
)

// CircuitPolicyStatus is what the operator and the sidecars observe.
type CircuitPolicyStatus struct {
	// conditions are Ready.
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

	// breakers are the breakers under this policy, as the sidecars report them: the
	// worst state any sidecar reports for a provider model.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	Breakers []BreakerStatus `json:"breakers,omitempty"`

	// openBreakers counts breakers that are Open or HalfOpen, for kubectl get.
	// +optional
	OpenBreakers int32 `json:"openBreakers"`

	// lastUpdated is when the sidecars' reports were last folded into this status.
	// +optional
	LastUpdated *metav1.Time `json:"lastUpdated,omitempty"`
}

// BreakerStatus is the state of one provider model's breaker.
type BreakerStatus struct {
	// providerQuota is the ProviderQuota the breaker guards.
	// +required
	// +kubebuilder:validation:MaxLength=253
	ProviderQuota string `json:"providerQuota"`
	// model is the model (pool) the breaker guards.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Model string `json:"model"`
	// state is Closed, Open or HalfOpen.
	// +required
	State BreakerState `json:"state"`
	// since is when the breaker entered state.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// opensLastHour counts transitions to Open in the last hour.
	// +optional
	OpensLastHour int32 `json:"opensLastHour,omitempty"`
	// lastFailure describes the most recent counted failure (kind and status code;
	// never request content).
	// +optional
	// +kubebuilder:validation:MaxLength=128
	LastFailure string `json:"lastFailure,omitempty"`
}

// CircuitPolicy is a circuit-breaker and retry policy. FallbackChain entries and
// ProviderQuotas name it; the limiter sidecars enforce it and report their breakers'
// states into its status.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cbp,categories=aiquota
// +kubebuilder:printcolumn:name="Threshold",type=integer,JSONPath=`.spec.failureThreshold`
// +kubebuilder:printcolumn:name="Recovery",type=string,JSONPath=`.spec.recoveryTimeout`
// +kubebuilder:printcolumn:name="Open",type=integer,JSONPath=`.status.openBreakers`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type CircuitPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the policy; every field has a default, so an empty spec is valid.
	// +optional
	// +kubebuilder:default={}
	Spec CircuitPolicySpec `json:"spec,omitempty"`

	// status is observed state.
	// +optional
	Status CircuitPolicyStatus `json:"status,omitempty"`
}

// CircuitPolicyList is a list of CircuitPolicy.
// +kubebuilder:object:root=true
type CircuitPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CircuitPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&CircuitPolicy{}, &CircuitPolicyList{})
}
