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
		if e.Waited == 0 {
			return fmt.Sprintf("aiquota limiter: %s limit of %s has no room within the queue wait%s", limit, where, retry)
		}
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

// Pool is one pool of one provider: the accounts of all its keys and the priority
// queue of requests waiting for any of them.
type Pool struct {
	Provider, Name string

	engine   *Engine
	accounts atomic.Pointer[[]*Account]
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
	// rejectedInput and rejectedOutput are the token demand of rejected requests:
	// the manager's allocator hears of demand the account could not admit at all.
	rejectedInput, rejectedOutput atomic.Int64
	admitted                      atomic.Int64
	queued                        atomic.Int64

	budget         retryBudget
	retriesRefused atomic.Int64
}

type waiter struct {
	demand   Demand
	priority int
	key      int64 // enqueue time + aging penalty of its priority: smaller goes first
	seq      uint64
	index    int
	enqueued int64
	expires  int64 // clock reading at which its wait runs out
	done     bool
	deadline Timer
	ch       chan admitResult
}

type admitResult struct {
	res Reservation
	err error
}

// Accounts are the pool's accounts, one per key.
func (p *Pool) Accounts() []*Account { return *p.accounts.Load() }

// TryAdmit admits d now if some key has room and nobody is queued ahead.
func (p *Pool) TryAdmit(d Demand) (Reservation, bool) {
	if p.waiting.Load() != 0 {
		return Reservation{}, false
	}
	return p.tryAccounts(&d)
}

// Admit reserves d on the key with the most headroom, waiting in the pool's queue
// when none has room. Waiters are served by effective priority: priority (1..9) plus
// aging, so each AgingStep waited counts as one priority level and a low priority
// request is never starved. It fails with a *RejectError after maxWait, at once when
// the queue is full or d can never fit, or with ctx's error when ctx ends first.
func (p *Pool) Admit(ctx context.Context, d Demand, priority int, maxWait time.Duration) (Reservation, error) {
	if p.waiting.Load() == 0 {
		if r, ok := p.tryAccounts(&d); ok {
			p.admitted.Add(1)
			return r, nil
		}
	}
	return p.admitSlow(ctx, d, priority, maxWait)
}

// reject counts a request refused admission, and its token demand.
func (p *Pool) reject(d *Demand) {
	p.rejected.Add(1)
	p.rejectedInput.Add(d.InputTokens)
	p.rejectedOutput.Add(d.OutputTokens)
}

func (p *Pool) admitSlow(ctx context.Context, d Demand, priority int, maxWait time.Duration) (Reservation, error) {
	clock := p.engine.clock
	if limit, ok := p.neverFits(&d); ok {
		p.reject(&d)
		return Reservation{}, &RejectError{Reason: ReasonTooLarge, Provider: p.Provider, Pool: p.Name, Limit: limit}
	}
	if limit, wait := p.binding(&d); (limit == LimitRequestsPerDay || limit == LimitTokensPerDay) && wait > maxWait {
		// A spent daily cap frees up at the next UTC day, long after any queue wait:
		// say so now rather than after the whole wait.
		p.reject(&d)
		return Reservation{}, &RejectError{Reason: ReasonQueueTimeout, Provider: p.Provider, Pool: p.Name, Limit: limit, RetryAfter: wait}
	}
	priority = min(max(priority, MinPriority), MaxPriority)
	if end := p.engine.waitsEnd.Load(); end != 0 {
		maxWait = min(maxWait, time.Duration(end-clock.Now()))
	}
	p.mu.Lock()
	// Count ourselves before the last try: a release after this sees a waiter and
	// dispatches; a release before it left room that the try sees.
	p.waiting.Add(1)
	if p.queue.Len() == 0 && !p.removed {
		if r, ok := p.tryAccounts(&d); ok {
			p.waiting.Add(-1)
			p.mu.Unlock()
			p.admitted.Add(1)
			return r, nil
		}
	}
	if p.removed || maxWait <= 0 || p.queue.Len() >= p.engine.maxDepth() {
		reason := ReasonQueueFull
		switch {
		case p.removed:
			reason = ReasonPoolRemoved
		case maxWait <= 0:
			reason = ReasonQueueTimeout
		}
		p.waiting.Add(-1)
		p.mu.Unlock()
		p.reject(&d)
		limit, wait := p.binding(&d)
		return Reservation{}, &RejectError{Reason: reason, Provider: p.Provider, Pool: p.Name, Limit: limit, RetryAfter: wait}
	}
	now := clock.Now()
	p.seq++
	w := &waiter{
		demand:   d,
		priority: priority,
		key:      now + int64(priority-MinPriority)*int64(p.engine.agingStep),
		seq:      p.seq,
		enqueued: now,
		expires:  now + int64(maxWait),
		ch:       make(chan admitResult, 1),
	}
	heap.Push(&p.queue, w)
	p.queued.Add(1)
	w.deadline = clock.AfterFunc(maxWait, func() { p.expire(w) })
	p.scheduleLocked(now)
	p.mu.Unlock()

	select {
	case r := <-w.ch:
		return r.res, r.err
	case <-ctx.Done():
		p.mu.Lock()
		if !w.done {
			p.removeLocked(w)
			p.mu.Unlock()
			p.dispatch() // the head may have changed
			return Reservation{}, fmt.Errorf("waiting for capacity on %s/%s: %w", p.Provider, p.Name, ctx.Err())
		}
		p.mu.Unlock()
		r := <-w.ch // settled just now: a grant must not leak
		if r.err == nil {
			r.res.Cancel()
		}
		return Reservation{}, fmt.Errorf("waiting for capacity on %s/%s: %w", p.Provider, p.Name, ctx.Err())
	}
}

// expire rejects w if it is still queued when its wait runs out.
func (p *Pool) expire(w *waiter) {
	p.mu.Lock()
	if w.done {
		p.mu.Unlock()
		return
	}
	p.removeLocked(w)
	waited := time.Duration(p.engine.clock.Now() - w.enqueued)
	p.mu.Unlock()
	limit, wait := p.binding(&w.demand)
	p.reject(&w.demand)
	w.ch <- admitResult{err: &RejectError{Reason: ReasonQueueTimeout, Provider: p.Provider, Pool: p.Name, Limit: limit, RetryAfter: wait, Waited: waited}}
	p.dispatch()
}

// endWaitsBy moves the wait of every waiter that would wait past end to end.
func (p *Pool) endWaitsBy(end int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.engine.clock.Now()
	for _, w := range p.queue {
		if w.expires <= end {
			continue
		}
		// Whichever timer fires first expires w; expire ignores a waiter already done.
		w.deadline.Stop()
		w.expires = end
		w.deadline = p.engine.clock.AfterFunc(time.Duration(end-now), func() { p.expire(w) })
	}
}

func (p *Pool) removeLocked(w *waiter) {
	heap.Remove(&p.queue, w.index)
	w.done = true
	p.waiting.Add(-1)
	if w.deadline != nil {
		w.deadline.Stop()
	}
}

// wake runs the dispatcher when someone waits; cheap otherwise.
func (p *Pool) wake() {
	if p != nil && p.waiting.Load() != 0 {
		p.dispatch()
	}
}

// dispatch admits waiters in order while the head fits, then arms the timer for
// when the head may fit (from the bucket deficits), so nothing polls.
func (p *Pool) dispatch() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.queue.Len() > 0 {
		w := p.queue[0]
		r, ok := p.tryAccounts(&w.demand)
		if !ok {
			p.scheduleLocked(p.engine.clock.Now())
			return
		}
		p.removeLocked(w)
		p.admitted.Add(1)
		w.ch <- admitResult{res: r}
	}
}

// scheduleLocked arms the wake-up timer for the head of the queue. A head blocked only
// by concurrency needs no timer: the release wakes it.
func (p *Pool) scheduleLocked(now int64) {
	if p.queue.Len() == 0 {
		return
	}
	_, wait := p.earliest(&p.queue[0].demand)
	if math.IsInf(wait, 1) {
		return
	}
	at := now + int64(wait) + 1
	if p.timer != nil && p.timerAt <= at && p.timerAt > now {
		return
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	p.timerAt = at
	p.timerGen++
	gen := p.timerGen
	p.timer = p.engine.clock.AfterFunc(time.Duration(at-now), func() {
		p.mu.Lock()
		if p.timerGen == gen {
			p.timer = nil
		}
		p.mu.Unlock()
		p.dispatch()
	})
}

// earliest is the soonest any key may fit d, and that key's binding limit.
func (p *Pool) earliest(d *Demand) (string, float64) {
	best, limit := math.Inf(1), ""
	for _, a := range p.Accounts() {
		l, w, _ := a.blockers(d)
		if w < best || limit == "" {
			best, limit = w, l
		}
	}
	return limit, best
}

// binding names the limit keeping d out and a Retry-After hint (0 when unknown).
func (p *Pool) binding(d *Demand) (string, time.Duration) {
	limit, wait := p.earliest(d)
	if math.IsInf(wait, 1) {
		return limit, 0
	}
	return limit, time.Duration(wait)
}

// neverFits reports a limit that d exceeds on every key.
func (p *Pool) neverFits(d *Demand) (string, bool) {
	accounts := p.Accounts()
	limit := ""
	for _, a := range accounts {
		l, _, never := a.blockers(d)
		if !never {
			return "", false
		}
		limit = l
	}
	return limit, len(accounts) > 0
}

// tryAccounts admits on one key: the only one, or the one with the most headroom
// among those that fit, which spreads load over accounts.
func (p *Pool) tryAccounts(d *Demand) (Reservation, bool) {
	accounts := p.Accounts()
	switch len(accounts) {
	case 0:
		return Reservation{}, false
	case 1:
		return accounts[0].tryAdmit(d)
	}
	tried := uint64(0) // bit set of tried keys; more than 64 keys fall back to order
	for range accounts {
		best, bestRoom := -1, math.Inf(-1)
		for i, a := range accounts {
			if i < 64 && tried&(1<<i) != 0 {
				continue
			}
			if room := a.headroom(); room > bestRoom {
				best, bestRoom = i, room
			}
		}
		if best < 0 {
			break
		}
		if r, ok := accounts[best].tryAdmit(d); ok {
			return r, true
		}
		if best >= 64 {
			break
		}
		tried |= 1 << best
	}
	return Reservation{}, false
}

// close rejects every waiter: the pool left the configuration.
func (p *Pool) close() {
	p.mu.Lock()
	p.removed = true
	var ws []*waiter
	for p.queue.Len() > 0 {
		w := p.queue[0]
		p.removeLocked(w)
		ws = append(ws, w)
	}
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
	for _, w := range ws {
		p.reject(&w.demand)
		w.ch <- admitResult{err: &RejectError{Reason: ReasonPoolRemoved, Provider: p.Provider, Pool: p.Name}}
	}
}

// QueueDepth is the number of requests waiting.
func (p *Pool) QueueDepth() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.Len()
}

// queueState is the queue depth and the most urgent priority waiting (the
// smallest number; 0 when none waits).
func (p *Pool) queueState() (depth, urgent int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.queue {
		if urgent == 0 || w.priority < urgent {
			urgent = w.priority
		}
	}
	return p.queue.Len(), urgent
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
