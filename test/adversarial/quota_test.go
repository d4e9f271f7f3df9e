package adversarial

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
)

// dailyCap sets the provider's requestsPerDay. A request past a daily cap waits
// the queue's whole maxWait before its 429 (the limiter does not refuse at once a
// wait longer than maxWait), so the probes keep that short.
func dailyCap(n int64) func(*limiterconfig.Config) {
	return func(c *limiterconfig.Config) {
		c.Providers[0].Limits.RequestsPerDay = n
		c.Queue.MaxWait = limiterconfig.Duration(100 * time.Millisecond)
	}
}

// chat sends a small chat request for model and returns the status.
func (s *stack) chat(model string) int {
	s.t.Helper()
	body := fmt.Sprintf(`{"model":%q,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, model)
	resp, err := http.Post(s.proxy+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTooManyRequests {
		s.t.Logf("%s: status %d %s", model, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// An app that makes up a new model name for every request does not multiply the
// account's daily cap: made-up names share the account's limits, so the provider
// sees no more than requestsPerDay however many names there are.
func TestMadeUpModelNamesDoNotMultiplyTheDailyCap(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const limit, names = 5, 40
	acct := simulator.Account{Key: simKey, Provider: "openai", Limits: simulator.Limits{RequestsPerMinute: 100000}}
	acct.Latency.OutputTokens = 5
	s := startStack(t, acct, nil, nil, dailyCap(limit))
	byStatus := map[int]int{}
	for i := range names {
		byStatus[s.chat(fmt.Sprintf("gpt-4o-made-up-%d", i))]++
	}
	up := s.upstreamRequests()
	t.Logf("%d requests under %d model names: statuses %v, %d reached the provider", names, names, byStatus, up)
	if up > limit {
		t.Errorf("the provider received %d requests, above the daily cap of %d", up, limit)
	}
	if byStatus[http.StatusTooManyRequests] < names-limit {
		t.Errorf("%d requests refused with 429, want at least %d", byStatus[http.StatusTooManyRequests], names-limit)
	}
}
