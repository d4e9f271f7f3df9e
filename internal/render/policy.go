package render

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// Policy renders a CircuitPolicy. Every field the spec leaves unset takes the API's
// default, which is also limiterconfig.DefaultPolicy, so a policy that skipped the API
// server's defaulting renders what the documentation promises.
func Policy(cp *quotav1alpha1.CircuitPolicy) limiterconfig.Policy {
	s := &cp.Spec
	p := limiterconfig.DefaultPolicy()
	p.Name = cp.Name
	if s.FailureThreshold != 0 {
		p.FailureThreshold = s.FailureThreshold
	}
	p.RecoveryTimeout = duration(s.RecoveryTimeout, p.RecoveryTimeout)
	if s.HalfOpenMaxCalls != 0 {
		p.HalfOpenMaxCalls = s.HalfOpenMaxCalls
	}
	// failureOn has MinItems=1, so only nil (unset) takes the default.
	if s.FailureOn != nil {
		kinds := make([]string, 0, len(s.FailureOn))
		for _, k := range s.FailureOn {
			kinds = append(kinds, string(k))
		}
		p.FailureOn = kinds
	}
	p.FailureOn = sortedSet(p.FailureOn)
	p.RequestTimeout = duration(s.RequestTimeout, p.RequestTimeout)

	r := &s.Retry
	p.Retry.MaxRetries = derefOr(r.MaxRetries, p.Retry.MaxRetries)
	p.Retry.BaseDelay = duration(r.BaseDelay, p.Retry.BaseDelay)
	p.Retry.MaxDelay = duration(r.MaxDelay, p.Retry.MaxDelay)
	p.Retry.JitterPercent = derefOr(r.JitterPercent, p.Retry.JitterPercent)
	p.Retry.RespectRetryAfter = derefOr(r.RespectRetryAfter, p.Retry.RespectRetryAfter)
	p.Retry.UnavailableBaseDelay = duration(r.UnavailableBaseDelay, p.Retry.UnavailableBaseDelay)
	p.Retry.MaxTotal = duration(r.MaxTotal, p.Retry.MaxTotal)
	return p
}

// CheckPolicy reports what makes a CircuitPolicy unusable by a sidecar, naming spec
// fields. The schema's CEL rules catch most of it at admission; this catches the rest
// (and objects that bypassed defaulting). The rendered policy's fields carry the
// spec's names, so the limiter's problems are rooted at "spec".
func CheckPolicy(cp *quotav1alpha1.CircuitPolicy) error {
	p := Policy(cp)
	return limiterconfig.ValidatePolicy("spec", &p).Err()
}

func duration(d *metav1.Duration, def limiterconfig.Duration) limiterconfig.Duration {
	if d == nil {
		return def
	}
	return limiterconfig.Duration(d.Duration)
}
