package limiter

import (
	"sync"
	"time"
)

// The retry budget of a pool, as Envoy's and gRPC's: retries may add at most
// RetryBudgetRatio to the requests the pool received over the last
// RetryBudgetWindow, and at least RetryBudgetMin retries are always allowed in a
// window so that a quiet pool still retries a stray failure. Without it every app
// request of a storm became 1+maxRetries upstream calls, turning an outage into
// several times its load.
const (
	RetryBudgetRatio  = 0.2
	RetryBudgetWindow = 10 * time.Second
	RetryBudgetMin    = 3
)

// retryBudgetSlots divide the window; a slot's counts leave the window whole, so
// the window is between 9 and 10 seconds long.
const retryBudgetSlots = 10

type retryBudget struct {
	mu    sync.Mutex
	slots [retryBudgetSlots]budgetSlot
}

type budgetSlot struct {
	at                int64 // the slot's index since the clock's start
	requests, retries int64
}

func slotIndex(now int64) int64 {
	return now / int64(RetryBudgetWindow/retryBudgetSlots)
}

// slotLocked is the current slot, emptied when it last served an earlier period.
func (b *retryBudget) slotLocked(now int64) *budgetSlot {
	i := slotIndex(now)
	s := &b.slots[i%retryBudgetSlots]
	if s.at != i {
		*s = budgetSlot{at: i}
	}
	return s
}

func (b *retryBudget) request(now int64) {
	b.mu.Lock()
	b.slotLocked(now).requests++
	b.mu.Unlock()
}

func (b *retryBudget) retry(now int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.slotLocked(now)
	first := cur.at - retryBudgetSlots + 1
	var requests, retries int64
	for i := range b.slots {
		if s := &b.slots[i]; s.at >= first {
			requests += s.requests
			retries += s.retries
		}
	}
	if float64(retries) >= max(RetryBudgetMin, RetryBudgetRatio*float64(requests)) {
		return false
	}
	cur.retries++
	return true
}

// NoteRequest counts an app request toward the pool's retry budget; call it once
// per request, not per attempt.
func (p *Pool) NoteRequest() { p.budget.request(p.engine.clock.Now()) }

// AllowRetry takes one retry from the pool's budget, or reports that the budget is
// spent: the failure then goes back to the app instead of upstream again.
func (p *Pool) AllowRetry() bool {
	if p.budget.retry(p.engine.clock.Now()) {
		return true
	}
	p.retriesRefused.Add(1)
	return false
}
