package limiter

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

func limitsRT(rpm, tpm int64) limiterconfig.Limits {
	return limiterconfig.Limits{RequestsPerMinute: rpm, TokensPerMinute: tpm}
}

var day0 = time.Date(2030, 3, 4, 23, 0, 0, 0, time.UTC)

func testAccount(t *testing.T, l limiterconfig.Limits, margin int32) (*Account, *fakeClock) {
	t.Helper()
	clock := newFakeClock(day0)
	p := newAccount("openai", "key-a", "gpt-x", nil, clock)
	p.configure(l, margin)
	return p, clock
}

// levels reads every limited bucket's level at the clock's now.
func levels(p *Account) map[string]float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	out := map[string]float64{}
	for _, k := range Kinds {
		if p.buckets[k].Limited() {
			out[k.String()] = p.buckets[k].Level(now)
		}
	}
	return out
}

var approx = cmpopts.EquateApprox(0, 1e-6)

func TestAdmissionIsAllOrNothing(t *testing.T) {
	p, _ := testAccount(t, limiterconfig.Limits{RequestsPerMinute: 10, TokensPerMinute: 1000, MaxConcurrency: 5}, 0)
	if _, ok := p.tryAdmit(&Demand{InputTokens: 900}); !ok {
		t.Fatal("first request refused")
	}
	// RPM and concurrency have room, TPM does not: nothing may be taken.
	if _, ok := p.tryAdmit(&Demand{InputTokens: 200}); ok {
		t.Fatal("admitted past the TPM limit")
	}
	want := map[string]float64{"requestsPerMinute": 9, "tokensPerMinute": 100}
	if diff := cmp.Diff(want, levels(p), approx); diff != "" {
		t.Errorf("levels after a refused request (-want +got):\n%s", diff)
	}
	if got := p.InFlight(); got != 1 {
		t.Errorf("in flight = %d, want 1", got)
	}
}

func TestConcurrencySemaphore(t *testing.T) {
	p, _ := testAccount(t, limiterconfig.Limits{MaxConcurrency: 2}, 0)
	r1, ok1 := p.tryAdmit(&Demand{})
	_, ok2 := p.tryAdmit(&Demand{})
	_, ok3 := p.tryAdmit(&Demand{})
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("admissions = %v %v %v, want true true false", ok1, ok2, ok3)
	}
	r1.release()
	if _, ok := p.tryAdmit(&Demand{}); !ok {
		t.Fatal("a released slot was not reusable")
	}
}

func TestSafetyMarginLowersRateAndCapacity(t *testing.T) {
	p, _ := testAccount(t, limitsRT(600, 100000), 10)
	s := p.Snapshot()
	got := map[string][2]float64{}
	for _, l := range s.Limits {
		got[l.Kind] = [2]float64{l.RatePerMinute, l.Burst}
	}
	want := map[string][2]float64{"requestsPerMinute": {540, 540}, "tokensPerMinute": {90000, 90000}}
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("effective limits (-want +got):\n%s", diff)
	}
}

func TestDailyCapsResetAtUTCMidnight(t *testing.T) {
	p, clock := testAccount(t, limiterconfig.Limits{RequestsPerDay: 3, TokensPerDay: 100}, 0)
	for i := range 3 {
		if _, ok := p.tryAdmit(&Demand{InputTokens: 10}); !ok {
			t.Fatalf("request %d refused under the daily cap", i)
		}
	}
	if _, ok := p.tryAdmit(&Demand{InputTokens: 10}); ok {
		t.Fatal("admitted past requestsPerDay")
	}
	limit, wait, never := p.blockers(&Demand{InputTokens: 10})
	if limit != LimitRequestsPerDay || never || time.Duration(wait) != time.Hour {
		t.Errorf("blockers = %q %v %v, want requestsPerDay, 1h (day0 is 23:00 UTC), false", limit, time.Duration(wait), never)
	}
	clock.Advance(time.Hour)
	if _, ok := p.tryAdmit(&Demand{InputTokens: 10}); !ok {
		t.Fatal("refused after UTC midnight")
	}
	if _, ok := p.tryAdmit(&Demand{InputTokens: 95}); ok {
		t.Fatal("admitted past tokensPerDay")
	}
	if l, _, never := p.blockers(&Demand{InputTokens: 101}); l != LimitTokensPerDay || !never {
		t.Errorf("a request above the whole daily token cap: blockers = %q never=%v, want tokensPerDay never", l, never)
	}
}

func TestSettleRefundsOrGoesIntoDebt(t *testing.T) {
	cases := []struct {
		name    string
		attempt Attempt
		want    map[string]float64
		counted AccountCounters
	}{
		{
			name:    "usage below the reservation is refunded",
			attempt: Attempt{Status: 200, Usage: Usage{InputTokens: 100, OutputTokens: 50}, UsageKnown: true},
			want:    map[string]float64{"requestsPerMinute": 59, "tokensPerMinute": 9850, "inputTokensPerMinute": 4900, "outputTokensPerMinute": 4950},
			counted: AccountCounters{Attempts: 1, InputTokens: 100, OutputTokens: 50, ReservedTokens: 1100, RefundedTokens: 950},
		},
		{
			name:    "usage above the reservation is debt",
			attempt: Attempt{Status: 200, Usage: Usage{InputTokens: 150, OutputTokens: 1200}, UsageKnown: true},
			want:    map[string]float64{"requestsPerMinute": 59, "tokensPerMinute": 8650, "inputTokensPerMinute": 4850, "outputTokensPerMinute": 3800},
			counted: AccountCounters{Attempts: 1, InputTokens: 150, OutputTokens: 1200, ReservedTokens: 1100, OverrunTokens: 250},
		},
		{
			name:    "a success without usage keeps the estimate",
			attempt: Attempt{Status: 200},
			want:    map[string]float64{"requestsPerMinute": 59, "tokensPerMinute": 8900, "inputTokensPerMinute": 4900, "outputTokensPerMinute": 4000},
			counted: AccountCounters{Attempts: 1, InputTokens: 100, OutputTokens: 1000, ReservedTokens: 1100},
		},
		{
			name:    "a failed attempt refunds tokens but costs its request",
			attempt: Attempt{Status: 503, Retried: true},
			want:    map[string]float64{"requestsPerMinute": 59, "tokensPerMinute": 10000, "inputTokensPerMinute": 5000, "outputTokensPerMinute": 5000},
			counted: AccountCounters{Attempts: 1, Retries: 1, Upstream5xx: 1, ReservedTokens: 1100, RefundedTokens: 1100},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, _ := testAccount(t, limiterconfig.Limits{RequestsPerMinute: 60, TokensPerMinute: 10000, InputTokensPerMinute: 5000, OutputTokensPerMinute: 5000}, 0)
			r, ok := p.tryAdmit(&Demand{InputTokens: 100, OutputTokens: 1000})
			if !ok {
				t.Fatal("refused")
			}
			r.End(c.attempt)
			if diff := cmp.Diff(c.want, levels(p), approx); diff != "" {
				t.Errorf("levels (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.counted, p.Snapshot().Counters); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCancelGivesEverythingBack(t *testing.T) {
	p, _ := testAccount(t, limiterconfig.Limits{RequestsPerMinute: 60, TokensPerMinute: 1000, MaxConcurrency: 1, RequestsPerDay: 10}, 0)
	r, _ := p.tryAdmit(&Demand{InputTokens: 300})
	r.Cancel()
	if diff := cmp.Diff(map[string]float64{"requestsPerMinute": 60, "tokensPerMinute": 1000}, levels(p), approx); diff != "" {
		t.Errorf("levels (-want +got):\n%s", diff)
	}
	s := p.Snapshot()
	if s.InFlight != 0 || s.RequestsToday != 0 {
		t.Errorf("in flight %d, requests today %d; want 0, 0", s.InFlight, s.RequestsToday)
	}
}

func TestObserveLearnsLimitsAndLowersLevels(t *testing.T) {
	type row struct {
		Kind                        string
		Configured, Learned         int64
		RatePerMinute, Burst, Level float64
	}
	rows := func(p *Account) []row {
		var out []row
		for _, l := range p.Snapshot().Limits {
			out = append(out, row{l.Kind, l.Configured, l.Learned, l.RatePerMinute, l.Burst, l.Level})
		}
		return out
	}
	p, _ := testAccount(t, limitsRT(1000, 100000), 0)

	// The provider says the real tier is lower for requests, higher for tokens, and
	// that fewer tokens remain than we think.
	p.Observe(Observation{Windows: [numKinds]Window{
		KindRequests: {Limit: 500, HasLimit: true},
		KindTokens:   {Limit: 200000, HasLimit: true, Remaining: 40000, HasRemaining: true},
	}})
	want := []row{
		{"requestsPerMinute", 1000, 500, 500, 500, 500},
		{"tokensPerMinute", 100000, 200000, 100000, 100000, 40000},
	}
	if diff := cmp.Diff(want, rows(p), approx); diff != "" {
		t.Errorf("after learning (-want +got):\n%s", diff)
	}

	// Remaining above the local level, and absent values, change nothing.
	p.Observe(Observation{Windows: [numKinds]Window{
		KindTokens:      {Remaining: 90000, HasRemaining: true},
		KindInputTokens: {Limit: -5, HasLimit: false},
	}})
	if diff := cmp.Diff(want, rows(p), approx); diff != "" {
		t.Errorf("after a higher remaining (-want +got):\n%s", diff)
	}

	// A learned limit for an unconfigured kind limits it from then on.
	p.Observe(Observation{Windows: [numKinds]Window{KindOutputTokens: {Limit: 6000, HasLimit: true}}})
	want = append(want, row{"outputTokensPerMinute", 0, 6000, 6000, 6000, 6000})
	if diff := cmp.Diff(want, rows(p), approx); diff != "" {
		t.Errorf("after learning a new kind (-want +got):\n%s", diff)
	}
}

func TestAccountSetLimitLayersOverConfigAndClears(t *testing.T) {
	p, clock := testAccount(t, limitsRT(600, 0), 0)
	for range 100 {
		r, _ := p.tryAdmit(&Demand{})
		r.release()
	}
	p.SetLimit(KindRequests, 1, 30) // a lease: 60 RPM, burst 30
	got := p.Snapshot().Limits[0]
	if got.RatePerMinute != 60 || got.Burst != 30 || got.Level != 30 {
		t.Errorf("after SetLimit: rate %v burst %v level %v, want 60 30 30", got.RatePerMinute, got.Burst, got.Level)
	}
	p.SetLimit(KindRequests, 100, 6000) // a lease above config: config binds
	got = p.Snapshot().Limits[0]
	if got.RatePerMinute != 600 || got.Burst != 600 || got.Level != 30 {
		t.Errorf("lease above config: rate %v burst %v level %v, want 600 600 30 (no burst added)", got.RatePerMinute, got.Burst, got.Level)
	}
	clock.Advance(time.Second)
	p.ClearLimit(KindRequests)
	got = p.Snapshot().Limits[0]
	if got.Lease != nil || got.Level != 40 {
		t.Errorf("after ClearLimit: lease %v level %v, want none and 40", got.Lease, got.Level)
	}
	p.SetLimit(KindTokens, 1000, 5000) // a lease on an unconfigured kind limits it
	if _, ok := p.tryAdmit(&Demand{InputTokens: 5001}); ok {
		t.Error("admitted above a leased burst")
	}
}

func TestThrottleHoldsAndLowersRate(t *testing.T) {
	p, clock := testAccount(t, limitsRT(600, 0), 0)
	p.Throttle(2 * time.Second)
	if _, ok := p.tryAdmit(&Demand{}); ok {
		t.Fatal("admitted during the upstream Retry-After hold")
	}
	if l, w, _ := p.blockers(&Demand{}); l != LimitUpstreamHold || time.Duration(w) != 2*time.Second {
		t.Errorf("blockers = %q %v, want upstreamRetryAfter 2s", l, time.Duration(w))
	}
	clock.Advance(2 * time.Second)
	if _, ok := p.tryAdmit(&Demand{}); !ok {
		t.Fatal("refused after the hold")
	}
	if got := p.Snapshot().Limits[0].RatePerMinute; got != 540 {
		t.Errorf("throttled rate = %v, want 540", got)
	}
}

// A 429 storm takes the rate to the floor; what follows decides how fast it returns:
// the rate after each success, one a second.
func TestThrottleRecoversAsFastAsTheEvidenceAllows(t *testing.T) {
	remaining := func(n int64) Observation {
		var o Observation
		o.Windows[KindRequests] = Window{Limit: 600, Remaining: n, HasLimit: true, HasRemaining: true}
		return o
	}
	cases := []struct {
		name string
		// before runs before the storm, after between the storm and the successes.
		before, after *Observation
		want          []float64
	}{
		{"headers show capacity after the storm", nil, ptr(remaining(40)),
			[]float64{360, 420, 480, 540, 600, 600}},
		{"headers show nothing left", nil, ptr(remaining(0)),
			[]float64{300, 300, 300, 300, 300, 300}},
		{"headers only before the storm", ptr(remaining(40)), nil,
			[]float64{300, 300, 300, 300, 300, 300}},
		{"no headers", nil, nil,
			[]float64{300, 300, 300, 300, 300, 300}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, clock := testAccount(t, limitsRT(600, 0), 0)
			if c.before != nil {
				p.Observe(*c.before)
			}
			clock.Advance(time.Millisecond)
			for range 10 {
				p.Throttle(0)
			}
			clock.Advance(time.Millisecond)
			if c.after != nil {
				p.Observe(*c.after)
			}
			var got []float64
			for range c.want {
				clock.Advance(time.Second)
				r, ok := p.tryAdmit(&Demand{})
				if !ok {
					t.Fatal("refused")
				}
				r.End(Attempt{Status: 200})
				got = append(got, p.Snapshot().Limits[0].RatePerMinute)
			}
			if diff := cmp.Diff(c.want, got, approx); diff != "" {
				t.Errorf("rate after each success (-want +got):\n%s", diff)
			}
		})
	}
}

func TestThrottleRecoversSlowlyWithoutHeaders(t *testing.T) {
	p, clock := testAccount(t, limitsRT(600, 0), 0)
	p.Throttle(0)
	clock.Advance(throttleRecoverBlind)
	r, ok := p.tryAdmit(&Demand{})
	if !ok {
		t.Fatal("refused")
	}
	r.End(Attempt{Status: 200})
	if got := p.Snapshot().Limits[0].RatePerMinute; got != 600 {
		t.Errorf("rate after %s of successes = %v, want 600", throttleRecoverBlind, got)
	}
}

func TestEndingTwiceSettlesAndReleasesOnce(t *testing.T) {
	finishes := []struct {
		name   string
		finish func(r *Reservation)
		want   AccountCounters
	}{
		{"end, end", func(r *Reservation) { r.End(Attempt{Status: 200}); r.End(Attempt{Status: 500}) },
			AccountCounters{Attempts: 1, InputTokens: 300, ReservedTokens: 300}},
		{"end, cancel", func(r *Reservation) { r.End(Attempt{Status: 429}); r.Cancel() },
			AccountCounters{Attempts: 1, Upstream429: 1, ReservedTokens: 300, RefundedTokens: 300}},
		{"cancel, end", func(r *Reservation) { r.Cancel(); r.End(Attempt{Status: 200}) },
			AccountCounters{}},
		{"canceled attempt counts no failure", func(r *Reservation) { r.End(Attempt{Canceled: true}); r.End(Attempt{}) },
			AccountCounters{Attempts: 1, ReservedTokens: 300, RefundedTokens: 300}},
	}
	for _, c := range finishes {
		t.Run(c.name, func(t *testing.T) {
			p, _ := testAccount(t, limiterconfig.Limits{RequestsPerMinute: 60, TokensPerMinute: 1000, MaxConcurrency: 1}, 0)
			r, ok := p.tryAdmit(&Demand{InputTokens: 300})
			if !ok {
				t.Fatal("refused")
			}
			c.finish(&r)
			s := p.Snapshot()
			if s.InFlight != 0 {
				t.Errorf("in flight %d after finishing twice, want 0", s.InFlight)
			}
			if diff := cmp.Diff(c.want, s.Counters); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			// The slot is free exactly once: one more admission fits, a second does not.
			if _, ok := p.tryAdmit(&Demand{InputTokens: 1}); !ok {
				t.Error("no slot after the reservation ended")
			}
			if _, ok := p.tryAdmit(&Demand{InputTokens: 1}); ok {
				t.Error("two slots free: the reservation was released twice")
			}
		})
	}
}
