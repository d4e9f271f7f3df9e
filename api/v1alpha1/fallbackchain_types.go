package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FallbackChainSpec is the ordered list of models an application may use.
type FallbackChainSpec struct {
	// entries are tried in order: a request goes to the first entry that can take
	// it (breaker not open, context window large enough, the request expressible
	// in the entry's API dialect, quota within waitBudget) and moves down the list
	// on the failures in fallbackOn. Entries may be of different provider types:
	// requests and answers, streamed or not, are translated between dialects, and
	// the application always gets the answer in the dialect it asked in.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +kubebuilder:validation:XValidation:rule="self.all(e, self.exists_one(f, f.providerQuotaRef.name == e.providerQuotaRef.name && f.model == e.model))",message="entries must not repeat the same providerQuotaRef and model"
	Entries []ChainEntry `json:"entries"`

	// fallbackOn are the failures that move a request to the next entry. Failures
	// not listed are returned to the application.
	// +optional
	// +kubebuilder:default={rateLimited,serverError,unavailable,timeout,connectionError,circuitOpen,contextLengthExceeded}
	// +kubebuilder:validation:MaxItems=8
	// +listType=set
	FallbackOn []FailureKind `json:"fallbackOn,omitempty"`

	// modelAliases are model names the application may send that mean "this chain"
	// (e.g. "chat-default"); they are rewritten to the chosen entry's model.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	ModelAliases []string `json:"modelAliases,omitempty"`

	// defaultPriority applies to requests without an x-aiquota-priority header or pod
	// annotation: 1 is interactive, 9 is batch.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=9
	DefaultPriority *int32 `json:"defaultPriority,omitempty"`

	// waitBudget is how long a request waits at an entry that is not the last,
	// for that entry's quota or for its retry policy's next attempt, before it
	// moves to the next entry. It follows the request's priority: interactive work
	// moves on after a short wait, batch work waits for the primary's capacity.
	// +optional
	// +kubebuilder:default={}
	WaitBudget WaitBudget `json:"waitBudget,omitempty"`
}

// WaitBudget is the wait at an entry by priority: interactive for priority 1,
// batch for priority 9, in proportion for the priorities between.
// +kubebuilder:validation:XValidation:rule="!has(self.interactive) || !has(self.batch) || duration(self.interactive) <= duration(self.batch)",message="waitBudget.interactive must not be longer than waitBudget.batch"
type WaitBudget struct {
	// interactive is the wait of priority 1 requests.
	// +optional
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('10m')",message="waitBudget.interactive must be between 1ms and 10m"
	Interactive *metav1.Duration `json:"interactive,omitempty"`
	// batch is the wait of priority 9 requests.
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('1h')",message="waitBudget.batch must be between 1ms and 1h"
	Batch *metav1.Duration `json:"batch,omitempty"`
}

// ChainEntry is one model at one provider account.
type ChainEntry struct {
	// providerQuotaRef names the ProviderQuota (same namespace) to call.
	// +required
	ProviderQuotaRef LocalObjectReference `json:"providerQuotaRef"`
	// model is the model name sent to the provider.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Model string `json:"model"`
	// circuitPolicyRef names the CircuitPolicy for this entry; omitted, the
	// ProviderQuota's policy applies, else the built-in defaults.
	// +optional
	CircuitPolicyRef *LocalObjectReference `json:"circuitPolicyRef,omitempty"`
}

// FallbackChainStatus is what the operator and the sidecars observe.
type FallbackChainStatus struct {
	// conditions are Ready, ReferencesResolved, ConfigRendered. ConfigRendered has
	// reason RenderedPartially while the config leaves out entries that cannot be
	// used yet (a missing ProviderQuota, a model the quota rejects) or replaces a
	// missing CircuitPolicy; it follows when they appear.
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

	// configMapName is the ConfigMap holding the rendered limiter configuration.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ConfigMapName string `json:"configMapName,omitempty"`

	// resolvedEntries are the entries with what their references resolved to.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	ResolvedEntries []ResolvedEntry `json:"resolvedEntries,omitempty"`

	// activeEntry is the index of the entry most requests went to in the last
	// minute, as the sidecars report it.
	// +optional
	ActiveEntry *int32 `json:"activeEntry,omitempty"`
	// activeModel is the model of activeEntry, for kubectl get.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ActiveModel string `json:"activeModel,omitempty"`

	// failovers counts requests that moved down the chain.
	// +optional
	Failovers FailoverCounts `json:"failovers,omitempty"`

	// lastFailover is the most recent failover.
	// +optional
	LastFailover *Failover `json:"lastFailover,omitempty"`

	// lastUpdated is when the sidecars' reports were last folded into this status.
	// +optional
	LastUpdated *metav1.Time `json:"lastUpdated,omitempty"`
}

// ResolvedEntry is a chain entry after reference resolution.
type ResolvedEntry struct {
	// providerQuota is the referenced ProviderQuota's name.
	// +required
	// +kubebuilder:validation:MaxLength=253
	ProviderQuota string `json:"providerQuota"`
	// provider is that quota's provider type.
	// +optional
	Provider ProviderType `json:"provider,omitempty"`
	// model is the entry's model.
	// +required
	// +kubebuilder:validation:MaxLength=128
	Model string `json:"model"`
	// circuitPolicy is the policy in effect ("" = built-in defaults).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	CircuitPolicy string `json:"circuitPolicy,omitempty"`
	// resolved is true when every reference of the entry exists.
	// +required
	Resolved bool `json:"resolved"`
	// message says what is missing when resolved is false.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message,omitempty"`
}

// FailoverCounts counts failovers.
type FailoverCounts struct {
	// total since the chain was created.
	// +optional
	Total int64 `json:"total"`
	// lastHour in the last hour.
	// +optional
	LastHour int64 `json:"lastHour"`
}

// Failover is one move down the chain.
type Failover struct {
	// time of the failover.
	// +required
	Time metav1.Time `json:"time"`
	// from is "providerQuota/model" of the entry that failed.
	// +required
	// +kubebuilder:validation:MaxLength=512
	From string `json:"from"`
	// to is "providerQuota/model" of the entry that served.
	// +required
	// +kubebuilder:validation:MaxLength=512
	To string `json:"to"`
	// reason is the failure kind that caused it.
	// +required
	Reason FailureKind `json:"reason"`
}

// FallbackChain is an ordered list of models across providers. Pods annotated with
// aiquota.dev/fallback-chain get a limiter sidecar that falls back along it.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fc,categories=aiquota
// +kubebuilder:printcolumn:name="First Model",type=string,JSONPath=`.spec.entries[0].model`
// +kubebuilder:printcolumn:name="Active",type=string,JSONPath=`.status.activeModel`
// +kubebuilder:printcolumn:name="Failovers",type=integer,JSONPath=`.status.failovers.total`
// +kubebuilder:printcolumn:name="Last Hour",type=integer,JSONPath=`.status.failovers.lastHour`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FallbackChain struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the ordered chain.
	// +required
	Spec FallbackChainSpec `json:"spec"`

	// status is observed state.
	// +optional
	Status FallbackChainStatus `json:"status,omitempty"`
}

// FallbackChainList is a list of FallbackChain.
// +kubebuilder:object:root=true
type FallbackChainList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FallbackChain `json:"items"`
}

func init() {
	SchemeBuilder.Register(&FallbackChain{}, &FallbackChainList{})
}
