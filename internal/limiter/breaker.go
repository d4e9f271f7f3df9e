package limiter

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// BreakerState is a circuit breaker's state.
type BreakerState uint8

// Breaker states.
const (
	BreakerClosed BreakerState = iota
	BreakerOpen
	BreakerHalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "halfOpen"
	}
	return "unknown"
}

// MarshalText makes states readable in /state.
func (s BreakerState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText wrote, so a reported snapshot decodes.
func (s *BreakerState) UnmarshalText(b []byte) error {
	for _, v := range []BreakerState{BreakerClosed, BreakerOpen, BreakerHalfOpen} {
		if string(b) == v.String() {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("unknown breaker state %q", b)
}

// Transition is one recorded state change.
type Transition struct {
	At   time.Time    `json:"at"`
	From BreakerState `json:"from"`
	To   BreakerState `json:"to"`
}

// Failure is the most recent counted failure of a breaker, for reports: what kind and
// which upstream status (0 without a response). Never request content.
type Failure struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Status int       `json:"status,omitempty"`
}

// maxTransitions bounds the history kept per breaker for reports.
const maxTransitions = 32

// Breaker is the circuit breaker of one (provider, model). Closed, it counts
// consecutive failures of the kinds its policy names and opens at the threshold;
// open, it refuses every call until the recovery timeout; then half-open, it lets a
// bounded number of concurrent probes through: a success closes it, a counted
// failure opens it again. Outcomes of other kinds (a 400, or a 429 the policy does
// not count) neither count nor reset.
type Breaker struct {
	Provider, Model string

	clock Clock

	mu          sync.Mutex
	threshold   int
	recovery    time.Duration
	halfOpenMax int
	failureOn   []string
	state       BreakerState
	failures    int
	openedAt    int64
	probes      int
	opens       int64
	transitions []Transition
	lastFailure *Failure
}

func newBreaker(provider, model string, policy limiterconfig.Policy, clock Clock) *Breaker {
	b := &Breaker{Provider: provider, Model: model, clock: clock}
	b.configure(policy)
	return b
}

func (b *Breaker) configure(p limiterconfig.Policy) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.threshold = max(1, int(p.FailureThreshold))
	b.recovery = max(time.Millisecond, p.RecoveryTimeout.D())
	b.halfOpenMax = max(1, int(p.HalfOpenMaxCalls))
	b.failureOn = slices.Clone(p.FailureOn)
}

// Permit is a call the breaker let through; report its outcome with Record.
type Permit struct {
	b     *Breaker
	probe bool
}

// Allow lets a call through, or refuses it with a *RejectError carrying the time
// left open as RetryAfter.
func (b *Breaker) Allow() (Permit, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	if b.state == BreakerOpen {
		left := b.openedAt + int64(b.recovery) - now
		if left > 0 {
			return Permit{}, &RejectError{Reason: ReasonCircuitOpen, Provider: b.Provider, Pool: b.Model, RetryAfter: time.Duration(left)}
		}
		b.moveLocked(BreakerHalfOpen, now)
	}
	if b.state == BreakerHalfOpen {
		if b.probes >= b.halfOpenMax {
			return Permit{}, &RejectError{Reason: ReasonCircuitOpen, Provider: b.Provider, Pool: b.Model, RetryAfter: time.Second}
		}
		b.probes++
		return Permit{b: b, probe: true}, nil
	}
	return Permit{b: b}, nil
}

// Cancel gives the permit back without an outcome: the call was never made.
func (p Permit) Cancel() {
	if p.b == nil || !p.probe {
		return
	}
	p.b.mu.Lock()
	p.b.probes = max(0, p.b.probes-1)
	p.b.mu.Unlock()
}

// Record reports the permitted call's outcome: kind "" is a success, otherwise a
// limiterconfig.Failure* kind (or any other string, which is neutral). status is the
// upstream HTTP status, 0 when there was no response.
func (p Permit) Record(kind string, status int) {
	b := p.b
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	if p.probe {
		b.probes = max(0, b.probes-1)
	}
	counted := kind != "" && slices.Contains(b.failureOn, kind)
	switch {
	case kind == "":
		b.failures = 0
		if b.state == BreakerHalfOpen && p.probe {
			b.moveLocked(BreakerClosed, now)
		}
	case counted:
		b.failures++
		b.lastFailure = &Failure{At: b.clock.Wall(now), Kind: kind, Status: status}
		if (b.state == BreakerHalfOpen && p.probe) || (b.state == BreakerClosed && b.failures >= b.threshold) {
			b.openedAt = now
			b.opens++
			b.moveLocked(BreakerOpen, now)
		}
	}
}

func (b *Breaker) moveLocked(to BreakerState, now int64) {
	if b.state == to {
		return
	}
	if len(b.transitions) == maxTransitions {
		b.transitions = slices.Delete(b.transitions, 0, 1)
	}
	b.transitions = append(b.transitions, Transition{At: b.clock.Wall(now), From: b.state, To: to})
	b.state = to
	if to != BreakerHalfOpen {
		b.probes = 0
	}
	if to == BreakerClosed {
		b.failures = 0
	}
}

// BreakerSnapshot is a breaker's state for reports.
type BreakerSnapshot struct {
	Provider            string        `json:"provider"`
	Model               string        `json:"model"`
	State               BreakerState  `json:"state"`
	ConsecutiveFailures int           `json:"consecutiveFailures"`
	OpenFor             time.Duration `json:"openForNanos,omitempty"`
	Opens               int64         `json:"opens"`
	Transitions         []Transition  `json:"transitions,omitempty"`
	LastFailure         *Failure      `json:"lastFailure,omitempty"`
}

// Snapshot reports the breaker; an open breaker past its timeout shows as half-open.
func (b *Breaker) Snapshot() BreakerSnapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	s := BreakerSnapshot{
		Provider: b.Provider, Model: b.Model, State: b.state,
		ConsecutiveFailures: b.failures, Opens: b.opens,
		Transitions: slices.Clone(b.transitions),
	}
	if b.lastFailure != nil {
		f := *b.lastFailure
		s.LastFailure = &f
	}
	if b.state == BreakerOpen {
		if left := b.openedAt + int64(b.recovery) - now; left > 0 {
			s.OpenFor = time.Duration(left)
		} else {
			s.State = BreakerHalfOpen
		}
	}
	return s
}
