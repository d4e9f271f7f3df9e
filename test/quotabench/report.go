package quotabench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteTable prints one Markdown table per scenario, a row per mode.
func WriteTable(w io.Writer, results []Result) {
	var scenario string
	for _, r := range results {
		if r.Scenario != scenario {
			scenario = r.Scenario
			fmt.Fprintf(w, "\n### %s\n\n", scenario)
			fmt.Fprintln(w, "| mode | goodput (% of binding limit) | provider 429s | app-visible failures | rebalance after each change | largest over-grant (req/min) |")
			fmt.Fprintln(w, "|---|---|---|---|---|---|")
		}
		if r.Skipped {
			fmt.Fprintf(w, "| %s | %s | | | | |\n", r.Mode, r.Note)
			continue
		}
		pct := 0.0
		if r.ProviderRequests > 0 {
			pct = 100 * float64(r.Provider429) / float64(r.ProviderRequests)
		}
		over := "n/a (no leases)"
		if r.OverGrantKnown {
			over = fmt.Sprintf("%.0f", max(0, r.OverGrant))
		}
		fmt.Fprintf(w, "| %s | %.1f%% | %d of %d (%.1f%%) | %d of %d | %s | %s |\n", r.Mode, r.Goodput,
			r.Provider429, r.ProviderRequests, pct, r.AppFailed, r.AppOK+r.AppFailed, rebalance(r.Rebalance), over)
	}
}

func rebalance(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = "never"
		if d >= 0 {
			parts[i] = d.Round(250 * time.Millisecond).String()
		}
	}
	return strings.Join(parts, ", ")
}
