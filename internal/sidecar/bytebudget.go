package sidecar

import (
	"context"
	"fmt"
	"math"
	"runtime/debug"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Defaults for the bytes that request bodies (and the bounded copies of responses
// kept to read usage) may hold across all requests.
const (
	// bodyMemoryFraction of the Go runtime's memory limit (GOMEMLIMIT, which the
	// limiter sets to 90% of the container's limit) may be held by bodies. The rest
	// is for what is not counted: garbage between collections, the transport's and
	// the connections' buffers, the runtime and the tokenizer's memo.
	bodyMemoryFraction = 0.5
	// noLimitBodyMemory is the budget, in bodies of the largest size, where the
	// runtime has no memory limit.
	noLimitBodyMemory = 4
	// DefaultBodyMemoryWait is how long a request waits for body memory before a 503.
	DefaultBodyMemoryWait = 10 * time.Second
)

// BodyMemoryBudget is the default number of bytes bodies may hold across requests:
// bodyMemoryFraction of the runtime's memory limit, or noLimitBodyMemory largest
// bodies when there is none.
func BodyMemoryBudget(maxBody int64) int64 {
	if lim := debug.SetMemoryLimit(-1); lim > 0 && lim < math.MaxInt64 {
		return int64(float64(lim) * bodyMemoryFraction)
	}
	return noLimitBodyMemory * maxBody
}

// byteBudget is a byte semaphore: every request body and every kept response copy
// takes its bytes from it before they are allocated, and gives them back when the
// request ends, so what the sidecar holds is bounded whatever the mix of requests.
type byteBudget struct {
	sem     *semaphore.Weighted
	size    int64
	held    atomic.Int64
	peak    atomic.Int64
	refused atomic.Int64
}

func newByteBudget(size int64) *byteBudget {
	return &byteBudget{sem: semaphore.NewWeighted(size), size: size}
}

// errBodyMemory is a wait for body memory that ran out.
type errBodyMemory struct {
	need int64
	wait time.Duration
}

func (e *errBodyMemory) Error() string {
	return fmt.Sprintf("the aiquota limiter is holding as many request bytes as its memory allows; %d more bytes did not free up within %s", e.need, e.wait)
}

// acquire takes n bytes, waiting up to wait; ctx's error when the app leaves first.
func (b *byteBudget) acquire(ctx context.Context, n int64, wait time.Duration) error {
	if n <= 0 {
		return nil
	}
	if b.sem.TryAcquire(n) {
		b.took(n)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := b.sem.Acquire(wctx, n); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for body memory: %w", ctx.Err())
		}
		b.refused.Add(1)
		return &errBodyMemory{need: n, wait: wait}
	}
	b.took(n)
	return nil
}

// tryAcquire takes n bytes only if they are free now.
func (b *byteBudget) tryAcquire(n int64) bool {
	if n <= 0 {
		return true
	}
	if !b.sem.TryAcquire(n) {
		return false
	}
	b.took(n)
	return true
}

func (b *byteBudget) took(n int64) {
	h := b.held.Add(n)
	for {
		p := b.peak.Load()
		if h <= p || b.peak.CompareAndSwap(p, h) {
			return
		}
	}
}

func (b *byteBudget) release(n int64) {
	if n <= 0 {
		return
	}
	b.held.Add(-n)
	b.sem.Release(n)
}
