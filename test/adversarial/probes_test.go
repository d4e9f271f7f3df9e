package adversarial

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testkit"
)

// Users pressing "stop" are not an outage: six streams left in the middle (the
// default policy opens the breaker after five failures) leave it closed.
func TestStreamsLeftInTheMiddleLeaveTheBreakerClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const leavers = 6
	acct := simulator.Account{Key: simKey, Provider: "openai", Limits: simulator.Limits{RequestsPerMinute: 100000},
		Latency: simulator.Latency{OutputTokens: 2000, TokensPerSecond: 50}}
	s := startStack(t, acct, nil, nil)
	body := `{"model":"gpt-4o","stream":true,"max_tokens":2000,"messages":[{"role":"user","content":"Tell a long story"}]}`
	for range leavers {
		func() {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.proxy+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				t.Fatalf("no first event: %v", err)
			}
		}()
	}
	testkit.Eventually(t, time.Minute, "every request to end", testkit.True(func() bool {
		return s.labelled("aiquota_limiter_requests_total") == leavers
	}))
	if got := s.labelled("aiquota_limiter_requests_total", `outcome="canceled"`); got != leavers {
		t.Errorf("%v requests ended canceled, want %d", got, leavers)
	}
	for _, b := range s.state().Engine.Breakers {
		if b.State != limiter.BreakerClosed {
			t.Errorf("breaker %s/%s is %s after apps left their streams", b.Provider, b.Model, b.State)
		}
	}
}

// A body that trickles in a byte at a time is cut off at the read deadline with a
// 408, and the connection is closed.
func TestATricklingBodyIsCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	acct := simulator.Account{Key: simKey, Provider: "openai", Limits: simulator.Limits{RequestsPerMinute: 100000}}
	s := startStack(t, acct, nil, []string{"--body-read-timeout", "500ms"})
	a := testkit.Trickle(t, s.proxy, "/v1/chat/completions", 500, 100*time.Millisecond, 20*time.Second)
	if a.Status != http.StatusRequestTimeout || !a.Close {
		t.Errorf("status %d (close %v) %s, want 408 and a closed connection", a.Status, a.Close, a.Body)
	}
}

// A model name that is a dot segment never becomes an upstream path.
func TestDotSegmentModelNamesAreRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	acct := simulator.Account{Key: simKey, Provider: "openai", Limits: simulator.Limits{RequestsPerMinute: 100000}}
	s := startStack(t, acct, nil, nil)
	for _, path := range []string{"/v1beta/models/..", "/v1/models/..", "/v1beta/models/."} {
		resp, err := http.Get(s.proxy + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, resp.StatusCode)
		}
	}
	if n := s.labelled("aiquota_limiter_requests_total", `outcome="not_found"`); n != 3 {
		t.Errorf("%v requests refused as not found, want 3", n)
	}
}

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

// In a 429 storm (every call refused, no Retry-After) apps retrying through the
// limiter do not multiply the calls the provider sees: the retry budget keeps them
// near one per app request. ADVERSARIAL_STORM sets how long the storm lasts (2s;
// the figure in docs/benchmarks.md is from 20s).
func TestA429StormReachesTheProviderAboutOncePerAppRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	length := 2 * time.Second
	if v := os.Getenv("ADVERSARIAL_STORM"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("ADVERSARIAL_STORM: %v", err)
		}
		length = d
	}
	const workers = 10
	acct := simulator.Account{Key: simKey, Provider: "openai", Limits: simulator.Limits{RequestsPerMinute: 100000}}
	acct.Faults.ErrorRates = map[string]float64{"429": 1}
	s := startStack(t, acct, nil, nil)
	var requests atomic.Int64
	statuses := sync.Map{}
	stop := time.Now().Add(length)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Now().Before(stop) {
				st := s.chat("gpt-4o")
				requests.Add(1)
				n, _ := statuses.LoadOrStore(st, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		})
	}
	wg.Wait()
	up := s.upstreamRequests()
	ratio := float64(up) / float64(requests.Load())
	byStatus := map[any]int64{}
	statuses.Range(func(k, v any) bool { byStatus[k] = v.(*atomic.Int64).Load(); return true })
	t.Logf("%s storm: %d app requests (statuses %v), %d upstream calls: %.2f per app request", length, requests.Load(), byStatus, up, ratio)
	// A fifth more calls than requests, plus the few retries always allowed.
	if limit := 1 + limiter.RetryBudgetRatio + float64(limiter.RetryBudgetMin)/float64(requests.Load()); ratio > limit {
		t.Errorf("%.2f upstream calls per app request in a 429 storm, want at most %.2f", ratio, limit)
	}
	for st := range byStatus {
		if st != http.StatusTooManyRequests {
			t.Errorf("status %v in a storm of 429s", st)
		}
	}
}

// Issue 8's whitespace prompt (" \n\t" repeated) at 48 KiB and at four times that,
// through the real limiter: the tokenizer's work, as the limiter's metrics count
// it, grows with the prompt, not with its square (the tokenizer it replaced took
// 16 times the time for 4 times the text).
func TestWhitespacePromptCostsWorkLinearInItsLength(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	acct := simulator.Account{Key: simKey, Provider: "openai", Limits: simulator.Limits{RequestsPerMinute: 100000}}
	acct.Latency.OutputTokens = 5
	s := startStack(t, acct, nil, nil)
	const work = "aiquota_limiter_tokenizer_work_total"
	send := func(size int) (bytes int, units float64) {
		t.Helper()
		prompt := strings.Repeat(" \n\t", size/3)
		body, err := json.Marshal(map[string]any{"model": "gpt-4o", "max_tokens": 5,
			"messages": []map[string]string{{"role": "user", "content": prompt}}})
		if err != nil {
			t.Fatal(err)
		}
		before, ok := s.metric(work)
		if !ok {
			t.Fatalf("the limiter exports no %s: its tokenizer's work cannot be seen", work)
		}
		resp, err := http.Post(s.proxy+"/v1/chat/completions", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// 195 KiB of it is about 200K tokens: counted, then refused as longer
		// than gpt-4o's context window.
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%d bytes of whitespace: status %d %s", len(prompt), resp.StatusCode, b)
		}
		after, _ := s.metric(work)
		return len(prompt), after - before
	}
	smallBytes, small := send(48 << 10)
	largeBytes, large := send(195 << 10)
	sizes := float64(largeBytes) / float64(smallBytes)
	ratio := large / small
	t.Logf("whitespace prompt: %.0f units of work at %d bytes, %.0f at %d bytes: x%.2f for x%.2f the text", small, smallBytes, large, largeBytes, ratio, sizes)
	// For the record: the limiter's CPU for a 195 KiB prompt, over a few of them (each
	// a little longer, so that the word memo has not seen it).
	const reps = 10
	cpu := s.cpuSeconds()
	for i := range reps {
		send(195<<10 + 3*(i+1))
	}
	t.Logf("limiter CPU per 195 KiB whitespace prompt (parse, count, refuse): %.1f ms", (s.cpuSeconds()-cpu)/reps*1000)
	if small < float64(smallBytes)/4 {
		t.Fatalf("%.0f units of work for %d bytes: the prompt was not counted", small, smallBytes)
	}
	if ratio < 0.75*sizes || ratio > 1.25*sizes {
		t.Errorf("work grew x%.2f for x%.2f the text, want about x%.2f (linear)", ratio, sizes, sizes)
	}
}
