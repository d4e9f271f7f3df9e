package limiter

import (
	"slices"
	"sync"
	"time"
)

// fakeClock is a manual clock: timers fire, in order, inside Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    int64
	wall0  time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      int64
	f       func()
	stopped bool
}

func newFakeClock(wall0 time.Time) *fakeClock { return &fakeClock{wall0: wall0} }

func (c *fakeClock) Now() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Wall(r int64) time.Time { return c.wall0.Add(time.Duration(r)).UTC() }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now + int64(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	i := slices.Index(t.c.timers, t)
	if i >= 0 {
		t.c.timers = slices.Delete(t.c.timers, i, i+1)
	}
	return was && i >= 0
}

// Advance moves time forward by d, firing due timers one by one at their own times.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now + int64(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		slices.SortStableFunc(c.timers, func(a, b *fakeTimer) int { return int(a.at - b.at) })
		if len(c.timers) == 0 || c.timers[0].at > end {
			c.now = end
			c.mu.Unlock()
			return
		}
		t := c.timers[0]
		c.timers = c.timers[1:]
		t.stopped = true
		c.now = max(c.now, t.at)
		c.mu.Unlock()
		t.f()
	}
}

// pending is the number of armed timers.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}
