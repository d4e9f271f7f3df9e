package adversarial

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aiquota/aiquota/internal/simulator"
)

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
