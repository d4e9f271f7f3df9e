package adversarial

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aiquota/aiquota/internal/simulator"
)

// imageRequest is an OpenAI chat request carrying an image of about size bytes as a
// data URL: the kind of large body an ordinary app sends.
func imageRequest(size int) string {
	return `{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"What is in this picture?"},` +
		`{"type":"image_url","image_url":{"url":"data:image/png;base64,` + strings.Repeat("iVBO", size/4) + `"}}]}]}`
}

// TestConcurrentLargeBodiesStayWithinTheByteBudget sends the memory mixes
// at a limiter whose Go memory limit is the injected container's (128 Mi, of which
// the limiter takes 90%): what bodies hold at once must stay within the budget
// derived from it, whatever the mix. The peak RSS is logged for the record; the
// assertion is on the bytes the limiter accounts for.
func TestConcurrentLargeBodiesStayWithinTheByteBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes and sends hundreds of megabytes")
	}
	const goMemLimit = 115 << 20 // 90% of 128 Mi
	mixes := []struct {
		name        string
		concurrency int
		size        int
		chunked     bool // sent without a Content-Length
	}{
		{"12 x 4.7 MiB", 12, 47 << 20 / 10, false},
		{"4 x 30 MB", 4, 30_000_000, false},
		{"50 MB chunked", 1, 50_000_000, true},
	}
	for _, mix := range mixes {
		t.Run(mix.name, func(t *testing.T) {
			acct := simulator.Account{Key: simKey, Provider: "openai", Limits: simulator.Limits{RequestsPerMinute: 100000}}
			acct.Latency.OutputTokens = 5
			s := startStack(t, acct, []string{"GOMEMLIMIT=" + strconv.Itoa(goMemLimit)}, nil)
			body := imageRequest(mix.size)
			statuses := make(chan int, mix.concurrency)
			var wg sync.WaitGroup
			for range mix.concurrency {
				wg.Go(func() {
					var r io.Reader = strings.NewReader(body)
					if mix.chunked {
						r = io.MultiReader(r) // hides the length: the body goes chunked
					}
					resp, err := http.Post(s.proxy+"/v1/chat/completions", "application/json", r)
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					statuses <- resp.StatusCode
				})
			}
			wg.Wait()
			close(statuses)
			byStatus := map[int]int{}
			for st := range statuses {
				byStatus[st]++
			}
			peak, ok := s.metric("aiquota_limiter_body_memory_peak_bytes")
			budget, _ := s.metric("aiquota_limiter_body_memory_budget_bytes")
			t.Logf("%s: statuses %v, peak RSS %.1f MiB, bodies held at most %.1f MiB of a %.1f MiB budget",
				mix.name, byStatus, float64(s.peakRSS())/(1<<20), peak/(1<<20), budget/(1<<20))
			if !ok {
				t.Fatal("the limiter exports no aiquota_limiter_body_memory_peak_bytes: nothing bounds what bodies hold")
			}
			if budget > goMemLimit/2 {
				t.Errorf("body budget %.0f bytes is more than half the %d-byte memory limit", budget, goMemLimit)
			}
			if peak > budget {
				t.Errorf("bodies held %.0f bytes at once, above the %.0f-byte budget", peak, budget)
			}
			if peak < float64(min(mix.size, 32<<20)) {
				t.Errorf("bodies held at most %.0f bytes, less than one body of %d: the accounting misses them", peak, mix.size)
			}
			for st := range byStatus {
				// The provider's or the limiter's 413 (the simulator takes 8 MiB, the
				// limiter 32 MiB) and the limiter's 503 when memory stays taken are
				// answers; nothing else is expected.
				if st != http.StatusOK && st != http.StatusRequestEntityTooLarge && st != http.StatusServiceUnavailable {
					t.Errorf("unexpected status %d", st)
				}
			}
		})
	}
}
