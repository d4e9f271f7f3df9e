package limiter

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// maxFailoverSteps bounds the (from, to, reason) counts kept: a chain has at most
// 16 entries and a handful of failure kinds, so this is only reached by a
// config that keeps changing; further steps then go uncounted.
const maxFailoverSteps = 256

// FailoverSnapshot counts requests that moved from chain entry From to entry To
// (indexes into the configuration's chain) for Reason, a failure kind; At is the
// latest such move.
type FailoverSnapshot struct {
	From   int       `json:"from"`
	To     int       `json:"to"`
	Reason string    `json:"reason"`
	Count  int64     `json:"count"`
	At     time.Time `json:"at"`
}

// failoverLedger counts the chain walk's moves since the process started, for
// reports and /state.
type failoverLedger struct {
	mu    sync.Mutex
	steps map[failoverStep]*FailoverSnapshot
	last  *FailoverSnapshot
}

type failoverStep struct {
	from, to int
	reason   string
}

// NoteFailover counts one request moving from chain entry from to entry to.
func (e *Engine) NoteFailover(from, to int, reason string) {
	l := &e.failovers
	now := e.clock.Wall(e.clock.Now())
	l.mu.Lock()
	defer l.mu.Unlock()
	k := failoverStep{from, to, reason}
	s := l.steps[k]
	if s == nil {
		if len(l.steps) >= maxFailoverSteps {
			return
		}
		if l.steps == nil {
			l.steps = map[failoverStep]*FailoverSnapshot{}
		}
		s = &FailoverSnapshot{From: from, To: to, Reason: reason}
		l.steps[k] = s
	}
	s.Count++
	s.At = now
	l.last = s
}

// snapshot returns the counts in chain order and the latest move (nil before the
// first).
func (l *failoverLedger) snapshot() ([]FailoverSnapshot, *FailoverSnapshot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]FailoverSnapshot, 0, len(l.steps))
	for _, s := range l.steps {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b FailoverSnapshot) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To), cmp.Compare(a.Reason, b.Reason))
	})
	var last *FailoverSnapshot
	if l.last != nil {
		c := *l.last
		last = &c
	}
	return out, last
}
