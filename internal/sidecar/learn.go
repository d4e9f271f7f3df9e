package sidecar

import (
	"math"
	"sync"
)

// promptLearner corrects the prompt estimate of models without a public vocabulary
// (Claude, Gemini, DeepSeek: the estimate counter) towards what the provider charged,
// per provider and pool, so that token reservations match the account's bill. It
// errs high: a request charged above the correction raises it at once by a large
// step, one charged below lowers it by a small one, so the correction settles near
// the upper end of the observed ratios rather than their mean.
type promptLearner struct {
	mu      sync.Mutex
	factors map[string]float64 // provider/pool -> charged / estimated
}

const (
	learnUp   = 0.5  // share of the gap closed when charged more than corrected
	learnDown = 0.05 // and when charged less
	// The correction stays within these bounds: a single odd request (images, a
	// tool schema the estimate reads as prose) must not make the pool unusable.
	learnMin = 0.5
	learnMax = 4.0
	// learnFloor is the smallest estimate learned from: a few tokens of prompt say
	// more about the per-message overhead than about the text.
	learnFloor = 32
)

func newPromptLearner() *promptLearner {
	return &promptLearner{factors: map[string]float64{}}
}

// correct returns the estimate scaled by the pool's learned correction (rounded up).
func (l *promptLearner) correct(key string, estimate int64) int64 {
	l.mu.Lock()
	f, ok := l.factors[key]
	l.mu.Unlock()
	if !ok || estimate <= 0 {
		return estimate
	}
	return int64(math.Ceil(float64(estimate) * f))
}

// learn records that a prompt estimated at estimate was charged charged tokens.
func (l *promptLearner) learn(key string, estimate, charged int64) {
	if estimate < learnFloor || charged <= 0 {
		return
	}
	r := float64(charged) / float64(estimate)
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.factors[key]
	switch {
	case !ok:
		f = r
	case r > f:
		f += learnUp * (r - f)
	default:
		f += learnDown * (r - f)
	}
	l.factors[key] = min(learnMax, max(learnMin, f))
}
