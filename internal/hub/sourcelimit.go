package hub

import (
	"container/list"
	"sync"
	"time"
)

// Defaults of the per-source bound on TokenReviews.
const (
	// DefaultReviewsPerSecondPerSource refills each source's bucket. A sidecar needs
	// a review about every two minutes (the cache's TTL); a node's worth of pods
	// behind one address, reconnecting to a new leader, are through in a minute.
	DefaultReviewsPerSecondPerSource = 2
	// DefaultReviewBurstPerSource is each source's bucket size.
	DefaultReviewBurstPerSource = 32
	// DefaultReviewSources is how many sources' buckets are remembered; the least
	// recently seen is forgotten first (it comes back with a full bucket, which can
	// only favour others).
	DefaultReviewSources = 4096
)

// sourceLimiter is a token bucket per source address, in a bounded LRU, so that
// one source (a pod sending garbage that looks like tokens) cannot use up the
// TokenReviews that every other sidecar needs.
type sourceLimiter struct {
	rate  float64 // tokens per second
	burst float64
	max   int

	mu      sync.Mutex
	buckets map[string]*list.Element
	order   *list.List // front = most recently used
}

type sourceBucket struct {
	source string
	level  float64
	at     time.Time
}

func newSourceLimiter(rate float64, burst, size int) *sourceLimiter {
	return &sourceLimiter{rate: rate, burst: float64(burst), max: size, buckets: map[string]*list.Element{}, order: list.New()}
}

// allow takes one review from source's bucket; when it is empty it returns false
// and how long until it holds one again.
func (l *sourceLimiter) allow(source string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.buckets[source]
	if !ok {
		for l.order.Len() >= l.max {
			last := l.order.Back()
			l.order.Remove(last)
			delete(l.buckets, last.Value.(*sourceBucket).source)
		}
		el = l.order.PushFront(&sourceBucket{source: source, level: l.burst, at: now})
		l.buckets[source] = el
	}
	l.order.MoveToFront(el)
	b := el.Value.(*sourceBucket)
	if elapsed := now.Sub(b.at); elapsed > 0 {
		b.level = min(l.burst, b.level+elapsed.Seconds()*l.rate)
		b.at = now
	}
	if b.level >= 1 {
		b.level--
		return true, 0
	}
	return false, time.Duration((1 - b.level) / l.rate * float64(time.Second))
}
