package provider

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func o200k() Counter  { return CounterFor("o200k_base", "") }
func cl100k() Counter { return CounterFor("cl100k_base", "") }

// countOf counts text with c, which must not fail.
func countOf(c Counter, text string) int64 {
	n, err := c.Count(context.Background(), text)
	if err != nil {
		panic(err)
	}
	return n
}

func TestCounterFor(t *testing.T) {
	tests := []struct {
		tokenizer, model string
		want             Counter
	}{
		{"o200k_base", "claude-opus-4-7", o200k()},
		{"cl100k_base", "gpt-4o", cl100k()},
		{"estimate", "gpt-4o", Estimate},
		{"", "gpt-4o", o200k()},
		{"", "gpt-4o-mini-2024-07-18", o200k()},
		{"", "chatgpt-4o-latest", o200k()},
		{"", "gpt-4.1-nano", o200k()},
		{"", "gpt-5", o200k()},
		{"", "gpt-5.5", o200k()},
		{"", "gpt-5-mini", o200k()},
		{"", "o1", o200k()},
		{"", "o3-mini", o200k()},
		{"", "o4-mini-high", o200k()},
		{"", "ft:gpt-4o-2024-08-06:org::id", o200k()},
		{"", "openai/gpt-4o", o200k()},
		{"", "GPT-4O", o200k()},
		{"", "gpt-oss-120b", o200k()},
		{"", "gpt-4", cl100k()},
		{"", "gpt-4-turbo", cl100k()},
		{"", "gpt-4-0613", cl100k()},
		{"", "gpt-3.5-turbo", cl100k()},
		{"", "gpt-35-turbo", cl100k()},
		{"", "text-embedding-3-small", cl100k()},
		{"", "claude-opus-4-7", Estimate},
		{"", "gemini-2.5-pro", Estimate},
		{"", "deepseek-chat", Estimate},
		{"", "o100", Estimate},
		{"", "gpt-40", Estimate},
		{"", "", Estimate},
		{"bogus", "gpt-4o", o200k()},
	}
	for _, tt := range tests {
		if got := CounterFor(tt.tokenizer, tt.model); got != tt.want {
			t.Errorf("CounterFor(%q, %q) = %T %v, want %v", tt.tokenizer, tt.model, got, got, tt.want)
		}
	}
	if CounterFor("o200k_base", "") != CounterFor("", "gpt-4o") {
		t.Error("o200k counters are not shared")
	}
}

func TestBPECounts(t *testing.T) {
	// "tiktoken is great!" is the OpenAI cookbook's example: 6 cl100k_base tokens.
	tests := []struct {
		counter Counter
		text    string
		want    int64
	}{
		{o200k(), "", 0},
		{o200k(), "hello world", 2},
		{cl100k(), "hello world", 2},
		{cl100k(), "tiktoken is great!", 6},
	}
	for _, tt := range tests {
		if got := countOf(tt.counter, tt.text); got != tt.want {
			t.Errorf("Count(%q) = %d, want %d", tt.text, got, tt.want)
		}
	}
	// Special tokens in user text are counted as the text they are, never as
	// one control token.
	if n := countOf(o200k(), "<|endoftext|>"); n < 3 {
		t.Errorf("Count(<|endoftext|>) = %d, want it tokenized as plain text", n)
	}
}

// estimateSamples are texts of the kinds prompts are made of.
func estimateSamples(t *testing.T) map[string]string {
	src, err := os.ReadFile("request.go")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 3000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	return map[string]string{
		"english":  strings.Repeat("The quarterly report shows that revenue grew by twelve percent, driven mostly by strong demand in Europe and a recovery in Asian markets. However, operating costs also rose, and management expects margins to remain under pressure until the new factory opens next spring. ", 10),
		"go code":  string(src),
		"json":     `{"type":"object","properties":{"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":"integer","minimum":1,"maximum":14}},"required":["location"]}`,
		"chinese":  strings.Repeat("人工智能正在改变我们的工作方式。许多公司已经开始使用大型语言模型来处理客户服务、编写代码和分析数据。", 10),
		"japanese": strings.Repeat("東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。ひらがなとカタカナも使われます。", 10),
		"russian":  strings.Repeat("Искусственный интеллект меняет то, как мы работаем и общаемся друг с другом. ", 10),
		"german":   strings.Repeat("Die Bundesregierung hat heute neue Maßnahmen zur Förderung erneuerbarer Energien beschlossen. ", 10),
		"base64":   base64.StdEncoding.EncodeToString(random),
		"hex":      hex.EncodeToString(random[:1000]),
		"numbers":  strings.Repeat("1234567, 89.5, 2024-01-15, 3.14159, 42; ", 20),
		"emoji":    strings.Repeat("Great job 🎉🚀👍 see you 😀 ", 10),
		"indented": strings.Repeat("    if x {\n        return y\n    }\n", 20),
	}
}

// TestEstimateTracksBPE checks the estimate's stated basis: at or above the
// o200k_base count for every kind of text, and not wildly above.
func TestEstimateTracksBPE(t *testing.T) {
	for name, text := range estimateSamples(t) {
		real := countOf(o200k(), text)
		est := countOf(Estimate, text)
		ratio := float64(est) / float64(real)
		if ratio < 1.0 || ratio > 1.7 {
			t.Errorf("%s: estimate %d vs o200k_base %d (x%.2f), want x1.0..1.7", name, est, real, ratio)
		}
	}
}

func TestEstimateEdgeCases(t *testing.T) {
	tests := []struct {
		text string
		want int64
	}{
		{"", 0},
		{" ", 2},
		{"a", 2},
		{"hello", 2},
		{"hello world", 3},
		{"\xff\xfe", 3},  // stray bytes: one byte-token each, +10%
		{"\x00", 2},      // a control character
		{"👍", 2},         // 1.5 tokens, +10%
		{"123456789", 4}, // three groups of three, +10%
		{"+", 2},         // a base64 symbol alone is punctuation (found by FuzzMemoCounter)
		{"a-b_c", 6},     // five runs of one character, +10%
	}
	for _, tt := range tests {
		if got := countOf(Estimate, tt.text); got != tt.want {
			t.Errorf("Estimate.Count(%q) = %d, want %d", tt.text, got, tt.want)
		}
	}
}

func TestPromptTokens(t *testing.T) {
	prompt := func(c Counter, r *Request) int64 {
		t.Helper()
		n, err := PromptTokens(context.Background(), c, r)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	r := &Request{PromptText: "hello world", PromptParts: 2, FixedPromptTokens: 85}
	if got, want := prompt(o200k(), r), int64(2+3*2+3+85); got != want {
		t.Errorf("PromptTokens = %d, want %d", got, want)
	}
	embed := &Request{PromptText: "hello world"}
	if got := prompt(o200k(), embed); got != 2 {
		t.Errorf("PromptTokens without parts = %d, want 2 (no chat framing)", got)
	}
	if got := prompt(nil, embed); got != countOf(Estimate, "hello world") {
		t.Errorf("PromptTokens with a nil counter = %d, want the estimate", got)
	}
	if got := prompt(o200k(), nil); got != 0 {
		t.Errorf("PromptTokens(nil request) = %d", got)
	}
	// The example conversation of the OpenAI cookbook's "How to count tokens
	// with tiktoken", which reports 124 prompt tokens for gpt-4o. We count
	// names as text and join parts with newlines, so we may land a few above,
	// never below.
	body := `{"model":"gpt-4o","messages":[` +
		`{"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},` +
		`{"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},` +
		`{"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."},` +
		`{"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},` +
		`{"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."},` +
		`{"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}]}`
	req, err := ParseRequest(DialectOpenAI, OpChatCompletions, "", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	got := prompt(CounterFor("", "gpt-4o"), &req)
	if got < 124 || got > 137 {
		t.Errorf("PromptTokens of the cookbook example = %d, want 124..137", got)
	}
}

func TestMemoCounterExact(t *testing.T) {
	samples := estimateSamples(t)
	samples["mixed lines"] = "line one\n  indented\n\n\nafter blanks\n/slash start\n\ttab\r\nwindows\rmac\n" + "x.\n/y\n  \n z"
	for _, base := range []Counter{o200k(), cl100k()} {
		m := NewMemoCounter(base, 64)
		for round := range 3 { // cold, warm, and after evictions
			for name, text := range samples {
				if got, want := countOf(m, text), countOf(base, text); got != want {
					t.Errorf("round %d, %s: memo %d, direct %d", round, name, got, want)
				}
			}
		}
	}
}

func TestMemoCounterBoundedAndConcurrent(t *testing.T) {
	m := NewMemoCounter(o200k(), 32)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				text := strings.Repeat("line ", i%7) + "\nnumber " + string(rune('a'+g)) + strings.Repeat("x", i) + "\n"
				if got, want := countOf(m, text), countOf(o200k(), text); got != want {
					t.Errorf("memo %d, direct %d for %q", got, want, text)
					return
				}
			}
		}()
	}
	wg.Wait()
	entries := 0
	for i := range m.shards {
		entries += len(m.shards[i].cur) + len(m.shards[i].old)
	}
	if entries > 2*memoShards*m.perGen {
		t.Errorf("memo holds %d entries, bound is %d", entries, 2*memoShards*m.perGen)
	}
}

func TestNextSplit(t *testing.T) {
	var got []string
	text := "a\nb\n  c\n\nd\n/e\n \n f\n\u00a0g\nh"
	for len(text) > 0 {
		n := nextSplit(text)
		got = append(got, text[:n])
		text = text[n:]
	}
	want := []string{"a\n", "b\n", "  c\n\n", "d\n/e\n \n", " f\n\u00a0g\n", "h"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("segments (-want +got):\n%s", diff)
	}
}

// TestCountingStopsWhenTheRequestGoes checks every counter, and PromptTokens,
// give up with the context's error once it is done, and that a memo does not
// remember a count cut short.
func TestCountingStopsWhenTheRequestGoes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	long := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 10000) // 450 KB
	for name, c := range map[string]Counter{"o200k_base": o200k(), "cl100k_base": cl100k(), "estimate": Estimate, "memo": NewMemoCounter(o200k(), 64)} {
		if n, err := c.Count(ctx, long); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Count with a cancelled context = %d, %v; want context.Canceled", name, n, err)
		}
		if n, err := PromptTokens(ctx, c, &Request{PromptText: long, PromptParts: 1}); !errors.Is(err, context.Canceled) || n != 0 {
			t.Errorf("%s: PromptTokens with a cancelled context = %d, %v; want 0, context.Canceled", name, n, err)
		}
	}
	// One segment (no space or newline to split at), cut short inside the
	// counter.
	line := strings.Repeat("ab1", 20000)
	m := NewMemoCounter(o200k(), 64)
	if _, err := m.Count(ctx, line); !errors.Is(err, context.Canceled) {
		t.Fatalf("memo: %v, want context.Canceled", err)
	}
	if got, want := countOf(m, line), countOf(o200k(), line); got != want {
		t.Errorf("memo after a cancelled count: %d, want %d", got, want)
	}
}
