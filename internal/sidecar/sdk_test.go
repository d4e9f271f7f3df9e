package sidecar

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testkit"
)

func sdkEnv(t *testing.T, l limiterconfig.Limits, lat simulator.Latency) *env {
	acct := simAccount(simOpenAIKey, "openai", simulator.Limits{RequestsPerMinute: 10000, TokensPerMinute: 10_000_000})
	acct.Latency = lat
	return newEnv(t, simulator.Config{Seed: 1, Accounts: []simulator.Account{acct}},
		func(simURL string, keyFile func(string) string) *limiterconfig.Config {
			return openAIConfig(simURL, keyFile(simOpenAIKey), l)
		})
}

// sdkClient is the official client with only the base URL changed; its API key is
// a placeholder the sidecar replaces.
func sdkClient(e *env) *openai.Client {
	c := openai.NewClient(option.WithBaseURL(e.proxy.URL+"/v1/"), option.WithAPIKey("sk-app-has-no-real-key"), option.WithMaxRetries(0))
	return &c
}

func TestOfficialSDKChatCompletion(t *testing.T) {
	e := sdkEnv(t, limiterconfig.Limits{RequestsPerMinute: 100, TokensPerMinute: 100000}, simulator.Latency{OutputTokens: 12})
	var raw *http.Response
	got, err := sdkClient(e).Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:     "gpt-4o",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
		MaxTokens: openai.Int(50),
	}, option.WithResponseInto(&raw))
	if err != nil {
		t.Fatalf("chat completion through the sidecar: %v", err)
	}
	if len(got.Choices) == 0 || got.Choices[0].Message.Content == "" || got.Usage.CompletionTokens != 12 {
		t.Errorf("unexpected completion: %+v", got)
	}
	if h := raw.Header.Get("X-Aiquota-Served-By"); h != "openai-main/gpt-4o" {
		t.Errorf("served-by = %q, want openai-main/gpt-4o", h)
	}
	p := e.state().Engine.Accounts[0]
	if p.Counters.Attempts != 1 || p.Counters.OutputTokens != 12 || p.Counters.InputTokens != got.Usage.PromptTokens {
		t.Errorf("settled counters %+v, want one attempt with the response's usage (%d in, 12 out)", p.Counters, got.Usage.PromptTokens)
	}
}

func TestOfficialSDKStreamingIsIncrementalAndSettled(t *testing.T) {
	// 20 output tokens at 20/s: a second of stream, chunks spread over it.
	e := sdkEnv(t, limiterconfig.Limits{RequestsPerMinute: 100, TokensPerMinute: 100000}, simulator.Latency{OutputTokens: 20, TokensPerSecond: 20})
	stream := sdkClient(e).Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:     "gpt-4o",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Count to twenty")},
		MaxTokens: openai.Int(100),
	})
	var arrivals []time.Time
	var text strings.Builder
	for stream.Next() {
		c := stream.Current()
		if len(c.Choices) == 0 {
			t.Errorf("the app saw a usage-only chunk it did not ask for: %+v", c)
			continue
		}
		text.WriteString(c.Choices[0].Delta.Content)
		arrivals = append(arrivals, time.Now())
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if len(arrivals) < 5 || text.Len() == 0 {
		t.Fatalf("got %d chunks (%q), want the stream's many", len(arrivals), text.String())
	}
	// Incremental: the first chunk arrived well before the last (no buffering of the
	// whole response). Paced at 20 tokens/s, the spread is about a second.
	if spread := arrivals[len(arrivals)-1].Sub(arrivals[0]); spread < 300*time.Millisecond {
		t.Errorf("chunks arrived within %v of each other: the stream was buffered", spread)
	}
	// Usage settled from the stream the sidecar asked include_usage for.
	// Settlement follows the last byte to the app; wait for it.
	testkit.Eventually(t, 30*time.Second, "20 output tokens settled and the unused reservation refunded", testkit.True(func() bool {
		c := e.state().Engine.Accounts[0].Counters
		return c.OutputTokens == 20 && c.RefundedTokens > 0
	}))
}

func TestOfficialSDKStreamWithUsageRequestedKeepsIt(t *testing.T) {
	e := sdkEnv(t, limiterconfig.Limits{RequestsPerMinute: 100}, simulator.Latency{OutputTokens: 5})
	stream := sdkClient(e).Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:         "gpt-4o",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var usage int64
	for stream.Next() {
		if c := stream.Current(); len(c.Choices) == 0 {
			usage = c.Usage.CompletionTokens
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "usage settled", testkit.True(func() bool { return e.state().Engine.Accounts[0].Counters.OutputTokens == 5 }))
	if usage != 5 {
		t.Errorf("usage chunk completion tokens = %d, want 5 (the app asked for it)", usage)
	}
}

func TestOfficialSDKEmbedding(t *testing.T) {
	e := sdkEnv(t, limiterconfig.Limits{RequestsPerMinute: 100, TokensPerMinute: 100000}, simulator.Latency{})
	got, err := sdkClient(e).Embeddings.New(context.Background(), openai.EmbeddingNewParams{
		Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello world", "goodbye"}},
	})
	if err != nil {
		t.Fatalf("embedding: %v", err)
	}
	if len(got.Data) != 2 || len(got.Data[0].Embedding) == 0 {
		t.Errorf("unexpected embeddings: %d vectors", len(got.Data))
	}
	p := e.state().Engine.Accounts[0]
	if p.Pool != limiterconfig.UnlistedPool || p.Counters.InputTokens != got.Usage.PromptTokens || p.Counters.OutputTokens != 0 {
		t.Errorf("pool %q counters %+v, want embeddings settled to %d input tokens", p.Pool, p.Counters, got.Usage.PromptTokens)
	}
}

func TestOfficialSDKSeesLocal429AsRateLimitError(t *testing.T) {
	e := sdkEnv(t, limiterconfig.Limits{RequestsPerMinute: 1}, simulator.Latency{})
	cfg := openAIConfig(e.simURL, e.srv.live.Load().cfg.Providers[0].Keys[0].File, limiterconfig.Limits{RequestsPerMinute: 1})
	cfg.Queue = &limiterconfig.Queue{MaxWait: limiterconfig.Duration(200 * time.Millisecond), MaxDepth: 10}
	e.writeConfig(cfg)
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	client := sdkClient(e)
	params := openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}
	if _, err := client.Chat.Completions.New(context.Background(), params); err != nil {
		t.Fatalf("first request: %v", err)
	}
	var raw *http.Response
	_, err := client.Chat.Completions.New(context.Background(), params, option.WithResponseInto(&raw))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want *openai.Error", err)
	}
	if apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Code != "queue_timeout" || !strings.Contains(apiErr.Message, "requestsPerMinute") {
		t.Errorf("status %d code %q message %q, want 429 queue_timeout naming requestsPerMinute", apiErr.StatusCode, apiErr.Code, apiErr.Message)
	}
	if ra := raw.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q, want the time until a request fits", ra)
	}
	if n := e.simPool(0, "gpt-4o").Requests; n != 1 {
		t.Errorf("simulator saw %d requests, want 1 (the refused one never left)", n)
	}
}
