package plugin

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/presets"
)

// clearScreen moves the cursor home and clears the screen, so a frame replaces the
// last one in place.
const clearScreen = "\x1b[H\x1b[2J"

type topOptions struct {
	*globals
	allNamespaces bool
	interval      time.Duration
	once          bool
	// tty redraws in place; off, frames are printed one after another.
	tty bool
}

func newTopCommand(g *globals, s Streams) *cobra.Command {
	o := &topOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "top [-n NAMESPACE | -A] [--interval 2s] [--once]",
		Short: "Show each ProviderQuota's use of its limits, breaker states and fallback chains, refreshing in place",
		Long: `Shows what the limiter sidecars last reported into status:
  - each ProviderQuota: reporting sidecars, the busiest pool's use of each limit,
    today's requests and tokens, limits learned from the provider's headers;
  - each pool with traffic in the last minute: RPM, TPM, ITPM, OTPM and
    concurrency used against the limit, upstream 429s and 5xx;
  - each breaker under a CircuitPolicy: its state, since when, opens in the last hour;
  - each FallbackChain: the entry most requests went to, failovers.
On a terminal the view is redrawn every --interval until interrupted; otherwise each
refresh is printed after the last. --once prints once and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.interval <= 0 {
				return fmt.Errorf("--interval must be positive, got %s", o.interval)
			}
			o.tty = isTerminal(s.Out)
			return o.run(cmd.Context(), s)
		},
	}
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "Show the resources of every namespace.")
	cmd.Flags().DurationVar(&o.interval, "interval", 2*time.Second, "Time between refreshes.")
	cmd.Flags().BoolVar(&o.once, "once", false, "Print once and exit (for scripts).")
	return cmd
}

func (o *topOptions) run(ctx context.Context, s Streams) error {
	c, ns, err := o.connect()
	if err != nil {
		return err
	}
	if o.allNamespaces {
		ns = ""
	}
	if o.once {
		frame, err := o.frame(ctx, c, ns)
		if err != nil {
			return err
		}
		_, err = s.Out.Write(frame)
		return err
	}
	return o.watch(ctx, s, c, ns)
}

// watch redraws until ctx ends. A failed refresh is shown and the next one tried:
// a watch outlives an API server blip, as kubectl's --watch does.
func (o *topOptions) watch(ctx context.Context, s Streams, c client.Reader, ns string) error {
	for n := 0; ; n++ {
		frame, err := o.frame(ctx, c, ns)
		select {
		case <-ctx.Done():
			// Interrupted mid-refresh: err, if any, is the interruption's.
			return nil
		default:
		}
		var buf bytes.Buffer
		switch {
		case o.tty:
			buf.WriteString(clearScreen)
			fmt.Fprintf(&buf, "Every %s: %s   %s\n\n", o.interval, scopeOf(ns), o.now().Format(time.TimeOnly))
			if err != nil {
				fmt.Fprintf(&buf, "error: %v\n", err)
			}
		case n > 0:
			buf.WriteString("\n")
		}
		if err != nil && !o.tty {
			fmt.Fprintf(s.ErrOut, "error: %v\n", err)
		}
		buf.Write(frame)
		// One write per frame, so the terminal never shows half of one.
		if _, werr := s.Out.Write(buf.Bytes()); werr != nil {
			return fmt.Errorf("write: %w", werr)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.interval):
		}
	}
}

func scopeOf(ns string) string {
	if ns == "" {
		return "all namespaces"
	}
	return "namespace " + ns
}

// frame is one rendering of the three kinds' status in ns ("" for all).
func (o *topOptions) frame(ctx context.Context, c client.Reader, ns string) ([]byte, error) {
	var (
		quotas   quotav1alpha1.ProviderQuotaList
		chains   quotav1alpha1.FallbackChainList
		policies quotav1alpha1.CircuitPolicyList
	)
	var opts []client.ListOption
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	for _, l := range []struct {
		kind string
		list client.ObjectList
	}{{"ProviderQuotas", &quotas}, {"CircuitPolicies", &policies}, {"FallbackChains", &chains}} {
		if err := c.List(ctx, l.list, opts...); err != nil {
			return nil, fmt.Errorf("list %s in %s: %w", l.kind, scopeOf(ns), err)
		}
	}
	slices.SortFunc(quotas.Items, func(a, b quotav1alpha1.ProviderQuota) int {
		return compareKeys(a.Namespace, a.Name, b.Namespace, b.Name)
	})
	slices.SortFunc(chains.Items, func(a, b quotav1alpha1.FallbackChain) int {
		return compareKeys(a.Namespace, a.Name, b.Namespace, b.Name)
	})
	slices.SortFunc(policies.Items, func(a, b quotav1alpha1.CircuitPolicy) int {
		return compareKeys(a.Namespace, a.Name, b.Namespace, b.Name)
	})
	v := view{now: o.now(), allNamespaces: ns == ""}
	var buf bytes.Buffer
	if len(quotas.Items)+len(chains.Items)+len(policies.Items) == 0 {
		if ns == "" {
			buf.WriteString("No aiquota resources found.\n")
		} else {
			fmt.Fprintf(&buf, "No aiquota resources found in %s namespace.\n", ns)
		}
		return buf.Bytes(), nil
	}
	tables := [][][]string{v.quotaTable(quotas.Items), v.poolTable(quotas.Items), v.breakerTable(policies.Items), v.chainTable(chains.Items)}
	first := true
	for _, t := range tables {
		if len(t) < 2 {
			continue
		}
		if !first {
			buf.WriteString("\n")
		}
		first = false
		if err := writeTable(&buf, t); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

func compareKeys(ns1, n1, ns2, n2 string) int {
	return cmp.Or(strings.Compare(ns1, ns2), strings.Compare(n1, n2))
}

// writeTable aligns rows as kubectl's printers do.
func writeTable(w io.Writer, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// view renders status as rows; the first row of each table is its header.
type view struct {
	now           time.Time
	allNamespaces bool
}

// row prefixes the namespace column when listing every namespace, as kubectl does.
func (v view) row(ns string, cells ...string) []string {
	if v.allNamespaces {
		return append([]string{ns}, cells...)
	}
	return cells
}

func (v view) header(cells ...string) []string { return v.row("NAMESPACE", cells...) }

func (v view) age(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(v.now.Sub(*t))
}

func (v view) quotaTable(quotas []quotav1alpha1.ProviderQuota) [][]string {
	rows := [][]string{v.header("QUOTA", "PROVIDER", "SIDECARS", "RPM%", "TPM%", "CONCURRENCY%", "DAILY%", "QUEUED", "REQUESTS TODAY", "TOKENS TODAY", "LEARNED LIMITS", "UPDATED")}
	for _, q := range quotas {
		st := q.Status
		rpm, tpm, conc, daily := "-", "-", "-", "-"
		if u := st.Utilization; u != nil {
			rpm, tpm = pct(u.RequestsPercent), pct(u.TokensPercent)
			if hasLimit(q, hubapi.LimitMaxConcurrency) {
				conc = pct(u.ConcurrencyPercent)
			}
			if hasLimit(q, hubapi.LimitRequestsPerDay, hubapi.LimitTokensPerDay) {
				daily = pct(u.DailyPercent)
			}
		}
		queued := "-"
		if st.Sharing != nil {
			queued = strconv.FormatInt(st.Sharing.Queued, 10)
		}
		today := func(n int64) string {
			if st.Day == "" {
				return "-"
			}
			return short(n)
		}
		rows = append(rows, v.row(q.Namespace, q.Name, string(q.Spec.Provider), strconv.Itoa(int(st.ActiveSidecars)),
			rpm, tpm, conc, daily, queued, today(st.RequestsToday), today(st.TokensToday), learned(st.LearnedLimits), v.age(timeOf(st.LastUpdated))))
	}
	return rows
}

// hasLimit reports whether the quota enforces a limit of one of kinds anywhere (as
// status.effectiveLimits says, tier presets included; the spec before the reconciler
// wrote it), so a 0% of nothing is shown as "-" rather than as spare capacity.
func hasLimit(q quotav1alpha1.ProviderQuota, kinds ...string) bool {
	if el := q.Status.EffectiveLimits; el != nil {
		return slices.ContainsFunc(el.Pools, func(p quotav1alpha1.PoolLimits) bool {
			return slices.ContainsFunc(p.Limits, func(l quotav1alpha1.EffectiveLimit) bool { return l.Value > 0 && slices.Contains(kinds, l.Kind) })
		})
	}
	get := func(l quotav1alpha1.QuotaLimits) int64 {
		var n int64
		for i, v := range presets.Fields(&l) {
			if slices.Contains(kinds, presets.LimitNames[i]) {
				n += *v
			}
		}
		return n
	}
	if get(q.Spec.Limits) > 0 {
		return true
	}
	return slices.ContainsFunc(q.Spec.Models, func(m quotav1alpha1.ModelPool) bool { return m.Limits != nil && get(*m.Limits) > 0 })
}

func (v view) poolTable(quotas []quotav1alpha1.ProviderQuota) [][]string {
	rows := [][]string{v.header("QUOTA", "POOL", "RPM", "TPM", "ITPM", "OTPM", "CONCURRENCY", "429/MIN", "5XX/MIN")}
	for _, q := range quotas {
		for _, m := range q.Status.Models {
			rows = append(rows, v.row(q.Namespace, q.Name, m.Name, usage(m.RequestsPerMinute), usage(m.TokensPerMinute),
				usage(m.InputTokensPerMinute), usage(m.OutputTokensPerMinute), usage(m.Concurrency),
				strconv.FormatInt(m.RateLimited, 10), strconv.FormatInt(m.ServerErrors, 10)))
		}
	}
	return rows
}

func (v view) breakerTable(policies []quotav1alpha1.CircuitPolicy) [][]string {
	rows := [][]string{v.header("POLICY", "QUOTA", "MODEL", "STATE", "SINCE", "OPENS/HOUR", "LAST FAILURE")}
	for _, p := range policies {
		bs := slices.Clone(p.Status.Breakers)
		// The ones that refuse calls first: that is what someone running top is after.
		slices.SortStableFunc(bs, func(a, b quotav1alpha1.BreakerStatus) int {
			return cmp.Or(cmp.Compare(stateRank(b.State), stateRank(a.State)), compareKeys(a.ProviderQuota, a.Model, b.ProviderQuota, b.Model))
		})
		for _, b := range bs {
			rows = append(rows, v.row(p.Namespace, p.Name, b.ProviderQuota, b.Model, string(b.State), v.age(timeOf(b.Since)),
				strconv.Itoa(int(b.OpensLastHour)), orDash(b.LastFailure)))
		}
	}
	return rows
}

func stateRank(s quotav1alpha1.BreakerState) int {
	switch s {
	case quotav1alpha1.BreakerOpen:
		return 2
	case quotav1alpha1.BreakerHalfOpen:
		return 1
	default:
		return 0
	}
}

func (v view) chainTable(chains []quotav1alpha1.FallbackChain) [][]string {
	rows := [][]string{v.header("CHAIN", "ENTRIES", "ACTIVE ENTRY", "FAILOVERS/HOUR", "FAILOVERS", "LAST FAILOVER", "UPDATED")}
	for _, c := range chains {
		st := c.Status
		active := "-"
		if i := st.ActiveEntry; i != nil {
			active = strconv.Itoa(int(*i))
			if int(*i) < len(c.Spec.Entries) && *i >= 0 {
				e := c.Spec.Entries[*i]
				active += ": " + e.ProviderQuotaRef.Name + "/" + e.Model
			} else if st.ActiveModel != "" {
				active += ": " + st.ActiveModel
			}
		}
		last := "-"
		if f := st.LastFailover; f != nil {
			last = fmt.Sprintf("%s -> %s (%s) %s ago", f.From, f.To, f.Reason, v.age(&f.Time.Time))
		}
		rows = append(rows, v.row(c.Namespace, c.Name, strconv.Itoa(len(c.Spec.Entries)), active,
			strconv.FormatInt(st.Failovers.LastHour, 10), strconv.FormatInt(st.Failovers.Total, 10), last, v.age(timeOf(st.LastUpdated))))
	}
	return rows
}

func pct(p int32) string { return strconv.Itoa(int(p)) + "%" }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// usage is "used/limit percent", or "used" without a limit, "-" when not reported.
func usage(u *quotav1alpha1.Usage) string {
	switch {
	case u == nil:
		return "-"
	case u.Limit == 0:
		return short(u.Used)
	default:
		return short(u.Used) + "/" + short(u.Limit) + " " + pct(u.Percent)
	}
}

// short keeps token counts narrow: exact below 10,000, then in thousands or
// millions, rounded down so a limit is never shown above what it is.
func short(n int64) string {
	switch {
	case n < 10_000:
		return strconv.FormatInt(n, 10)
	case n < 10_000_000:
		return strconv.FormatInt(n/1_000, 10) + "k"
	default:
		return strconv.FormatInt(n/1_000_000, 10) + "M"
	}
}

func learned(l *quotav1alpha1.QuotaLimits) string {
	if l == nil {
		return "-"
	}
	var parts []string
	for _, f := range []struct {
		name string
		v    int64
	}{{"RPM", l.RequestsPerMinute}, {"TPM", l.TokensPerMinute}, {"ITPM", l.InputTokensPerMinute}, {"OTPM", l.OutputTokensPerMinute}} {
		if f.v > 0 {
			parts = append(parts, f.name+"="+short(f.v))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	return &t.Time
}
