package quotabench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/test/harness"
)

// The harness end to end on one tiny scenario: two real limiter processes, demand
// above the limit through the SDK, a scale event. It asserts what the run did (calls
// answered, the simulator refusing the full-limit baseline's excess, a table row),
// never how fast.
func TestHarnessSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs limiter processes")
	}
	ctx := context.Background()
	bins, err := harness.Build(ctx, testenv.Root(), t.TempDir(), "./cmd/limiter")
	if err != nil {
		t.Fatal(err)
	}
	sc := Scenario{Name: "smoke", Provider: simulator.ProviderOpenAI, Limits: simulator.Limits{RequestsPerMinute: 60},
		Binding: BindRPM, Pods: 2, Demand: 4, Duration: 6 * time.Second, Warmup: 2 * time.Second,
		Latency: 10 * time.Millisecond, Events: []Event{{At: 3 * time.Second, Pods: 1}}}
	var rows []Result
	for _, mode := range []Mode{ModeFull, ModeStatic, ModeLeases} {
		r, err := Run(ctx, Options{Limiter: bins["limiter"], Dir: t.TempDir()}, sc, mode)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		rows = append(rows, r)
	}
	full, static, leases := rows[0], rows[1], rows[2]
	for _, r := range []Result{full, static} {
		if r.Skipped || r.AppOK == 0 || r.ProviderRequests == 0 || len(r.Rebalance) != 1 {
			t.Errorf("%s: %+v, want answered calls, provider requests and one rebalance figure", r.Mode, r)
		}
	}
	// Each full-limit pod admits the account's whole rate, so together they send
	// twice what the account allows; the simulator refuses the excess.
	if full.Provider429 == 0 {
		t.Errorf("full limit per pod: no provider 429 at twice the limit: %+v", full)
	}
	if !leases.Skipped {
		t.Errorf("leases: measured %+v without a manager", leases)
	}
	var b strings.Builder
	WriteTable(&b, rows)
	for _, want := range []string{"### smoke", "| full limit per pod |", "| static limit / N |", "| leases | not run"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
