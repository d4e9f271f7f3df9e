package translate

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
)

// Round trips over the subset every dialect can say the same way: one system
// prompt, alternating turns of text, function tools with JSON Schema parameters,
// tool calls with compact JSON arguments and their text results, a tool choice,
// an output budget and at most four stop sequences. Translating a chat request to
// another dialect and back must give the request back, member for member. Gemini
// names no call ids; the generated ids are the ones Gemini's translation makes
// (call_0, call_1, ... in order), so the round trip through it is exact too.

var words = []string{"alpha", "Ünïcode", "quote\"d", "back\\slash", "new\nline", "tab\there", "emoji 😀", "<html>", "plain", "ñ"}

func genText(rng *rand.Rand) string {
	n := 1 + rng.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = words[rng.IntN(len(words))]
	}
	return strings.Join(parts, " ")
}

// genChat makes a random chat request in the common subset.
func genChat(rng *rand.Rand) map[string]any {
	var msgs []any
	if rng.IntN(2) == 0 {
		msgs = append(msgs, map[string]any{"role": "system", "content": genText(rng)})
	}
	tools := []any{
		map[string]any{"type": "function", "function": map[string]any{"name": "get_weather", "description": "Weather", "parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []any{"city"}}}},
		map[string]any{"type": "function", "function": map[string]any{"name": "lookup", "parameters": map[string]any{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}, "n": map[string]any{"type": "integer"}}}}},
	}
	call := 0
	turns := 1 + rng.IntN(4)
	for i := 0; i < turns; i++ {
		msgs = append(msgs, map[string]any{"role": "user", "content": genText(rng)})
		if i == turns-1 && rng.IntN(2) == 0 {
			break
		}
		a := map[string]any{"role": "assistant", "content": nil}
		if rng.IntN(3) > 0 {
			a["content"] = genText(rng)
		}
		var results []any
		if n := rng.IntN(3); n > 0 || a["content"] == nil {
			var calls []any
			for j := 0; j < max(n, 1); j++ {
				id := fmt.Sprintf("call_%d", call)
				call++
				args, _ := json.Marshal(map[string]any{"q": genText(rng), "n": rng.IntN(100)})
				calls = append(calls, map[string]any{"id": id, "type": "function", "function": map[string]any{"name": "lookup", "arguments": string(args)}})
				results = append(results, map[string]any{"role": "tool", "tool_call_id": id, "content": genText(rng)})
			}
			a["tool_calls"] = calls
		}
		msgs = append(msgs, a)
		msgs = append(msgs, results...)
	}
	// A conversation ends with the user's turn or tool results.
	if last := msgs[len(msgs)-1].(map[string]any); last["role"] == "assistant" {
		msgs = append(msgs, map[string]any{"role": "user", "content": genText(rng)})
	}
	req := map[string]any{"model": "gpt-5.5", "messages": msgs, "max_completion_tokens": float64(1 + rng.IntN(4000))}
	if rng.IntN(2) == 0 {
		req["tools"] = tools
		switch rng.IntN(4) {
		case 0:
			req["tool_choice"] = "auto"
		case 1:
			req["tool_choice"] = "required"
		case 2:
			req["tool_choice"] = "none"
		}
	}
	if n := rng.IntN(5); n > 0 {
		var stops []any
		for i := 0; i < n; i++ {
			stops = append(stops, fmt.Sprintf("STOP%d", i))
		}
		req["stop"] = stops
	}
	if rng.IntN(2) == 0 {
		req["stream"] = true
		req["stream_options"] = map[string]any{"include_usage": true}
	}
	return req
}

func sourceFor(pt string) Source {
	switch provider.DialectOf(pt) {
	case provider.DialectAnthropic:
		return messagesApp
	case provider.DialectGemini:
		return geminiApp
	}
	return chatApp
}

func TestRoundTripChat(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 300; i++ {
		orig := genChat(rng)
		body, err := json.Marshal(orig)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := provider.ParseRequest(provider.DialectOpenAI, provider.OpChatCompletions, "", body); err != nil {
			t.Fatalf("generated request refused: %v\n%s", err, body)
		}
		for _, via := range []string{limiterconfig.ProviderAnthropic, limiterconfig.ProviderGemini} {
			there, err := Request(chatApp, body, Target{ProviderType: via, Model: "m", MaxOutputTokens: 1})
			if err != nil {
				t.Fatalf("to %s: %v\n%s", via, err, body)
			}
			src := sourceFor(via)
			if orig["stream"] == true && via == limiterconfig.ProviderGemini {
				src.Op = provider.OpStreamGenerateContent
			}
			back, err := Request(src, there.Body, Target{ProviderType: limiterconfig.ProviderOpenAI, Model: "gpt-5.5"})
			if err != nil {
				t.Fatalf("back from %s: %v\n%s", via, err, there.Body)
			}
			var got map[string]any
			if err := json.Unmarshal(back.Body, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(orig, got); diff != "" {
				t.Fatalf("chat -> %s -> chat changed the request (-orig +back):\n%s\nvia: %s", via, diff, there.Body)
			}
			if len(there.Dropped)+len(back.Dropped) > 0 {
				t.Errorf("the common subset dropped %v %v", there.Dropped, back.Dropped)
			}
		}
	}
}

// TestRoundTripMessages: Anthropic -> chat -> Anthropic over the same subset,
// starting from the Anthropic form of generated chat requests.
func TestRoundTripMessages(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 200; i++ {
		body, _ := json.Marshal(genChat(rng))
		anth, err := Request(chatApp, body, Target{ProviderType: limiterconfig.ProviderAnthropic, Model: "claude", MaxOutputTokens: 1})
		if err != nil {
			t.Fatal(err)
		}
		chat, err := Request(messagesApp, anth.Body, Target{ProviderType: limiterconfig.ProviderOpenAI, Model: "gpt"})
		if err != nil {
			t.Fatalf("%v\n%s", err, anth.Body)
		}
		again, err := Request(chatApp, chat.Body, Target{ProviderType: limiterconfig.ProviderAnthropic, Model: "claude", MaxOutputTokens: 1})
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		_ = json.Unmarshal(anth.Body, &a)
		_ = json.Unmarshal(again.Body, &b)
		if diff := cmp.Diff(a, b); diff != "" {
			t.Fatalf("messages -> chat -> messages changed the request (-orig +back):\n%s", diff)
		}
	}
}

// TestRoundTripAnswers: an Anthropic answer read by a chat app, written back as
// an Anthropic answer, says the same (content, tool calls, stop reason, usage).
func TestRoundTripAnswers(t *testing.T) {
	for _, file := range []string{"testdata/response/anthropic/tools.json", "testdata/response/anthropic/max_tokens.json"} {
		upstream := readFile(t, file)
		asChat, err := translation(provider.DialectOpenAI, provider.OpChatCompletions, provider.DialectAnthropic, "anthropic").Response(upstream, now)
		if err != nil {
			t.Fatal(err)
		}
		back, err := translation(provider.DialectAnthropic, provider.OpMessages, provider.DialectOpenAI, "openai").Response(asChat, now)
		if err != nil {
			t.Fatal(err)
		}
		var a, b map[string]any
		_ = json.Unmarshal(upstream, &a)
		_ = json.Unmarshal(back, &b)
		for _, k := range []string{"id", "content", "stop_reason", "model"} {
			if diff := cmp.Diff(a[k], b[k]); diff != "" {
				t.Errorf("%s: %s changed (-orig +back):\n%s", file, k, diff)
			}
		}
		ua, ub := a["usage"].(map[string]any), b["usage"].(map[string]any)
		for _, k := range []string{"input_tokens", "output_tokens"} {
			if ua[k] != ub[k] {
				t.Errorf("%s: usage.%s %v, back %v", file, k, ua[k], ub[k])
			}
		}
	}
}
