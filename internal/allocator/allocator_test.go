package allocator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testAccount = AccountID{Namespace: "ns", Quota: "openai", Key: "k1", Pool: "gpt"}

var testConfig = Config{Margin: 0.1, TTL: 10 * time.Second, Reserve: 0.05}

// sidecar is the test's model of one limiter process: what it enforces is the lease
// it last received, until the lease expires on its own clock (then nothing: the
// static fallback share is outside the allocator's invariant, see the package doc).
type sidecar struct {
	id      string
	applied *Amounts
	expires time.Time
	used    Amounts
	day     int64
	want    Amounts
	weight  float64
	// learned and throttle are what the provider's headers and 429s told it.
	learned  Amounts
	throttle float64
}

func (s *sidecar) enforced(now time.Time) *Amounts {
	if s.applied == nil || !now.Before(s.expires) {
		return nil
	}
	return s.applied
}

// world is a random run: sidecars come, go, restart, consume and report; the
// manager's allocator is replaced on a leader change.
type world struct {
	t        *testing.T
	rng      *rand.Rand
	now      time.Time
	alloc    *Allocator
	limits   Amounts
	live     []*sidecar
	departed Amounts // daily: used today by sidecars that are gone
	day      int64
	next     int
	steps    []string
	// horizon runs keep a grant horizon on record, as the hub does: each term
	// reads the last one, records its own before granting and extends it, unless
	// the record cannot be written (then the term's horizon runs out).
	horizon  bool
	recorded time.Time
}

// newTerm replaces the allocator, as a new leader (or a restarted manager) does.
func (w *world) newTerm() {
	w.alloc = New(testConfig, w.now)
	if w.horizon {
		prior := w.recorded
		w.alloc.AwaitHorizon() // before reading the record
		w.recorded = w.now.Add(2 * testConfig.TTL)
		w.alloc.SetHorizon(prior, w.recorded)
	}
	w.log("leader change")
}

// extendHorizon records a later horizon for the current term.
func (w *world) extendHorizon() {
	if w.horizon {
		w.recorded = w.now.Add(2 * testConfig.TTL)
		w.alloc.ExtendHorizon(w.recorded)
		w.log("horizon %s", w.recorded.Format("15:04:05.000"))
	}
}

func newWorld(t *testing.T, seed uint64, limits Amounts) *world {
	// Start two minutes before midnight so that runs cross a UTC day.
	now := time.Date(2026, 12, 3, 23, 58, 0, 0, time.UTC)
	return &world{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e37)), now: now, alloc: New(testConfig, now),
		limits: limits, day: utcDay(now)}
}

func (w *world) log(format string, args ...any) {
	w.steps = append(w.steps, fmt.Sprintf("%s: ", w.now.Format("15:04:05.000"))+fmt.Sprintf(format, args...))
}

func (w *world) randomWant() Amounts {
	var a Amounts
	for d := range NumDims {
		if w.rng.IntN(4) > 0 {
			a[d] = w.rng.Float64() * w.limits[d]
		}
	}
	return a
}

func (w *world) join() {
	w.next++
	s := &sidecar{id: fmt.Sprintf("pod%d/boot", w.next), day: w.day, want: w.randomWant(), weight: float64(1 + w.rng.IntN(3))}
	w.live = append(w.live, s)
	w.log("join %s", s.id)
}

func (w *world) remove(i int) *sidecar {
	s := w.live[i]
	w.live = append(w.live[:i], w.live[i+1:]...)
	for d := range NumDims {
		if d.Daily() && s.day == w.day {
			w.departed[d] += s.used[d]
		}
	}
	return s
}

func (w *world) ledger() *Amounts {
	var a Amounts
	for d := range NumDims {
		if d.Daily() {
			a[d] = w.departed[d]
			for _, s := range w.live {
				if s.day == w.day {
					a[d] += s.used[d]
				}
			}
		}
	}
	return &a
}

func (w *world) report(s *sidecar, final, lose bool) {
	r := Report{Account: testAccount, Holder: s.id, Limits: w.limits, Used: s.used, Day: s.day, Final: final,
		Demand: Demand{Want: s.want, Weight: s.weight}, Applied: s.enforced(w.now), AccountUsedToday: w.ledger(),
		Learned: s.learned, Throttle: s.throttle}
	sent := w.now
	lease, ok := w.alloc.Report(w.now, r)
	if final || !ok || lose {
		w.log("report %s final=%v lost=%v", s.id, final, lose)
		return
	}
	amounts := lease.Amounts
	s.applied, s.expires = &amounts, sent.Add(lease.Expires.Sub(w.now))
	w.log("report %s -> %v", s.id, amounts)
}

func (w *world) consume(s *sidecar) {
	e := s.enforced(w.now)
	if e == nil {
		return
	}
	for d := range NumDims {
		if d.Daily() && w.limits[d] > 0 && e[d] > s.used[d] {
			s.used[d] += math.Floor(w.rng.Float64() * (e[d] - s.used[d] + 1))
			s.used[d] = min(s.used[d], e[d])
		}
	}
}

func (w *world) advance(d time.Duration) {
	w.now = w.now.Add(d)
	if day := utcDay(w.now); day != w.day {
		w.day, w.departed = day, Amounts{}
		for _, s := range w.live {
			s.day, s.used = day, Amounts{}
		}
	}
	w.log("advance %v", d)
}

// check asserts the invariant from the sidecars' side: what they enforce now, and
// for daily limits what they have used plus what they may still use, within budget;
// and that the shares the allocator kept are the ones it would compute afresh.
func (w *world) check() {
	w.t.Helper()
	if acc := w.alloc.accounts[testAccount]; acc != nil && !acc.stale && acc.shares != nil {
		if diff := cmp.Diff(w.alloc.targets(acc), acc.shares); diff != "" {
			w.t.Fatalf("kept shares differ from fresh ones (-fresh +kept):\n%s", diff)
		}
	}
	for d := range NumDims {
		dim := d
		if w.limits[d] <= 0 {
			continue
		}
		budget := w.limits[d] * (1 - testConfig.Margin)
		sum := 0.0
		if dim.Daily() {
			budget = math.Floor(budget)
			sum = w.departed[d]
		}
		for _, s := range w.live {
			e := s.enforced(w.now)
			switch {
			case dim.Daily() && e != nil:
				sum += max(e[d], s.used[d])
			case dim.Daily():
				sum += s.used[d]
			case e != nil:
				sum += e[d]
			}
		}
		if sum > budget+1e-6 {
			for _, l := range w.steps[max(0, len(w.steps)-30):] {
				w.t.Log(l)
			}
			w.t.Fatalf("%v: granted %.3f > budget %.3f (limit %v, margin %v)", dim, sum, budget, w.limits[d], testConfig.Margin)
		}
	}
}

func (w *world) step() {
	switch n := w.rng.IntN(100); {
	case n < 8 || len(w.live) == 0:
		w.join()
	case n < 50:
		w.report(w.live[w.rng.IntN(len(w.live))], false, w.rng.IntN(6) == 0)
	case n < 62:
		w.consume(w.live[w.rng.IntN(len(w.live))])
	case n < 67:
		s := w.remove(w.rng.IntN(len(w.live)))
		w.report(s, true, false)
	case n < 71:
		s := w.remove(w.rng.IntN(len(w.live)))
		w.log("vanish %s", s.id)
	case n < 74:
		// Restart: the old process is gone without a word; a new boot of the pod
		// starts with empty counters.
		w.remove(w.rng.IntN(len(w.live)))
		w.join()
	case n < 80:
		w.live[w.rng.IntN(len(w.live))].want = w.randomWant()
	case n < 82:
		w.newTerm()
	case n < 85:
		w.extendHorizon()
	case n < 88:
		w.alloc.Expire(w.now)
	default:
		w.advance(time.Duration(w.rng.Int64N(int64(testConfig.TTL / 2))))
	}
}

func TestInvariantUnderRandomRuns(t *testing.T) {
	limits := []Amounts{
		{RequestsPerMinute: 600, TokensPerMinute: 90000, Concurrency: 5, RequestsPerDay: 14, TokensPerDay: 100000},
		{InputTokensPerMinute: 40000, OutputTokensPerMinute: 8000, Concurrency: 50, RequestsPerDay: 1000},
		{Concurrency: 1, RequestsPerDay: 3},
	}
	for seed := range uint64(300) {
		w := newWorld(t, seed, limits[seed%uint64(len(limits))])
		if w.horizon = seed%2 == 1; w.horizon {
			w.newTerm()
		}
		for range 400 {
			w.step()
			w.check()
		}
	}
}

// settle has every sidecar report once a second for longer than a TTL, so that a
// new allocator has learnt and shares have converged.
func (w *world) settle() {
	for range 12 {
		for _, s := range w.live {
			w.report(s, false, false)
		}
		w.advance(time.Second)
	}
}

// joinWanting adds a sidecar of weight 1 that wants want of d and nothing else.
func (w *world) joinWanting(d Dim, want float64) {
	w.join()
	s := w.live[len(w.live)-1]
	s.want, s.weight = Amounts{}, 1
	s.want[d] = want
}

func granted(w *world, d Dim) []float64 {
	var out []float64
	for _, s := range w.live {
		out = append(out, s.enforced(w.now)[d])
	}
	return out
}

func TestSharesFollowDemand(t *testing.T) {
	tests := []struct {
		name  string
		wants []float64
		dim   Dim
		limit float64
		want  []float64
	}{
		// Budget 540 rpm, 27 reserved: 513 shared. Equal demand beyond it: equal shares.
		{"equal", []float64{600, 600, 600}, RequestsPerMinute, 600, []float64{171, 171, 171}},
		// A small demand is met; the rest is split.
		{"skewed", []float64{50, 600, 600}, RequestsPerMinute, 600, []float64{50, 231.5, 231.5}},
		// Idle capacity is not stranded: what nobody wants is spread.
		{"idle", []float64{10, 10}, RequestsPerMinute, 600, []float64{256.5, 256.5}},
		// Concurrency 10 × 0.9 = 9 slots; none reserved at this size.
		{"slots", []float64{8, 8, 8}, Concurrency, 10, []float64{3, 3, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 1, Amounts{})
			w.limits[tc.dim] = tc.limit
			for _, want := range tc.wants {
				w.joinWanting(tc.dim, want)
			}
			w.settle()
			w.check()
			got := granted(w, tc.dim)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("grants (-want +got):\n%s", diff)
			}
		})
	}
}

// TestProviderEvidenceLowersGrants: a lower limit learned from one holder's
// headers, or 429s one holder draws, lower the sum of every holder's grants, and
// the grants come back when the evidence goes.
func TestProviderEvidenceLowersGrants(t *testing.T) {
	tests := []struct {
		name     string
		learned  Amounts
		throttle float64
		// want is the sum of the three holders' grants of 600 rpm declared.
		want float64
	}{
		// 600 × 0.9, less the 5% reserve.
		{"declared", Amounts{}, 0, 513},
		{"a lower learned limit", Amounts{RequestsPerMinute: 300}, 0, 256.5},
		{"a higher learned limit is ignored", Amounts{RequestsPerMinute: 1000}, 0, 513},
		{"a learned limit of an undeclared dimension is ignored", Amounts{TokensPerMinute: 1000}, 0, 513},
		{"throttled by 429s", Amounts{}, 0.5, 256.5},
		{"both", Amounts{RequestsPerMinute: 300}, 0.8, 205.2},
	}
	sum := func(w *world) float64 {
		s := 0.0
		for _, g := range granted(w, RequestsPerMinute) {
			s += g
		}
		return s
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 1, Amounts{RequestsPerMinute: 600})
			for range 3 {
				w.joinWanting(RequestsPerMinute, 600)
			}
			w.settle()
			// One holder alone sees the evidence.
			w.live[1].learned, w.live[1].throttle = tc.learned, tc.throttle
			w.settle()
			w.check()
			if got := sum(w); math.Abs(got-tc.want) > 1e-6 {
				t.Errorf("grants sum to %v, want %v (%v)", got, tc.want, granted(w, RequestsPerMinute))
			}
			w.live[1].learned, w.live[1].throttle = Amounts{}, 1
			w.settle()
			if got := sum(w); math.Abs(got-513) > 1e-6 {
				t.Errorf("after the evidence went: grants sum to %v, want 513", got)
			}
		})
	}
}

func TestCapacityMovesOnlyAfterConfirmation(t *testing.T) {
	w := newWorld(t, 1, Amounts{Concurrency: 10})
	w.joinWanting(Concurrency, 10)
	w.settle()
	if got := granted(w, Concurrency); got[0] != 9 {
		t.Fatalf("one holder: %v slots, want 9", got)
	}
	w.joinWanting(Concurrency, 10)
	// The newcomer asks before the first holder has confirmed a decrease: it gets
	// nothing yet, not a slot the first may still be using.
	w.report(w.live[1], false, false)
	w.check()
	if got := granted(w, Concurrency)[1]; got != 0 {
		t.Fatalf("newcomer got %v slots before the first holder gave any back", got)
	}
	w.report(w.live[0], false, false) // offered less
	w.report(w.live[1], false, false) // still nothing: not confirmed
	if got := granted(w, Concurrency)[1]; got != 0 {
		t.Fatalf("newcomer got %v slots before the decrease was confirmed", got)
	}
	w.report(w.live[0], false, false) // confirms
	w.report(w.live[1], false, false)
	w.check()
	if diff := cmp.Diff([]float64{5, 4}, granted(w, Concurrency)); diff == "" {
		return
	}
	w.settle()
	if diff := cmp.Diff([]float64{5, 4}, granted(w, Concurrency)); diff != "" {
		t.Errorf("after settling (-want +got):\n%s", diff)
	}
}

func TestNewAllocatorAdoptsBeforeGranting(t *testing.T) {
	w := newWorld(t, 1, Amounts{RequestsPerMinute: 100})
	w.joinWanting(RequestsPerMinute, 100)
	w.settle()
	before := granted(w, RequestsPerMinute)[0]
	w.alloc = New(testConfig, w.now)
	w.joinWanting(RequestsPerMinute, 100)
	w.report(w.live[1], false, false)
	w.report(w.live[0], false, false)
	if got := granted(w, RequestsPerMinute); got[1] != 0 || got[0] > before {
		t.Fatalf("while learning: grants %v, want the newcomer at 0 and the holder at most %v", got, before)
	}
	w.settle()
	w.check()
	if got := granted(w, RequestsPerMinute); got[0] != got[1] || got[0] == 0 {
		t.Errorf("after learning: grants %v, want equal shares", got)
	}
}

func TestDailyCapSurvivesRestarts(t *testing.T) {
	w := newWorld(t, 1, Amounts{RequestsPerDay: 20})
	w.now = w.now.Add(-12 * time.Hour) // mid-day
	w.day = utcDay(w.now)
	w.alloc = New(testConfig, w.now)
	w.joinWanting(RequestsPerDay, 20)
	for round := range 6 {
		w.settle()
		for range 5 {
			w.consume(w.live[0])
			w.check()
		}
		// Restart the sidecar and, every other time, the manager too.
		w.remove(0)
		w.joinWanting(RequestsPerDay, 20)
		if round%2 == 1 {
			w.alloc = New(testConfig, w.now)
		}
		w.check()
	}
	// 20 × 0.9 = 18 may be used in all; the run must use most of it, not stall.
	if used := w.departed[RequestsPerDay]; used > 18 || used < 15 {
		t.Fatalf("%v requests used across restarts, want 15..18", used)
	}
}
