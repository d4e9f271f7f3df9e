package provider

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Realistic request bodies of about 1 KB.
var (
	benchOpenAIChat = []byte(`{"model":"gpt-4o-mini","temperature":0.2,"max_tokens":512,"stream":false,"messages":[` +
		`{"role":"system","content":"You are a support assistant for an online bookshop. Answer briefly and politely, cite order numbers when you have them, and never promise refunds without checking the order status first."},` +
		`{"role":"user","content":"Hi, I ordered three books last week (order #48213) and only two arrived. The missing one is \"The Left Hand of Darkness\". Can you check what happened?"},` +
		`{"role":"assistant","content":"I'm sorry about that! Let me look up order #48213. One moment while I check the shipment details for the missing title."},` +
		`{"role":"user","content":"Thanks. Also, the box was a bit damaged, one of the covers is bent. Is that something you can replace, or should I send it back first? I'd prefer not to wait another week if possible."},` +
		`{"role":"assistant","content":"Understood. I can see the order was split into two parcels; the second one is still in transit and should arrive by Thursday."},` +
		`{"role":"user","content":"Great, and what about the bent cover? Please tell me the options."}]}`)
	benchAnthropic = []byte(`{"model":"claude-sonnet-4","max_tokens":1024,"stream":true,` +
		`"system":[{"type":"text","text":"You are a support assistant for an online bookshop. Answer briefly and politely, cite order numbers when you have them, and never promise refunds without checking the order status first.","cache_control":{"type":"ephemeral"}}],"messages":[` +
		`{"role":"user","content":"Hi, I ordered three books last week (order #48213) and only two arrived. The missing one is \"The Left Hand of Darkness\". Can you check what happened?"},` +
		`{"role":"assistant","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_01","name":"lookup_order","input":{"order_id":"48213"}}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":[{"type":"text","text":"{\"status\":\"split\",\"parcels\":[{\"eta\":\"delivered\"},{\"eta\":\"Thursday\"}]}"}]}]},` +
		`{"role":"assistant","content":"The second parcel is in transit and should arrive by Thursday."},` +
		`{"role":"user","content":"Great, and the bent cover? Please tell me the options."}],` +
		`"tools":[{"name":"lookup_order","description":"Look up an order by id","input_schema":{"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"]}}]}`)
	benchGemini = []byte(`{"systemInstruction":{"parts":[{"text":"You are a support assistant for an online bookshop. Answer briefly and politely, cite order numbers when you have them, and never promise refunds without checking the order status first."}]},"contents":[` +
		`{"role":"user","parts":[{"text":"Hi, I ordered three books last week (order #48213) and only two arrived. The missing one is \"The Left Hand of Darkness\". Can you check what happened?"}]},` +
		`{"role":"model","parts":[{"text":"I'm sorry about that! Let me look up order #48213. One moment while I check the shipment details for the missing title."}]},` +
		`{"role":"user","parts":[{"text":"Thanks. Also, the box was a bit damaged, one of the covers is bent. Is that something you can replace, or should I send it back first?"}]},` +
		`{"role":"model","parts":[{"text":"Understood. The second parcel is still in transit and should arrive by Thursday."}]},` +
		`{"role":"user","parts":[{"text":"Great, and what about the bent cover? Please tell me the options."}]}],"generationConfig":{"maxOutputTokens":512,"temperature":0.2}}`)
)

func benchParse(b *testing.B, d Dialect, op Operation, body []byte) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequest(d, op, "gemini-2.5-flash", body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRequestOpenAIChat(b *testing.B) {
	benchParse(b, DialectOpenAI, OpChatCompletions, benchOpenAIChat)
}
func BenchmarkParseRequestAnthropic(b *testing.B) {
	benchParse(b, DialectAnthropic, OpMessages, benchAnthropic)
}
func BenchmarkParseRequestGemini(b *testing.B) {
	benchParse(b, DialectGemini, OpGenerateContent, benchGemini)
}

func benchPromptText(b *testing.B) string {
	r, err := ParseRequest(DialectOpenAI, OpChatCompletions, "", benchOpenAIChat)
	if err != nil {
		b.Fatal(err)
	}
	return r.PromptText
}

func benchCount(b *testing.B, c Counter, text string) {
	n := countOf(c, text)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		countOf(c, text)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64(n), "tokens")
}

// The ~1 KB prompt text of benchOpenAIChat.
func BenchmarkCountO200k(b *testing.B)    { benchCount(b, o200k(), benchPromptText(b)) }
func BenchmarkCountCl100k(b *testing.B)   { benchCount(b, cl100k(), benchPromptText(b)) }
func BenchmarkCountEstimate(b *testing.B) { benchCount(b, Estimate, benchPromptText(b)) }

// A memo that has seen the conversation before: a chat app resending history.
func BenchmarkCountO200kMemoWarm(b *testing.B) {
	m := NewMemoCounter(o200k(), 4096)
	benchCount(b, m, benchPromptText(b))
}

// A memo that has seen all but the newest message.
func BenchmarkCountO200kMemoNewTurn(b *testing.B) {
	text := benchPromptText(b)
	m := NewMemoCounter(o200k(), 4096)
	countOf(m, text)
	turn := 0
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		turn++
		countOf(m, text+fmt.Sprintf("\nuser\nAnd what about order #%d, placed yesterday?", turn))
	}
}

// Large prompts: 100 KB of prose, and 100 KB of code.
func BenchmarkCountO200kLarge(b *testing.B) {
	benchCount(b, o200k(), strings.Repeat(benchPromptText(b)+"\n", 100))
}
func BenchmarkCountEstimateLarge(b *testing.B) {
	benchCount(b, Estimate, strings.Repeat(benchPromptText(b)+"\n", 100))
}

// The hot path before a reservation: parse and count a 1 KB chat request.
func BenchmarkParseAndCountO200k(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		r, _ := ParseRequest(DialectOpenAI, OpChatCompletions, "", benchOpenAIChat)
		_, _ = PromptTokens(context.Background(), o200k(), &r)
	}
}
func BenchmarkParseAndCountEstimate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		r, _ := ParseRequest(DialectOpenAI, OpChatCompletions, "", benchOpenAIChat)
		_, _ = PromptTokens(context.Background(), Estimate, &r)
	}
}

// benchStream is a realistic OpenAI chat stream: 50 content chunks, the final
// chunk, the usage chunk, [DONE]; about 12 KB.
var benchStream = func() [][]byte {
	var events [][]byte
	events = append(events, []byte(openAIChunk1))
	for i := range 48 {
		events = append(events, []byte(fmt.Sprintf(`data: {"id":"chatcmpl-9Xyz","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" word%d"},"logprobs":null,"finish_reason":null}],"usage":null}`+"\n\n", i)))
	}
	events = append(events, []byte(openAIChunk3), []byte(openAIUsageChunk), []byte(openAIDone))
	return events
}()

func benchTracker(b *testing.B, strip bool, writes [][]byte) {
	total := 0
	for _, w := range writes {
		total += len(w)
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	for b.Loop() {
		tr := NewStreamTracker(DialectOpenAI, strip)
		for _, w := range writes {
			tr.Write(w)
		}
		tr.Flush()
		if _, ok := tr.Usage(); !ok {
			b.Fatal("no usage")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(writes)), "ns/write")
}

// One event per Write, as a provider flushing each chunk delivers them.
func BenchmarkStreamTrackerObserve(b *testing.B) { benchTracker(b, false, benchStream) }
func BenchmarkStreamTrackerStrip(b *testing.B)   { benchTracker(b, true, benchStream) }

// The same bytes in 100-byte reads that cut events anywhere.
func BenchmarkStreamTrackerStripCut(b *testing.B) {
	var all []byte
	for _, e := range benchStream {
		all = append(all, e...)
	}
	var writes [][]byte
	for i := 0; i < len(all); i += 100 {
		writes = append(writes, all[i:min(i+100, len(all))])
	}
	benchTracker(b, true, writes)
}

func BenchmarkClassify429(b *testing.B) {
	h := hdr("Retry-After", "2", "X-Ratelimit-Remaining-Tokens", "0", "X-Ratelimit-Reset-Tokens", "6m0s")
	body := []byte(`{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2.5s.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		Classify("openai", 429, h, body, now)
	}
}

func BenchmarkParseRateLimitsAnthropic(b *testing.B) {
	h := hdr("Anthropic-Ratelimit-Requests-Limit", "1000", "Anthropic-Ratelimit-Requests-Remaining", "999", "Anthropic-Ratelimit-Requests-Reset", "2026-03-01T12:00:01Z",
		"Anthropic-Ratelimit-Input-Tokens-Limit", "80000", "Anthropic-Ratelimit-Input-Tokens-Remaining", "79000", "Anthropic-Ratelimit-Input-Tokens-Reset", "2026-03-01T12:00:00.250Z")
	b.ReportAllocs()
	for b.Loop() {
		ParseRateLimits("anthropic", h, testNow)
	}
}

func BenchmarkParseUsageOpenAI(b *testing.B) {
	body := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"` + strings.Repeat("The second parcel is in transit. ", 60) + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":219,"completion_tokens":420,"total_tokens":639,"prompt_tokens_details":{"cached_tokens":0}}}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ParseUsage(DialectOpenAI, body)
	}
}
