package limiterconfig

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestValidatePolicy(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		change func(*Policy)
		want   Problems
	}{
		{name: "the default policy", path: "spec", change: func(*Policy) {}},
		{
			name:   "problems are rooted at the caller's path",
			path:   "spec",
			change: func(p *Policy) { p.FailureThreshold = 0 },
			want:   Problems{{Path: "spec.failureThreshold", Detail: "is 0, want at least 1"}},
		},
		{
			name:   "a document's path",
			path:   "policies[2]",
			change: func(p *Policy) { p.RecoveryTimeout = 0 },
			want:   Problems{{Path: "policies[2].recoveryTimeout", Detail: "must be positive"}},
		},
		{
			name: "every problem, in field order",
			path: "spec",
			change: func(p *Policy) {
				p.HalfOpenMaxCalls = 0
				p.FailureOn = []string{FailureTimeout, "sometimes"}
				p.Retry.BaseDelay = Duration(time.Minute)
				p.Retry.MaxDelay = Duration(time.Second)
				p.Retry.JitterPercent = 101
				p.RequestTimeout = -1
			},
			want: Problems{
				{Path: "spec.halfOpenMaxCalls", Detail: "is 0, want at least 1"},
				{Path: "spec.failureOn[1]", Detail: `is "sometimes", want one of ` + strings.Join(failureKinds, ", ")},
				{Path: "spec.retry.maxDelay", Detail: "(1s) must not be below baseDelay (1m0s)"},
				{Path: "spec.retry.jitterPercent", Detail: "is 101, want 0..100"},
				{Path: "spec.requestTimeout", Detail: "must be positive"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			tt.change(&p)
			got := ValidatePolicy(tt.path, &p)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("-want +got:\n%s", diff)
			}
			if (got.Err() == nil) != (len(tt.want) == 0) {
				t.Errorf("Err() = %v with %d problems", got.Err(), len(got))
			}
		})
	}
}

// The sidecar's loader and the controller share the policy rules: a document with a
// bad policy reports the same problem under the document's path.
func TestValidateReportsPolicyProblemsAsProblems(t *testing.T) {
	c := validConfig()
	c.Policies[0].HalfOpenMaxCalls = 0
	err := c.Validate()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Validate() = %v, want Problems", err)
	}
	want := Problems{{Path: "policies[0].halfOpenMaxCalls", Detail: "is 0, want at least 1"}}
	if diff := cmp.Diff(want, ps); diff != "" {
		t.Errorf("-want +got:\n%s", diff)
	}
	if !strings.HasPrefix(err.Error(), "invalid limiter config: policies[0].halfOpenMaxCalls: ") {
		t.Errorf("message %q lost its prefix", err)
	}
}
