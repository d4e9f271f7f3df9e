package sidecar

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
	"github.com/aiquota/aiquota/internal/simulator"
)

// TestPromptCountingStopsWhenTheAppGoes sends a large prompt whose request is
// already cancelled: the limiter stops counting it (it looks at the context
// every few kilobytes), admits nothing, calls nothing upstream, and records the
// request as cancelled by the client.
func TestPromptCountingStopsWhenTheAppGoes(t *testing.T) {
	e := faultEnv(t, "openai", limiterconfig.ProviderOpenAI, simOpenAIKey, simulator.Faults{}, nil)
	// gpt-4o counts with o200k_base: watch what its memo's counts return.
	spy := &spyCounter{Counter: provider.NewMemoCounter(provider.CounterFor(limiterconfig.TokenizerO200kBase, ""), 64)}
	e.srv.counters.memos[provider.CounterFor(limiterconfig.TokenizerO200kBase, "")] = spy
	prompt := strings.Repeat("Count every word of this sentence again and again. ", 20000) // 1 MB
	body := `{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"` + prompt + `"}]}`
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.srv.ProxyHandler().ServeHTTP(rec, req)

	for _, a := range e.sim.Stats().Accounts {
		if a.Requests != 0 {
			t.Errorf("the simulator saw %d requests from account %d, want none", a.Requests, a.Index)
		}
	}
	_, metrics := e.get(e.admin.URL + "/metrics")
	if spy.cutShort.Load() != 1 {
		t.Errorf("%d prompt counts were cut short, want 1", spy.cutShort.Load())
	}
	if !strings.Contains(metrics, `aiquota_limiter_requests_total{outcome="canceled",pool="(unlisted)",provider="up"} 1`) {
		t.Errorf("no request recorded as canceled:\n%s", grepLines(metrics, "aiquota_limiter_requests_total"))
	}
	// The limiter still serves the next request, and counts it.
	if r, b := e.post("/v1/chat/completions", nil, chatBody); r.StatusCode != http.StatusOK {
		t.Fatalf("next request: %s %s", r.Status, b)
	}
}

// spyCounter counts the counts that ended with an error.
type spyCounter struct {
	provider.Counter
	cutShort atomic.Int64
}

func (s *spyCounter) Count(ctx context.Context, text string) (int64, error) {
	n, err := s.Counter.Count(ctx, text)
	if err != nil {
		s.cutShort.Add(1)
	}
	return n, err
}

func grepLines(text, substr string) string {
	var out []string
	for line := range strings.SplitSeq(text, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestTokenMemoStaysSmallWhenFull fills an encoding's memo as traffic with a new
// word in every request does, and checks the heap it holds then: the memo is live
// for the limiter's lifetime, so its bound is paid per pod.
func TestTokenMemoStaysSmallWhenFull(t *testing.T) {
	c := newCounterCache()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	memo := c.get(limiterconfig.TokenizerO200kBase, "gpt-4o")
	for i := range 4 * memoEntries {
		if _, err := memo.Count(t.Context(), "Request "+strconv.Itoa(i)+"."); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(c)
	const most = 1 << 20
	if held := int64(after.HeapAlloc) - int64(before.HeapAlloc); held > most {
		t.Errorf("a full token memo holds %d bytes of heap, want at most %d", held, most)
	}
}
