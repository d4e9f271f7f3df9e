package hub

import (
	"time"

	"github.com/aiquota/aiquota/internal/hubapi"
)

// counters is hubapi.Counters as an array, for arithmetic.
type counters [numCounters]int64

const (
	cRequests = iota
	cRetries
	cInputTokens
	cOutputTokens
	cRateLimited
	cServerErrors
	cOtherErrors
	cUnanswered
	numCounters
)

func countersOf(c hubapi.Counters) counters {
	return counters{c.Requests, c.Retries, c.InputTokens, c.OutputTokens, c.RateLimited, c.ServerErrors, c.OtherErrors, c.Unanswered}
}

func (c counters) sub(o counters) counters {
	var d counters
	for i := range c {
		d[i] = c[i] - o[i]
	}
	return d
}

// wentDown reports a counter lower than before: the sidecar's pool was recreated
// (a config reload that removed and re-added it), so counting began again at zero.
func (c counters) wentDown(prev counters) bool {
	for i := range c {
		if c[i] < prev[i] {
			return true
		}
	}
	return false
}

func (c counters) tokens() int64 { return c[cInputTokens] + c[cOutputTokens] }

// sample is a cumulative reading at a time on the manager's clock.
type sample struct {
	at time.Time
	c  counters
}

// history holds the readings of one cumulative series for a sliding window: every
// reading inside the window plus the newest one before it, the window's baseline.
//
// The usage in the window is the newest reading minus the baseline. When the
// history does not reach back a whole window (the series is new to this manager),
// the oldest reading is the baseline: usage is then under-counted for at most one
// window, never extrapolated. A series known to have started at zero (a new boot,
// a new or recreated pool) gets a zero reading at its start, which makes its first
// window exact.
type history struct {
	samples []sample // oldest first
}

func (h *history) add(s sample) {
	h.samples = append(h.samples, s)
	h.prune(s.at)
}

func (h *history) latest() (sample, bool) {
	if len(h.samples) == 0 {
		return sample{}, false
	}
	return h.samples[len(h.samples)-1], true
}

// prune drops readings older than the baseline of the Window ending at now.
func (h *history) prune(now time.Time) {
	start := now.Add(-Window)
	keep := 0
	for i := range h.samples {
		if !h.samples[i].at.After(start) {
			keep = i // the newest reading at or before the window's start
		}
	}
	if keep > 0 {
		h.samples = append(h.samples[:0], h.samples[keep:]...)
	}
}

// inWindow is the increase over the window ending at now.
func (h *history) inWindow(now time.Time, window time.Duration) counters {
	last, ok := h.latest()
	if !ok {
		return counters{}
	}
	start := now.Add(-window)
	base := h.samples[0]
	for _, s := range h.samples {
		if !s.at.After(start) {
			base = s
		}
	}
	return last.c.sub(base.c)
}

// minuteRing counts events per minute over the last hour, in constant memory.
type minuteRing struct {
	minute [60]int64 // unix minute each slot counts
	count  [60]int64
}

func (r *minuteRing) add(at time.Time, n int64) {
	if n <= 0 {
		return
	}
	m := at.Unix() / 60
	i := m % 60
	if i < 0 {
		i += 60
	}
	switch {
	case m < r.minute[i]:
		// The slot already counts a minute an hour or more later: this event is
		// outside any hour that slot's minute belongs to.
		return
	case m > r.minute[i]:
		r.minute[i], r.count[i] = m, 0
	}
	r.count[i] += n
}

// lastHour counts events in the 60 minutes ending with now's minute.
func (r *minuteRing) lastHour(now time.Time) int64 {
	m := now.Unix() / 60
	var n int64
	for i := range r.minute {
		if r.count[i] > 0 && r.minute[i] > m-60 && r.minute[i] <= m {
			n += r.count[i]
		}
	}
	return n
}
