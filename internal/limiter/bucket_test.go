package limiter

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const sec = int64(time.Second)

func TestBucketRefillsContinuouslyUpToCapacity(t *testing.T) {
	b := NewBucket(10, 600, 0) // 600 per minute
	b.take(600)
	steps := []struct {
		at   int64
		want float64
	}{
		{0, 0},
		{sec / 2, 5},
		{3 * sec, 30},
		{60 * sec, 600},
		{3600 * sec, 600},
	}
	for _, s := range steps {
		if got := b.Level(s.at); math.Abs(got-s.want) > 1e-6 {
			t.Errorf("level at %v = %v, want %v", time.Duration(s.at), got, s.want)
		}
	}
}

func TestBucketWaitForIsTheDeficitOverTheRate(t *testing.T) {
	b := NewBucket(10, 100, 0)
	b.take(100)
	b.take(20) // debt of 20
	cases := []struct {
		n    float64
		want float64 // seconds
	}{
		{1, 2.1},
		{30, 5},
		{100, 12},
		{101, math.Inf(1)}, // more than the capacity
	}
	for _, c := range cases {
		got := b.waitFor(c.n, 0) / 1e9
		if math.IsInf(c.want, 1) != math.IsInf(got, 1) || (!math.IsInf(got, 1) && math.Abs(got-c.want) > 1e-9) {
			t.Errorf("waitFor(%v) = %vs, want %vs", c.n, got, c.want)
		}
	}
}

func TestBucketSetLimitKeepsStateAndAdmitsNoBurst(t *testing.T) {
	type state struct{ Level, Rate, Burst float64 }
	read := func(b *Bucket, at int64) state {
		return state{Level: b.Level(at), Rate: b.RatePerSecond(), Burst: b.Burst()}
	}
	opt := cmpopts.EquateApprox(0, 1e-6)

	t.Run("raise keeps the level and refills at the old rate until the change", func(t *testing.T) {
		b := NewBucket(1, 60, 0)
		b.takeNow(60, 0)
		b.SetLimit(10, 600, 10*sec) // 10 units accrued at the old rate
		if diff := cmp.Diff(state{10, 10, 600}, read(&b, 10*sec), opt); diff != "" {
			t.Errorf("right after the raise (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(state{110, 10, 600}, read(&b, 20*sec), opt); diff != "" {
			t.Errorf("10s after the raise (-want +got):\n%s", diff)
		}
	})
	t.Run("a full bucket raised is not filled to the new capacity", func(t *testing.T) {
		b := NewBucket(1, 60, 0)
		b.SetLimit(100, 6000, sec)
		if diff := cmp.Diff(state{60, 100, 6000}, read(&b, sec), opt); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("lower caps the level at the new capacity", func(t *testing.T) {
		b := NewBucket(10, 600, 0)
		b.SetLimit(1, 60, 0)
		if diff := cmp.Diff(state{60, 1, 60}, read(&b, 0), opt); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("debt survives a change", func(t *testing.T) {
		b := NewBucket(10, 600, 0)
		b.take(650)
		b.SetLimit(20, 1200, 0)
		if diff := cmp.Diff(state{-50, 20, 1200}, read(&b, 0), opt); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("pending takes are charged before the change", func(t *testing.T) {
		b := NewBucket(10, 600, 0)
		b.take(100) // fast path: no clock read
		b.SetLimit(10, 600, 5*sec)
		if diff := cmp.Diff(state{500, 10, 600}, read(&b, 5*sec), opt); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("garbage arguments mean zero, never NaN", func(t *testing.T) {
		b := NewBucket(10, 600, 0)
		b.SetLimit(math.NaN(), math.Inf(1), 0)
		if diff := cmp.Diff(state{0, 0, 0}, read(&b, 100*sec), opt); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// peek is the level the next clock read would compute, without changing anything.
func (b *Bucket) peek(now int64) float64 {
	l := b.level
	if now > b.last {
		l = math.Min(b.burst, l+b.rate*float64(now-b.last))
	}
	return l - b.pending
}

// exactBucket is the textbook bucket the fast path is checked against.
type exactBucket struct{ rate, burst, level float64 }

// TestFastPathNeverAdmitsMoreThanAnExactBucket drives an account and an exact bucket with
// the same random arrivals: the account must never admit what the exact bucket refuses
// (the stale-level fast path is conservative), and its level may trail the exact
// level by no more than fastTakeRefresh requests' worth.
func TestFastPathNeverAdmitsMoreThanAnExactBucket(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		clock := newFakeClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
		p := newAccount("p", "k", "m", nil, clock)
		const rpm, tpm = 120, 12000
		p.configure(limitsRT(rpm, tpm), 0)
		ex := [2]exactBucket{{rpm / 60.0, rpm, rpm}, {tpm / 60.0, tpm, tpm}}
		last := int64(0)
		for i := range 3000 {
			gap := time.Duration(rng.ExpFloat64() * float64(300*time.Millisecond))
			if rng.IntN(50) == 0 {
				gap = time.Duration(rng.IntN(120)) * time.Second // idle spells refill to the cap
			}
			clock.Advance(gap)
			now := clock.Now()
			for j := range ex {
				ex[j].level = math.Min(ex[j].burst, ex[j].level+ex[j].rate*float64(now-last)/1e9)
			}
			last = now
			d := Demand{InputTokens: int64(rng.IntN(100)), OutputTokens: int64(rng.IntN(100))}
			exactFits := ex[0].level >= 1 && ex[1].level >= float64(d.InputTokens+d.OutputTokens)
			r, ok := p.tryAdmit(&d)
			if ok && !exactFits {
				t.Fatalf("seed %d step %d: account admitted %+v that an exact bucket refuses (exact levels %.3f, %.3f)", seed, i, d, ex[0].level, ex[1].level)
			}
			if ok {
				ex[0].level--
				ex[1].level -= float64(d.InputTokens + d.OutputTokens)
				r.release()
			}
			p.mu.Lock()
			gotReq := p.buckets[KindRequests].peek(now)
			gotTok := p.buckets[KindTokens].peek(now)
			p.mu.Unlock()
			if gotReq > ex[0].level+1e-6 || gotTok > ex[1].level+1e-6 {
				t.Fatalf("seed %d step %d: account level (%.3f, %.3f) above exact (%.3f, %.3f)", seed, i, gotReq, gotTok, ex[0].level, ex[1].level)
			}
			if ex[0].level-gotReq > fastTakeRefresh+1e-6 || ex[1].level-gotTok > fastTakeRefresh*200+1e-6 {
				t.Fatalf("seed %d step %d: account level (%.3f, %.3f) trails exact (%.3f, %.3f) by more than %d requests", seed, i, gotReq, gotTok, ex[0].level, ex[1].level, fastTakeRefresh)
			}
		}
	}
}
