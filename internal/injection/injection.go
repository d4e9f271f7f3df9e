// Package injection is the record of what the webhook did to a pod: the JSON of the
// aiquota.dev/injected annotation and how to find the limiter container. The webhook
// writes it; kubectl-aiquota reads it. It depends on the core API types only, so the
// plugin does not link the webhook's server.
package injection

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/aiquota/aiquota/internal/naming"
)

// Injection modes, as recorded in the injected annotation.
const (
	ModeNativeSidecar = "native-sidecar"
	ModeContainer     = "container"
)

// SummaryVersion is the shape of the injected annotation's JSON.
const SummaryVersion = 1

// Summary is the JSON recorded in the aiquota.dev/injected annotation: what the
// webhook did to the pod, for people and tools reading the pod.
type Summary struct {
	Version       int    `json:"version"`
	Mode          string `json:"mode"`
	Image         string `json:"image"`
	FallbackChain string `json:"fallbackChain,omitempty"`
	ProviderQuota string `json:"providerQuota,omitempty"`
	ConfigMap     string `json:"configMap"`
	Port          int32  `json:"port"`
	AdminPort     int32  `json:"adminPort"`
	// Secrets are the credential Secrets mounted into the sidecar.
	Secrets []string `json:"secrets"`
	// Env are the base-URL variables set on app containers.
	Env []string `json:"env,omitempty"`
	// EnvKept are "container/VARIABLE" pairs the user had set, left as they were.
	EnvKept []string `json:"envKept,omitempty"`
	// KeyPlaceholders are the SDK key variables given the placeholder key.
	KeyPlaceholders []string `json:"keyPlaceholders,omitempty"`
}

// ReadSummary decodes the pod's injected annotation; it returns nil without error
// when the pod has none. A version this build does not know is an error rather
// than a guess at its fields.
func ReadSummary(pod *corev1.Pod) (*Summary, error) {
	raw, ok := pod.Annotations[naming.AnnotationInjected]
	if !ok {
		return nil, nil
	}
	s := &Summary{}
	if err := json.Unmarshal([]byte(raw), s); err != nil {
		return nil, fmt.Errorf("decode annotation %s: %w", naming.AnnotationInjected, err)
	}
	if s.Version != SummaryVersion {
		return nil, fmt.Errorf("annotation %s has version %d; this build reads version %d", naming.AnnotationInjected, s.Version, SummaryVersion)
	}
	return s, nil
}

// LimiterContainer returns the pod's limiter container, and whether it is an init
// container (a native sidecar); nil when the pod has none.
func LimiterContainer(pod *corev1.Pod) (c *corev1.Container, init bool) {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == naming.LimiterName {
			return &pod.Spec.InitContainers[i], true
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == naming.LimiterName {
			return &pod.Spec.Containers[i], false
		}
	}
	return nil, false
}
