package hubapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aiquota/aiquota/internal/jsonduration"
)

// ErrTooLarge is returned (wrapped) for a document over its size bound.
var ErrTooLarge = errors.New("document too large")

// Parse decodes and validates a report of at most MaxReportBytes.
func Parse(data []byte) (*Report, error) {
	if len(data) > MaxReportBytes {
		return nil, fmt.Errorf("report is %d bytes, more than the %d allowed: %w", len(data), MaxReportBytes, ErrTooLarge)
	}
	var r Report
	if err := decodeOne(data, &r); err != nil {
		return nil, fmt.Errorf("decode report: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Read reads at most MaxReportBytes from rd and parses them; more is ErrTooLarge.
func Read(rd io.Reader) (*Report, error) {
	data, err := readBounded(rd, MaxReportBytes, "report")
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// Marshal validates a report and encodes it.
func Marshal(r *Report) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	if len(b) > MaxReportBytes {
		return nil, fmt.Errorf("encoded report is %d bytes, more than the %d allowed: %w", len(b), MaxReportBytes, ErrTooLarge)
	}
	return b, nil
}

// ReadResponse reads and checks the manager's answer.
func ReadResponse(rd io.Reader) (*Response, error) {
	data, err := readBounded(rd, MaxResponseBytes, "response")
	if err != nil {
		return nil, err
	}
	var resp Response
	if err := decodeOne(data, &resp); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	if resp.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("response schemaVersion is %q; this sidecar speaks %q", truncate(resp.SchemaVersion), SchemaVersion)
	}
	if err := resp.Validate(); err != nil {
		return nil, fmt.Errorf("manager's response: %w", err)
	}
	return &resp, nil
}

func readBounded(rd io.Reader, limit int64, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is more than the %d bytes allowed: %w", what, limit, ErrTooLarge)
	}
	return data, nil
}

// decodeOne decodes exactly one JSON value. Unknown fields are ignored on purpose
// (see the package comment on compatibility).
func decodeOne(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}

// ValidationError lists everything wrong with a report, each naming its field.
type ValidationError struct {
	Problems []string
	// Document is what was checked, "report" when empty.
	Document string
}

func (e *ValidationError) Error() string {
	const show = 5
	msg := strings.Join(e.Problems[:min(show, len(e.Problems))], "; ")
	if len(e.Problems) > show {
		msg += fmt.Sprintf("; and %d more", len(e.Problems)-show)
	}
	doc := e.Document
	if doc == "" {
		doc = "report"
	}
	return "invalid " + doc + ": " + msg
}

type validator struct{ problems []string }

func (v *validator) addf(field, format string, args ...any) {
	// A hostile report could list a problem per element; a few are plenty to fix it.
	if len(v.problems) < 20 {
		v.problems = append(v.problems, field+": "+fmt.Sprintf(format, args...))
	}
}

// tooMany reports a list at field longer than max, and says whether it was.
func (v *validator) tooMany(field string, n, max int) bool {
	if n > max {
		v.addf(field, "has %d entries, more than %d", n, max)
		return true
	}
	return false
}

// entries checks the length of the list at field, then each entry, named field[i],
// with check.
func entries[T any](v *validator, field string, list []T, max int, check func(f string, e *T)) {
	if v.tooMany(field, len(list), max) {
		return
	}
	for i := range list {
		check(fmt.Sprintf("%s[%d]", field, i), &list[i])
	}
}

func (v *validator) name(field, s string, max int) {
	switch {
	case s == "":
		v.addf(field, "must not be empty")
	case len(s) > max:
		v.addf(field, "is %d bytes, more than %d", len(s), max)
	case !utf8.ValidString(s) || strings.ContainsFunc(s, isControl):
		v.addf(field, "must be printable UTF-8")
	}
}

func (v *validator) optionalName(field, s string, max int) {
	if s != "" {
		v.name(field, s, max)
	}
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func (v *validator) count(field string, n int64) {
	if n < 0 || n > maxCounterValue {
		v.addf(field, "must be between 0 and %d, got %d", int64(maxCounterValue), n)
	}
}

func (v *validator) float(field string, f, lo, hi float64) {
	if math.IsNaN(f) || f < lo || f > hi {
		v.addf(field, "must be between %g and %g, got %g", lo, hi, f)
	}
}

func (v *validator) time(field string, t time.Time) {
	if t.IsZero() {
		v.addf(field, "must be set")
		return
	}
	if y := t.Year(); y < 2000 || y > 9999 {
		v.addf(field, "year %d is out of range", y)
	}
}

// Validate checks a report's shape and bounds.
func (r *Report) Validate() error {
	v := &validator{}
	if r.SchemaVersion != SchemaVersion {
		v.addf("schemaVersion", "is %q; this manager speaks %q", truncate(r.SchemaVersion), SchemaVersion)
		return &ValidationError{Problems: v.problems}
	}
	v.name("pod.namespace", r.Pod.Namespace, maxNamespaceLen)
	v.name("pod.name", r.Pod.Name, maxNameLen)
	v.name("pod.uid", r.Pod.UID, maxIDLen)
	v.name("boot.id", r.Boot.ID, maxIDLen)
	v.time("boot.startedAt", r.Boot.StartedAt)
	if r.Seq == 0 {
		v.addf("seq", "must be at least 1")
	}
	v.time("sentAt", r.SentAt)
	if d := r.ReportInterval.D(); d < MinReportInterval || d > maxReportInterval {
		v.addf("reportInterval", "must be between %s and %s, got %s", MinReportInterval, maxReportInterval, d)
	}
	if r.Config.Kind != KindFallbackChain && r.Config.Kind != KindProviderQuota {
		v.addf("config.kind", "must be %s or %s, got %q", KindFallbackChain, KindProviderQuota, truncate(r.Config.Kind))
	}
	v.name("config.namespace", r.Config.Namespace, maxNamespaceLen)
	v.name("config.name", r.Config.Name, maxNameLen)
	v.optionalName("config.hash", r.Config.Hash, maxIDLen)
	if r.Config.Generation < 0 {
		v.addf("config.generation", "must not be negative")
	}
	r.validateChain(v)
	r.validateAccounts(v)
	r.validateQueues(v)
	r.validateBreakers(v)
	r.validateFailovers(v)
	if len(v.problems) > 0 {
		return &ValidationError{Problems: v.problems}
	}
	return nil
}

func (r *Report) validateChain(v *validator) {
	entries(v, "chain", r.Chain, MaxChainEntries, func(f string, e *ChainEntry) {
		v.name(f+".provider", e.Provider, maxNameLen)
		v.name(f+".model", e.Model, maxNameLen)
		v.name(f+".pool", e.Pool, maxNameLen)
	})
}

func (r *Report) validateAccounts(v *validator) {
	seen := make(map[[3]string]bool, len(r.Accounts))
	entries(v, "pools", r.Accounts, MaxAccounts, func(f string, p *Account) {
		v.name(f+".provider", p.Provider, maxNameLen)
		v.name(f+".pool", p.Pool, maxNameLen)
		v.name(f+".key", p.Key, 2*maxNameLen+1)
		k := [3]string{p.Provider, p.Pool, p.Key}
		if seen[k] {
			v.addf(f, "repeats provider %q, pool %q, key %q", truncate(p.Provider), truncate(p.Pool), truncate(p.Key))
		}
		seen[k] = true
		c := p.Counters
		for _, n := range []struct {
			name string
			v    int64
		}{
			{"requests", c.Requests}, {"retries", c.Retries}, {"inputTokens", c.InputTokens}, {"outputTokens", c.OutputTokens},
			{"rateLimited", c.RateLimited}, {"serverErrors", c.ServerErrors}, {"otherErrors", c.OtherErrors}, {"unanswered", c.Unanswered},
		} {
			v.count(f+".counters."+n.name, n.v)
		}
		v.count(f+".inFlight", p.InFlight)
		v.count(f+".requestsToday", p.RequestsToday)
		v.count(f+".tokensToday", p.TokensToday)
		validateLimits(v, f+".limits", p.Limits)
		if p.SafetyMarginPercent < 0 || p.SafetyMarginPercent > 100 {
			v.addf(f+".safetyMarginPercent", "is %d, not 0..100", p.SafetyMarginPercent)
		}
		validateLimits(v, f+".learned", p.Learned)
		v.float(f+".throttle", p.Throttle, 0, 1)
		entries(v, f+".buckets", p.Buckets, len(LimitKinds), func(bf string, b *Bucket) {
			if !slices.Contains(LimitKinds, b.Kind) {
				v.addf(bf+".kind", "unknown limit kind %q", truncate(b.Kind))
			}
			v.float(bf+".ratePerMinute", b.RatePerMinute, 0, maxBucketMagnitude)
			v.float(bf+".burst", b.Burst, 0, maxBucketMagnitude)
			v.float(bf+".level", b.Level, -maxBucketMagnitude, maxBucketMagnitude)
		})
		if p.Demand != nil {
			validateDemand(v, f+".demand", p.Demand)
		}
		validateGrants(v, f+".lease", p.Lease)
		if h := p.Headers; h != nil {
			v.time(f+".headers.at", h.At)
			v.tooMany(f+".headers.windows", len(h.Windows), MaxHeaderWindows)
			for kind, w := range h.Windows {
				if !slices.Contains(LimitKinds, kind) {
					v.addf(f+".headers.windows", "unknown limit kind %q", truncate(kind))
				}
				if w.Limit != nil {
					v.count(f+".headers.windows."+kind+".limit", *w.Limit)
				}
				if w.Remaining != nil {
					v.count(f+".headers.windows."+kind+".remaining", *w.Remaining)
				}
			}
		}
	})
}

func validateLimits(v *validator, f string, l Limits) {
	v.count(f+".requestsPerMinute", l.RequestsPerMinute)
	v.count(f+".tokensPerMinute", l.TokensPerMinute)
	v.count(f+".inputTokensPerMinute", l.InputTokensPerMinute)
	v.count(f+".outputTokensPerMinute", l.OutputTokensPerMinute)
	v.count(f+".maxConcurrency", l.MaxConcurrency)
	v.count(f+".requestsPerDay", l.RequestsPerDay)
	v.count(f+".tokensPerDay", l.TokensPerDay)
}

func (r *Report) validateQueues(v *validator) {
	entries(v, "queues", r.Queues, MaxQueues, func(f string, q *Queue) {
		v.name(f+".provider", q.Provider, maxNameLen)
		v.name(f+".pool", q.Pool, maxNameLen)
		v.count(f+".depth", q.Depth)
		v.count(f+".admitted", q.Admitted)
		v.count(f+".queued", q.Queued)
		v.count(f+".rejected", q.Rejected)
	})
}

var breakerStates = []string{BreakerClosed, BreakerOpen, BreakerHalfOpen}

func (r *Report) validateBreakers(v *validator) {
	seen := make(map[[2]string]bool, len(r.Breakers))
	entries(v, "breakers", r.Breakers, MaxBreakers, func(f string, b *Breaker) {
		v.name(f+".provider", b.Provider, maxNameLen)
		v.name(f+".model", b.Model, maxNameLen)
		v.optionalName(f+".policy", b.Policy, maxNameLen)
		k := [2]string{b.Provider, b.Model}
		if seen[k] {
			v.addf(f, "repeats provider %q, model %q", truncate(b.Provider), truncate(b.Model))
		}
		seen[k] = true
		if !slices.Contains(breakerStates, b.State) {
			v.addf(f+".state", "must be one of %s, got %q", strings.Join(breakerStates, ", "), truncate(b.State))
		}
		if b.Since != nil {
			v.time(f+".since", *b.Since)
		}
		v.count(f+".consecutiveFailures", b.ConsecutiveFailures)
		v.count(f+".opens", b.Opens)
		entries(v, f+".transitions", b.Transitions, MaxTransitions, func(tf string, t *Transition) {
			v.time(tf+".at", t.At)
			if !slices.Contains(breakerStates, t.From) || !slices.Contains(breakerStates, t.To) {
				v.addf(tf, "states must be one of %s", strings.Join(breakerStates, ", "))
			}
		})
		if lf := b.LastFailure; lf != nil {
			v.time(f+".lastFailure.at", lf.At)
			v.name(f+".lastFailure.kind", lf.Kind, 64)
			if lf.Status < 0 || lf.Status > 999 {
				v.addf(f+".lastFailure.status", "must be an HTTP status or 0, got %d", lf.Status)
			}
		}
	})
}

func (r *Report) validateFailovers(v *validator) {
	if v.tooMany("failovers", len(r.Failovers), MaxFailoverCounts) {
		return
	}
	entry := func(field string, i int) {
		if i < 0 || i >= len(r.Chain) {
			v.addf(field, "is %d, not an index into chain (%d entries)", i, len(r.Chain))
		}
	}
	seen := make(map[FailoverCount]bool, len(r.Failovers))
	for i, fc := range r.Failovers {
		f := fmt.Sprintf("failovers[%d]", i)
		entry(f+".from", fc.From)
		entry(f+".to", fc.To)
		v.name(f+".reason", fc.Reason, 64)
		v.count(f+".count", fc.Count)
		k := FailoverCount{From: fc.From, To: fc.To, Reason: fc.Reason}
		if seen[k] {
			v.addf(f, "repeats from %d, to %d, reason %q", fc.From, fc.To, truncate(fc.Reason))
		}
		seen[k] = true
	}
	if lf := r.LastFailover; lf != nil {
		v.time("lastFailover.at", lf.At)
		entry("lastFailover.from", lf.From)
		entry("lastFailover.to", lf.To)
		v.name("lastFailover.reason", lf.Reason, 64)
	}
}

func truncate(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Duration is a time.Duration written as a Go duration string ("10s").
type Duration = jsonduration.Duration
