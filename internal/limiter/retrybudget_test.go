package limiter

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

func TestRetryBudget(t *testing.T) {
	type step struct {
		advance  time.Duration
		requests int
		retries  int // asked for
	}
	cases := []struct {
		name        string
		steps       []step
		wantAllowed int
		wantRefused int64
	}{
		{"a quiet pool still retries three times", []step{{requests: 1, retries: 5}}, 3, 2},
		{"a fifth of the requests", []step{{requests: 100, retries: 100}}, 20, 80},
		{"the window forgets", []step{{requests: 100, retries: 20}, {advance: RetryBudgetWindow, retries: 5}}, 23, 2},
		{"requests still in the window count", []step{{requests: 50, retries: 5}, {advance: 5 * time.Second, requests: 50, retries: 20}}, 20, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, clock := testEngine(t, testConfig([]string{"k"}, limiterconfig.Limits{RequestsPerMinute: 100000}, limiterconfig.DefaultQueue()))
			pool := mustPool(t, e, "gpt-4o")
			allowed := 0
			for _, s := range c.steps {
				clock.Advance(s.advance)
				for range s.requests {
					pool.NoteRequest()
				}
				for range s.retries {
					if pool.AllowRetry() {
						allowed++
					}
				}
			}
			if allowed != c.wantAllowed {
				t.Errorf("allowed %d retries, want %d", allowed, c.wantAllowed)
			}
			if diff := cmp.Diff(c.wantRefused, e.Snapshot().Queues[0].RetriesRefused); diff != "" {
				t.Errorf("refused (-want +got):\n%s", diff)
			}
		})
	}
}
