package hubapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func validReport() *Report {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	since := t0.Add(-time.Minute)
	limit, remaining := int64(10000), int64(9000)
	return &Report{
		SchemaVersion:  SchemaVersion,
		Pod:            Pod{Namespace: "team-a", Name: "app-1", UID: "0b6f1d7e-1111-2222-3333-444455556666"},
		Boot:           Boot{ID: "f00d", StartedAt: t0.Add(-time.Hour)},
		Seq:            7,
		SentAt:         t0,
		ReportInterval: Duration(10 * time.Second),
		Config:         Config{Hash: "abcdef0123456789", Kind: KindFallbackChain, Namespace: "team-a", Name: "chat", Generation: 3},
		Chain: []ChainEntry{
			{Provider: "openai-tier3", Model: "gpt-5.5", Pool: "gpt-5.5"},
			{Provider: "anthropic", Model: "claude-sonnet-4", Pool: "claude-sonnet-4"},
		},
		Accounts: []Account{{
			Provider: "openai-tier3", Pool: "gpt-5.5", Key: "openai/api-key",
			Counters: Counters{Requests: 100, Retries: 2, InputTokens: 5000, OutputTokens: 700, RateLimited: 1, ServerErrors: 3},
			InFlight: 4, Limits: Limits{RequestsPerMinute: 10000, TokensPerMinute: 1_000_000, MaxConcurrency: 50},
			Learned:  Limits{RequestsPerMinute: 5000},
			Buckets:  []Bucket{{Kind: LimitRequestsPerMinute, RatePerMinute: 4900, Burst: 4900, Level: -3}},
			Throttle: 0.9, RequestsToday: 100, TokensToday: 5700,
			Headers: &HeaderSample{At: t0, Windows: map[string]Window{LimitRequestsPerMinute: {Limit: &limit, Remaining: &remaining}}},
		}},
		Queues: []Queue{{Provider: "openai-tier3", Pool: "gpt-5.5", Depth: 2, Admitted: 100, Queued: 5}},
		Breakers: []Breaker{{
			Provider: "openai-tier3", Model: "gpt-5.5", Policy: "standard", State: BreakerOpen, Since: &since,
			ConsecutiveFailures: 5, Opens: 1,
			Transitions: []Transition{{At: since, From: BreakerClosed, To: BreakerOpen}},
			LastFailure: &FailureSample{At: since, Kind: "serverError", Status: 500},
		}},
		Failovers:    []FailoverCount{{From: 0, To: 1, Reason: "serverError", Count: 3}},
		LastFailover: &Failover{At: since, From: 0, To: 1, Reason: "serverError"},
	}
}

func TestRoundTrip(t *testing.T) {
	want := validReport()
	b, err := Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	got2, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got2); d != "" {
		t.Errorf("Read (-want +got):\n%s", d)
	}
}

func TestUnknownFieldsAreIgnored(t *testing.T) {
	b, err := Marshal(validReport())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["leaseRequests"] = []any{map[string]any{"pool": "x"}}
	b, _ = json.Marshal(m)
	if _, err := Parse(b); err != nil {
		t.Errorf("a field from a newer sidecar was refused: %v", err)
	}
}

func TestValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Report)
		want   []string // substrings of the error
	}{
		{"other schema", func(r *Report) { r.SchemaVersion = "aiquota.dev/report/v2" }, []string{`schemaVersion: is "aiquota.dev/report/v2"`}},
		{"no pod", func(r *Report) { r.Pod = Pod{} }, []string{"pod.namespace: must not be empty", "pod.name: must not be empty", "pod.uid: must not be empty"}},
		{"seq zero", func(r *Report) { r.Seq = 0 }, []string{"seq: must be at least 1"}},
		{"no boot", func(r *Report) { r.Boot = Boot{} }, []string{"boot.id: must not be empty", "boot.startedAt: must be set"}},
		{"interval", func(r *Report) { r.ReportInterval = 0 }, []string{"reportInterval: must be between"}},
		{"kind", func(r *Report) { r.Config.Kind = "Pod" }, []string{`config.kind: must be FallbackChain or ProviderQuota, got "Pod"`}},
		{"long name", func(r *Report) { r.Config.Name = strings.Repeat("a", 300) }, []string{"config.name: is 300 bytes"}},
		{"control char", func(r *Report) { r.Pod.Name = "a\nb" }, []string{"pod.name: must be printable UTF-8"}},
		{"negative counter", func(r *Report) { r.Accounts[0].Counters.InputTokens = -1 }, []string{"pools[0].counters.inputTokens: must be between 0"}},
		{"duplicate pool", func(r *Report) { r.Accounts = append(r.Accounts, r.Accounts[0]) }, []string{"pools[1]: repeats provider"}},
		{"bucket kind", func(r *Report) { r.Accounts[0].Buckets[0].Kind = "perHour" }, []string{`pools[0].buckets[0].kind: unknown limit kind "perHour"`}},
		{"throttle", func(r *Report) { r.Accounts[0].Throttle = 2 }, []string{"pools[0].throttle: must be between 0 and 1"}},
		{"header kind", func(r *Report) { r.Accounts[0].Headers.Windows["x"] = Window{} }, []string{`unknown limit kind "x"`}},
		{"state", func(r *Report) { r.Breakers[0].State = "open" }, []string{`breakers[0].state: must be one of Closed, Open, HalfOpen, got "open"`}},
		{"transition state", func(r *Report) { r.Breakers[0].Transitions[0].To = "x" }, []string{"breakers[0].transitions[0]: states must be one of"}},
		{"failover index", func(r *Report) { r.Failovers[0].To = 5 }, []string{"failovers[0].to: is 5, not an index into chain (2 entries)"}},
		{"last failover index", func(r *Report) { r.LastFailover.From = -1 }, []string{"lastFailover.from: is -1"}},
		{"too many pools", func(r *Report) { r.Accounts = make([]Account, MaxAccounts+1) }, []string{"pools: has 1025 entries, more than 1024"}},
		{"status", func(r *Report) { r.Breakers[0].LastFailure.Status = 1000 }, []string{"lastFailure.status: must be an HTTP status"}},
		{"year", func(r *Report) { r.SentAt = time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC) }, []string{"sentAt: year 1 is out of range"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := validReport()
			c.mutate(r)
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(b)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse = %v, want a *ValidationError", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := Marshal(r); err == nil {
				t.Error("Marshal accepted an invalid report")
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	valid, err := Marshal(validReport())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "decode report: EOF"},
		{"not json", []byte("hello"), "decode report: invalid character"},
		{"trailing", append(append([]byte{}, valid...), []byte(` {}`)...), "trailing data"},
		{"array", []byte(`[]`), "cannot unmarshal array"},
		{"numeric duration", bytes.Replace(valid, []byte(`"reportInterval":"10s"`), []byte(`"reportInterval":10`), 1), `duration must be a string such as "1s"`},
		{"bad duration", bytes.Replace(valid, []byte(`"reportInterval":"10s"`), []byte(`"reportInterval":"soon"`), 1), `duration "soon"`},
		{"too large", append(bytes.Repeat([]byte(" "), MaxReportBytes), valid...), "more than the 1048576 allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.data)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Parse = %v, want an error containing %q", err, c.want)
			}
		})
	}
	if _, err := Read(bytes.NewReader(append(bytes.Repeat([]byte(" "), MaxReportBytes), valid...))); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Read of an oversized report = %v, want ErrTooLarge", err)
	}
}

func TestValidationErrorIsBounded(t *testing.T) {
	r := validReport()
	r.Accounts = make([]Account, 200) // every one of them invalid several times over
	err := r.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate = %v", err)
	}
	if len(ve.Problems) > 20 || len(err.Error()) > 2000 {
		t.Errorf("%d problems, %d-byte message: a hostile report should not produce an unbounded error", len(ve.Problems), len(err.Error()))
	}
	if !strings.Contains(err.Error(), "more") {
		t.Errorf("error does not say more problems were left out: %v", err)
	}
}

func TestReadResponse(t *testing.T) {
	cases := []struct {
		name, body, want string
		seq              uint64
	}{
		{"ok", `{"schemaVersion":"aiquota.dev/report/v1","seq":9}`, "", 9},
		{"ok with fields it does not know", `{"schemaVersion":"aiquota.dev/report/v1","seq":9,"later":[{"pool":"p"}]}`, "", 9},
		{"ok with a lease", `{"schemaVersion":"aiquota.dev/report/v1","seq":9,"leases":[{"provider":"openai","pool":"p","key":"k","grants":{"maxConcurrency":2,"requestsPerMinute":12.5},"ttl":"10s","holders":3}]}`, "", 9},
		{"a lease of an unknown kind", `{"schemaVersion":"aiquota.dev/report/v1","seq":9,"leases":[{"provider":"openai","pool":"p","key":"k","grants":{"wishes":2},"ttl":"10s"}]}`, `invalid response: leases[0].grants: unknown limit kind "wishes"`, 0},
		{"a negative grant", `{"schemaVersion":"aiquota.dev/report/v1","seq":9,"leases":[{"provider":"openai","pool":"p","key":"k","grants":{"maxConcurrency":-1},"ttl":"10s"}]}`, "leases[0].grants.maxConcurrency", 0},
		{"other version", `{"schemaVersion":"aiquota.dev/report/v9","seq":9}`, `response schemaVersion is "aiquota.dev/report/v9"`, 0},
		{"garbage", `<html>`, "decode response", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := ReadResponse(strings.NewReader(c.body))
			if c.want == "" {
				if err != nil || resp.Seq != c.seq {
					t.Errorf("ReadResponse = %+v, %v", resp, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ReadResponse = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// FuzzParse: no input panics, and whatever is accepted re-encodes to a document
// that is accepted again with the same content.
func FuzzParse(f *testing.F) {
	valid, err := Marshal(validReport())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"schemaVersion":"aiquota.dev/report/v1"}`))
	f.Add([]byte(`{"schemaVersion":"aiquota.dev/report/v1","pod":{"namespace":"a","name":"b","uid":"c"},"boot":{"id":"x","startedAt":"2030-01-01T00:00:00Z"},"seq":1,"sentAt":"2030-01-01T00:00:01Z","reportInterval":"1s","config":{"kind":"ProviderQuota","namespace":"a","name":"q"}}`))
	f.Add([]byte(`{"schemaVersion":"aiquota.dev/report/v1","pools":[{"buckets":[{"level":-1e308}]}],"failovers":[{"from":-9}]}`))
	f.Add([]byte(`[1,2,3]`))
	f.Add([]byte(`{"reportInterval":"9999999h"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		b, err := Marshal(r)
		if err != nil {
			t.Fatalf("accepted report does not re-encode: %v", err)
		}
		r2, err := Parse(b)
		if err != nil {
			t.Fatalf("re-encoded report is refused: %v\n%s", err, b)
		}
		// An empty list is written as none (omitempty): the same report.
		if d := cmp.Diff(r, r2, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("re-encoding changed the report:\n%s", d)
		}
	})
}

// FuzzReadResponse: the sidecar reads whatever the network hands it without
// panicking, and accepts only its own schema version.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":"aiquota.dev/report/v1","seq":1}`))
	f.Add([]byte(`{"schemaVersion":"aiquota.dev/report/v1","seq":-1}`))
	f.Add([]byte(`{"error":{"code":"notLeader","message":"x"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		resp, err := ReadResponse(bytes.NewReader(data))
		if err == nil && resp.SchemaVersion != SchemaVersion {
			t.Fatalf("accepted schema version %q", resp.SchemaVersion)
		}
	})
}
