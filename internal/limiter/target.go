package limiter

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Priorities: 1 is interactive, 9 is batch.
const (
	MinPriority = 1
	MaxPriority = 9
)

// Reason says why a request was refused locally.
type Reason uint8

// Reasons for a RejectError.
const (
	ReasonQueueTimeout Reason = iota + 1 // waited queue.maxWait without capacity
	ReasonQueueFull                      // queue.maxDepth requests already waiting
	ReasonTooLarge                       // needs more than a limit's capacity: can never fit
	ReasonCircuitOpen                    // the breaker refuses calls
	ReasonPoolRemoved                    // a config reload removed the pool while waiting
)

func (r Reason) String() string {
	switch r {
	case ReasonQueueTimeout:
		return "queue_timeout"
	case ReasonQueueFull:
		return "queue_full"
	case ReasonTooLarge:
		return "request_too_large"
	case ReasonCircuitOpen:
		return "circuit_open"
	case ReasonPoolRemoved:
		return "pool_removed"
	}
	return "unknown"
}

// RejectError is a local refusal. Its message names the limit and the wait, so it can
// be shown to the app as is.
type RejectError struct {
	Reason   Reason
	Provider string
	Pool     string
	// Limit is the binding limit (a Kind name or a Limit* constant), when known.
	Limit string
	// RetryAfter is when trying again may succeed; 0 when unknown or never.
	RetryAfter time.Duration
	// Waited is the time spent queued.
	Waited time.Duration
}

func (e *RejectError) Error() string {
	where := e.Provider + "/" + e.Pool
	retry := ""
	if e.RetryAfter > 0 {
		retry = fmt.Sprintf("; retry in about %s", roundUp(e.RetryAfter))
	}
	limit := e.Limit
	if limit == "" {
		limit = "capacity"
	}
	switch e.Reason {
	case ReasonQueueTimeout:
		return fmt.Sprintf("aiquota limiter: %s limit of %s left no room within the %s queue wait%s", limit, where, roundUp(e.Waited), retry)
	case ReasonQueueFull:
		return fmt.Sprintf("aiquota limiter: %s limit of %s reached and the wait queue is full%s", limit, where, retry)
	case ReasonTooLarge:
		return fmt.Sprintf("aiquota limiter: request needs more than the whole %s capacity of %s, so it can never be admitted", limit, where)
	case ReasonCircuitOpen:
		return fmt.Sprintf("aiquota limiter: circuit breaker for %s is open after repeated upstream failures%s", where, retry)
	case ReasonPoolRemoved:
		return fmt.Sprintf("aiquota limiter: %s was removed by a configuration reload while the request waited", where)
	}
	return "aiquota limiter: request refused"
}

func roundUp(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

// Target is one model pool of one provider: the pools of all its keys (accounts) and
// the priority queue of requests waiting for any of them.
type Target struct {
	Provider, Name string

	engine *Engine
	pools  atomic.Pointer[[]*Pool]
	// waiting counts queued requests plus those about to queue, so that a release
	// racing an enqueue always sees it (see Admit).
	waiting atomic.Int32

	mu       sync.Mutex
	queue    waiterHeap
	seq      uint64
	removed  bool
	timer    Timer
	timerAt  int64
	timerGen uint64
	rejected atomic.Int64
	admitted atomic.Int64
	queued   atomic.Int64
}

type waiter struct {
	demand   Demand
	key      int64 // enqueue time + aging penalty of its priority: smaller goes first
	seq      uint64
	index    int
	enqueued int64
	done     bool
	deadline Timer
	ch       chan admitResult
}

type admitResult struct {
	res Reservation
	err error
}

// Pools are the target's per-key pools.
func (t *Target) Pools() []*Pool { return *t.pools.Load() }

// TryAdmit admits d now if some key has room and nobody is queued ahead.
func (t *Target) TryAdmit(d Demand) (Reservation, bool) {
	if t.waiting.Load() != 0 {
		return Reservation{}, false
	}
	return t.tryPools(&d)
}

// Admit reserves d on the key with the most headroom, waiting in the target's queue
// when none has room. Waiters are served by effective priority: priority (1..9) plus
// aging, so each AgingStep waited counts as one priority level and a low priority
// request is never starved. It fails with a *RejectError after maxWait, at once when
// the queue is full or d can never fit, or with ctx's error when ctx ends first.
func (t *Target) Admit(ctx context.Context, d Demand, priority int, maxWait time.Duration) (Reservation, error) {
	if t.waiting.Load() == 0 {
		if r, ok := t.tryPools(&d); ok {
			t.admitted.Add(1)
			return r, nil
		}
	}
	return t.admitSlow(ctx, d, priority, maxWait)
}

func (t *Target) admitSlow(ctx context.Context, d Demand, priority int, maxWait time.Duration) (Reservation, error) {
	clock := t.engine.clock
	if limit, ok := t.neverFits(&d); ok {
		t.rejected.Add(1)
		return Reservation{}, &RejectError{Reason: ReasonTooLarge, Provider: t.Provider, Pool: t.Name, Limit: limit}
	}
	priority = min(max(priority, MinPriority), MaxPriority)
	t.mu.Lock()
	// Count ourselves before the last try: a release after this sees a waiter and
	// dispatches; a release before it left room that the try sees.
	t.waiting.Add(1)
	if t.queue.Len() == 0 && !t.removed {
		if r, ok := t.tryPools(&d); ok {
			t.waiting.Add(-1)
			t.mu.Unlock()
			t.admitted.Add(1)
			return r, nil
		}
	}
	if t.removed || maxWait <= 0 || t.queue.Len() >= t.engine.maxDepth() {
		reason := ReasonQueueFull
		switch {
		case t.removed:
			reason = ReasonPoolRemoved
		case maxWait <= 0:
			reason = ReasonQueueTimeout
		}
		t.waiting.Add(-1)
		t.mu.Unlock()
		t.rejected.Add(1)
		limit, wait := t.binding(&d)
		return Reservation{}, &RejectError{Reason: reason, Provider: t.Provider, Pool: t.Name, Limit: limit, RetryAfter: wait}
	}
	now := clock.Now()
	t.seq++
	w := &waiter{
		demand:   d,
		key:      now + int64(priority-MinPriority)*int64(t.engine.agingStep),
		seq:      t.seq,
		enqueued: now,
		ch:       make(chan admitResult, 1),
	}
	heap.Push(&t.queue, w)
	t.queued.Add(1)
	w.deadline = clock.AfterFunc(maxWait, func() { t.expire(w) })
	t.scheduleLocked(now)
	t.mu.Unlock()

	select {
	case r := <-w.ch:
		return r.res, r.err
	case <-ctx.Done():
		t.mu.Lock()
		if !w.done {
			t.removeLocked(w)
			t.mu.Unlock()
			t.dispatch() // the head may have changed
			return Reservation{}, fmt.Errorf("waiting for capacity on %s/%s: %w", t.Provider, t.Name, ctx.Err())
		}
		t.mu.Unlock()
		r := <-w.ch // settled just now: a grant must not leak
		if r.err == nil {
			r.res.Cancel()
		}
		return Reservation{}, fmt.Errorf("waiting for capacity on %s/%s: %w", t.Provider, t.Name, ctx.Err())
	}
}

// expire rejects w if it is still queued when its wait runs out.
func (t *Target) expire(w *waiter) {
	t.mu.Lock()
	if w.done {
		t.mu.Unlock()
		return
	}
	t.removeLocked(w)
	waited := time.Duration(t.engine.clock.Now() - w.enqueued)
	t.mu.Unlock()
	limit, wait := t.binding(&w.demand)
	t.rejected.Add(1)
	w.ch <- admitResult{err: &RejectError{Reason: ReasonQueueTimeout, Provider: t.Provider, Pool: t.Name, Limit: limit, RetryAfter: wait, Waited: waited}}
	t.dispatch()
}

func (t *Target) removeLocked(w *waiter) {
	heap.Remove(&t.queue, w.index)
	w.done = true
	t.waiting.Add(-1)
	if w.deadline != nil {
		w.deadline.Stop()
	}
}

// wake runs the dispatcher when someone waits; cheap otherwise.
func (t *Target) wake() {
	if t != nil && t.waiting.Load() != 0 {
		t.dispatch()
	}
}

// dispatch admits waiters in order while the head fits, then arms the timer for
// when the head may fit (from the bucket deficits), so nothing polls.
func (t *Target) dispatch() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.queue.Len() > 0 {
		w := t.queue[0]
		r, ok := t.tryPools(&w.demand)
		if !ok {
			t.scheduleLocked(t.engine.clock.Now())
			return
		}
		t.removeLocked(w)
		t.admitted.Add(1)
		w.ch <- admitResult{res: r}
	}
}

// scheduleLocked arms the wake-up timer for the head of the queue. A head blocked only
// by concurrency needs no timer: the release wakes it.
func (t *Target) scheduleLocked(now int64) {
	if t.queue.Len() == 0 {
		return
	}
	_, wait := t.earliest(&t.queue[0].demand)
	if math.IsInf(wait, 1) {
		return
	}
	at := now + int64(wait) + 1
	if t.timer != nil && t.timerAt <= at && t.timerAt > now {
		return
	}
	if t.timer != nil {
		t.timer.Stop()
	}
	t.timerAt = at
	t.timerGen++
	gen := t.timerGen
	t.timer = t.engine.clock.AfterFunc(time.Duration(at-now), func() {
		t.mu.Lock()
		if t.timerGen == gen {
			t.timer = nil
		}
		t.mu.Unlock()
		t.dispatch()
	})
}

// earliest is the soonest any key may fit d, and that key's binding limit.
func (t *Target) earliest(d *Demand) (string, float64) {
	best, limit := math.Inf(1), ""
	for _, p := range t.Pools() {
		l, w, _ := p.blockers(d)
		if w < best || limit == "" {
			best, limit = w, l
		}
	}
	return limit, best
}

// binding names the limit keeping d out and a Retry-After hint (0 when unknown).
func (t *Target) binding(d *Demand) (string, time.Duration) {
	limit, wait := t.earliest(d)
	if math.IsInf(wait, 1) {
		return limit, 0
	}
	return limit, time.Duration(wait)
}

// neverFits reports a limit that d exceeds on every key.
func (t *Target) neverFits(d *Demand) (string, bool) {
	pools := t.Pools()
	limit := ""
	for _, p := range pools {
		l, _, never := p.blockers(d)
		if !never {
			return "", false
		}
		limit = l
	}
	return limit, len(pools) > 0
}

// tryPools admits on one key: the only one, or the one with the most headroom
// among those that fit, which spreads load over accounts.
func (t *Target) tryPools(d *Demand) (Reservation, bool) {
	pools := t.Pools()
	switch len(pools) {
	case 0:
		return Reservation{}, false
	case 1:
		return pools[0].tryAdmit(d)
	}
	tried := uint64(0) // bit set of tried keys; more than 64 keys fall back to order
	for range pools {
		best, bestRoom := -1, math.Inf(-1)
		for i, p := range pools {
			if i < 64 && tried&(1<<i) != 0 {
				continue
			}
			if room := p.headroom(); room > bestRoom {
				best, bestRoom = i, room
			}
		}
		if best < 0 {
			break
		}
		if r, ok := pools[best].tryAdmit(d); ok {
			return r, true
		}
		if best >= 64 {
			break
		}
		tried |= 1 << best
	}
	return Reservation{}, false
}

// close rejects every waiter: the target left the configuration.
func (t *Target) close() {
	t.mu.Lock()
	t.removed = true
	var ws []*waiter
	for t.queue.Len() > 0 {
		w := t.queue[0]
		t.removeLocked(w)
		ws = append(ws, w)
	}
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	t.mu.Unlock()
	for _, w := range ws {
		t.rejected.Add(1)
		w.ch <- admitResult{err: &RejectError{Reason: ReasonPoolRemoved, Provider: t.Provider, Pool: t.Name}}
	}
}

// QueueDepth is the number of requests waiting.
func (t *Target) QueueDepth() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.queue.Len()
}

type waiterHeap []*waiter

func (h waiterHeap) Len() int { return len(h) }
func (h waiterHeap) Less(i, j int) bool {
	if h[i].key != h[j].key {
		return h[i].key < h[j].key
	}
	return h[i].seq < h[j].seq
}
func (h waiterHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waiterHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waiterHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return w
}
