package translate

import (
	"testing"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
)

// Benchmarks of translation cost per request, per answer and per streamed event,
// beside the cost of the path that needs no translation (what the proxy does
// today: the request as it is, or with its model rewritten; the stream through a
// StreamTracker). Run with -benchmem on a quiet machine; compare ratios within
// one run.

// benchChat is a chat request of about 2 KB: a system prompt, six turns, a tool
// definition, a tool call and its result.
var benchChat = []byte(`{"model":"gpt-5.5","max_completion_tokens":512,"temperature":0.3,"stream":true,"stream_options":{"include_usage":true},
"messages":[
{"role":"system","content":"You are a helpful assistant for a travel company. Answer briefly, cite prices in EUR, and use the tools when the user asks about weather or flights."},
{"role":"user","content":"I want to go from Paris to Oslo next weekend. What will the weather be like, and are there direct flights on Saturday morning?"},
{"role":"assistant","content":"Let me check the forecast first.","tool_calls":[{"id":"call_w1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\",\"days\":3}"}}]},
{"role":"tool","tool_call_id":"call_w1","content":"{\"forecast\":[{\"day\":\"Sat\",\"sky\":\"snow\",\"high_c\":-2},{\"day\":\"Sun\",\"sky\":\"clear\",\"high_c\":1}]}"},
{"role":"assistant","content":"Saturday will bring snow with a high of -2°C; Sunday is clear at 1°C. Shall I look for flights?"},
{"role":"user","content":"Yes please, direct flights only, leaving before 10:00, and tell me the cheapest one. Also, is a cabin bag included?"}
],
"tools":[{"type":"function","function":{"name":"get_weather","description":"Forecast for a city","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer","minimum":1,"maximum":10}},"required":["city"]}}},
{"type":"function","function":{"name":"search_flights","description":"Direct and connecting flights","parameters":{"type":"object","properties":{"from":{"type":"string"},"to":{"type":"string"},"date":{"type":"string","format":"date"},"direct":{"type":"boolean"}},"required":["from","to","date"]}}}],
"tool_choice":"auto"}`)

// benchBodies gives the same conversation in each source dialect, translated from
// benchChat (so each benchmark reads a request of the same content).
func benchBodies(b *testing.B) map[string][]byte {
	b.Helper()
	out := map[string][]byte{"chat": benchChat}
	for name, pt := range map[string]string{"messages": limiterconfig.ProviderAnthropic, "gemini": limiterconfig.ProviderGemini} {
		tr, err := Request(chatApp, benchChat, Target{ProviderType: pt, Model: "m"})
		if err != nil {
			b.Fatal(err)
		}
		out[name] = tr.Body
	}
	out["responses"] = []byte(`{"model":"gpt-5.5","instructions":"You are a helpful assistant for a travel company. Answer briefly, cite prices in EUR, and use the tools when the user asks about weather or flights.","max_output_tokens":512,"stream":true,
"input":[{"role":"user","content":"I want to go from Paris to Oslo next weekend. What will the weather be like, and are there direct flights on Saturday morning?"},
{"role":"assistant","content":"Let me check the forecast first."},
{"type":"function_call","call_id":"call_w1","name":"get_weather","arguments":"{\"city\":\"Oslo\",\"days\":3}"},
{"type":"function_call_output","call_id":"call_w1","output":"{\"forecast\":[{\"day\":\"Sat\",\"sky\":\"snow\",\"high_c\":-2},{\"day\":\"Sun\",\"sky\":\"clear\",\"high_c\":1}]}"},
{"role":"assistant","content":"Saturday will bring snow with a high of -2°C; Sunday is clear at 1°C. Shall I look for flights?"},
{"role":"user","content":"Yes please, direct flights only, leaving before 10:00, and tell me the cheapest one. Also, is a cabin bag included?"}],
"tools":[{"type":"function","name":"get_weather","description":"Forecast for a city","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer","minimum":1,"maximum":10}},"required":["city"]}},
{"type":"function","name":"search_flights","description":"Direct and connecting flights","parameters":{"type":"object","properties":{"from":{"type":"string"},"to":{"type":"string"},"date":{"type":"string","format":"date"},"direct":{"type":"boolean"}},"required":["from","to","date"]}}],
"tool_choice":"auto"}`)
	return out
}

func BenchmarkRequest(b *testing.B) {
	bodies := benchBodies(b)
	for _, c := range []struct {
		name, from string
		src        Source
		pt         string
	}{
		{"chat-to-anthropic", "chat", chatApp, limiterconfig.ProviderAnthropic},
		{"chat-to-gemini", "chat", chatApp, limiterconfig.ProviderGemini},
		{"responses-to-deepseek", "responses", responsesApp, limiterconfig.ProviderDeepSeek},
		{"responses-to-anthropic", "responses", responsesApp, limiterconfig.ProviderAnthropic},
		{"messages-to-openai", "messages", messagesApp, limiterconfig.ProviderOpenAI},
		{"gemini-to-openai", "gemini", Source{Dialect: provider.DialectGemini, Op: provider.OpStreamGenerateContent, RawQuery: "alt=sse"}, limiterconfig.ProviderOpenAI},
	} {
		body := bodies[c.from]
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := Request(c.src, body, Target{ProviderType: c.pt, Model: "target-model"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// The path without translation, for comparison: Needed says no, and the body
	// goes as it is or with its model set (a chain alias).
	b.Run("none", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchChat)))
		for b.Loop() {
			if Needed(provider.DialectOpenAI, provider.OpChatCompletions, limiterconfig.ProviderDeepSeek) {
				b.Fatal("needed")
			}
		}
	})
	b.Run("none-set-model", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchChat)))
		for b.Loop() {
			// What the limiter does on the untranslated path: splice, not copy.
			rw := provider.NewRewrite(benchChat)
			if err := rw.SetModel(provider.DialectOpenAI, "deepseek-chat"); err != nil {
				b.Fatal(err)
			}
			rw.Segments()
		}
	})
	// ParseRequest runs on every request, translated or not: the scale to read
	// the translation's cost against.
	b.Run("parse-request", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchChat)))
		for b.Loop() {
			if _, err := provider.ParseRequest(provider.DialectOpenAI, provider.OpChatCompletions, "", benchChat); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkResponse(b *testing.B) {
	for _, c := range []struct {
		name, file string
		app        provider.Dialect
		op         provider.Operation
		target     provider.Dialect
	}{
		{"anthropic-to-chat", "testdata/response/anthropic/tools.json", provider.DialectOpenAI, provider.OpChatCompletions, provider.DialectAnthropic},
		{"gemini-to-chat", "testdata/response/gemini/text.json", provider.DialectOpenAI, provider.OpChatCompletions, provider.DialectGemini},
		{"openai-to-messages", "testdata/response/openai/tools.json", provider.DialectAnthropic, provider.OpMessages, provider.DialectOpenAI},
		{"openai-to-responses", "testdata/response/openai/text.json", provider.DialectOpenAI, provider.OpResponses, provider.DialectOpenAI},
	} {
		body := readFile(b, c.file)
		tr := translation(c.app, c.op, c.target, "openai")
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := tr.Response(body, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	body := readFile(b, "testdata/response/anthropic/tools.json")
	b.Run("none-parse-usage", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			provider.ParseUsage(provider.DialectAnthropic, body)
		}
	})
}

// deltaEvents are one text delta in each upstream dialect, as it comes off the
// wire.
var deltaEvents = map[provider.Dialect]string{
	provider.DialectOpenAI:    `data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"gpt-5.5","choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}]}` + "\n\n",
	provider.DialectAnthropic: "event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" token"}}` + "\n\n",
	provider.DialectGemini:    `data: {"candidates": [{"content": {"parts": [{"text": " token"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 3,"totalTokenCount": 12},"modelVersion": "gemini-2.5-flash","responseId": "g"}` + "\r\n\r\n",
}

// streamStarts open a stream so that the deltas after them are mid-answer.
var streamStarts = map[provider.Dialect]string{
	provider.DialectOpenAI:    `data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"gpt-5.5","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n",
	provider.DialectAnthropic: "event: message_start\n" + `data: {"type":"message_start","message":{"id":"msg_x","type":"message","role":"assistant","model":"claude","content":[],"usage":{"input_tokens":10,"output_tokens":1}}}` + "\n\nevent: content_block_start\n" + `data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n",
	provider.DialectGemini:    "",
}

func BenchmarkStreamEvent(b *testing.B) {
	for _, c := range []struct {
		name   string
		target provider.Dialect
		app    provider.Dialect
		op     provider.Operation
	}{
		{"anthropic-to-chat", provider.DialectAnthropic, provider.DialectOpenAI, provider.OpChatCompletions},
		{"anthropic-to-responses", provider.DialectAnthropic, provider.DialectOpenAI, provider.OpResponses},
		{"gemini-to-chat", provider.DialectGemini, provider.DialectOpenAI, provider.OpChatCompletions},
		{"openai-to-messages", provider.DialectOpenAI, provider.DialectAnthropic, provider.OpMessages},
		{"openai-to-gemini", provider.DialectOpenAI, provider.DialectGemini, provider.OpStreamGenerateContent},
	} {
		ev := []byte(deltaEvents[c.target])
		b.Run(c.name, func(b *testing.B) {
			s := translation(c.app, c.op, c.target, "x").NewStream(now)
			s.Write([]byte(streamStarts[c.target]))
			b.ReportAllocs()
			b.SetBytes(int64(len(ev)))
			for b.Loop() {
				if out := s.Write(ev); len(out) == 0 {
					b.Fatal("no output")
				}
			}
		})
	}
	// Without translation the proxy runs each event through a StreamTracker.
	for d, name := range map[provider.Dialect]string{provider.DialectAnthropic: "none-anthropic", provider.DialectOpenAI: "none-openai", provider.DialectGemini: "none-gemini"} {
		ev := []byte(deltaEvents[d])
		b.Run(name, func(b *testing.B) {
			tr := provider.NewStreamTracker(d, false)
			tr.Write([]byte(streamStarts[d]))
			b.ReportAllocs()
			b.SetBytes(int64(len(ev)))
			for b.Loop() {
				tr.Write(ev)
			}
		})
	}
}
