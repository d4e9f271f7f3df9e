package limiter

import (
	"math"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// RetryInput is what the retry decision needs to know about a failed attempt.
type RetryInput struct {
	// Attempt counts retries already made: 0 when deciding on the first retry.
	Attempt int
	// Kind is the limiterconfig.Failure* kind of the failure.
	Kind string
	// RetryAfter is the provider's requested delay, when HasRetryAfter.
	RetryAfter    time.Duration
	HasRetryAfter bool
	// Elapsed is the time since the first attempt started.
	Elapsed time.Duration
	// Jitter is a uniform random number in [0, 1).
	Jitter float64
}

// MaxTotal is the bound on a whole attempt sequence: the policy's, or MaxDelay times
// the number of attempts.
func MaxTotal(r limiterconfig.Retry) time.Duration {
	if r.MaxTotal > 0 {
		return r.MaxTotal.D()
	}
	return r.MaxDelay.D() * time.Duration(r.MaxRetries+1)
}

// NextRetry decides whether a retryable failure is retried and after what delay:
// the provider's Retry-After when the policy respects it; otherwise exponential
// backoff from BaseDelay (from UnavailableBaseDelay for 503/529, whose overloads last)
// doubling per retry, capped at MaxDelay, with +/-JitterPercent jitter. It refuses
// once MaxRetries retries were made or when the delay would end past MaxTotal.
func NextRetry(r limiterconfig.Retry, in RetryInput) (time.Duration, bool) {
	if in.Attempt >= int(r.MaxRetries) {
		return 0, false
	}
	var d time.Duration
	if r.RespectRetryAfter && in.HasRetryAfter && in.RetryAfter >= 0 {
		d = in.RetryAfter
	} else {
		base := r.BaseDelay.D()
		ceiling := r.MaxDelay.D()
		if in.Kind == limiterconfig.FailureUnavailable && r.UnavailableBaseDelay > 0 {
			base = r.UnavailableBaseDelay.D()
			ceiling = max(ceiling, base)
		}
		exp := float64(base) * math.Pow(2, float64(min(in.Attempt, 62)))
		exp = min(exp, float64(ceiling))
		j := float64(min(max(r.JitterPercent, 0), 100)) / 100
		u := min(max(in.Jitter, 0), 1)
		d = time.Duration(exp * (1 + j*(2*u-1)))
	}
	if in.Elapsed+d > MaxTotal(r) {
		return 0, false
	}
	return d, true
}
