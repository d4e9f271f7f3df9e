package provider

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDialectOf(t *testing.T) {
	tests := map[string]Dialect{
		"openai":            DialectOpenAI,
		"deepseek":          DialectOpenAI,
		"openai-compatible": DialectOpenAI,
		"anthropic":         DialectAnthropic,
		"gemini":            DialectGemini,
		"":                  0,
		"OpenAI":            0,
		"azure":             0,
	}
	for in, want := range tests {
		if got := DialectOf(in); got != want {
			t.Errorf("DialectOf(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestStrings(t *testing.T) {
	got := []string{DialectOpenAI.String(), DialectAnthropic.String(), DialectGemini.String(), Dialect(0).String(), Dialect(99).String()}
	want := []string{"openai", "anthropic", "gemini", "unknown", "unknown"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Dialect.String (-want +got):\n%s", diff)
	}
	seen := map[string]Operation{}
	for op := OpChatCompletions; op <= OpListModels; op++ {
		s := op.String()
		if s == "unknown" {
			t.Errorf("Operation(%d).String() = unknown", op)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("Operation(%d) and Operation(%d) both print %q", prev, op, s)
		}
		seen[s] = op
	}
	if got := Operation(0).String(); got != "unknown" {
		t.Errorf("Operation(0).String() = %q", got)
	}
}

func TestLimited(t *testing.T) {
	var limited []Operation
	for op := Operation(0); op <= OpListModels+1; op++ {
		if op.Limited() {
			limited = append(limited, op)
		}
	}
	want := []Operation{OpChatCompletions, OpCompletions, OpEmbeddings, OpResponses, OpMessages, OpGenerateContent, OpStreamGenerateContent}
	if diff := cmp.Diff(want, limited); diff != "" {
		t.Errorf("limited operations (-want +got):\n%s", diff)
	}
}

func TestRoute(t *testing.T) {
	type result struct {
		D     Dialect
		Op    Operation
		Model string
		OK    bool
	}
	post, get := http.MethodPost, http.MethodGet
	tests := []struct {
		method, path string
		want         result
	}{
		{post, "/v1/chat/completions", result{DialectOpenAI, OpChatCompletions, "", true}},
		{post, "/chat/completions", result{DialectOpenAI, OpChatCompletions, "", true}}, // DeepSeek base URL has no /v1
		{post, "/v1/completions", result{DialectOpenAI, OpCompletions, "", true}},
		{post, "/completions", result{DialectOpenAI, OpCompletions, "", true}},
		{post, "/v1/embeddings", result{DialectOpenAI, OpEmbeddings, "", true}},
		{post, "/embeddings", result{DialectOpenAI, OpEmbeddings, "", true}},
		{post, "/v1/responses", result{DialectOpenAI, OpResponses, "", true}},
		{post, "/responses", result{DialectOpenAI, OpResponses, "", true}},
		{get, "/v1/models", result{DialectOpenAI, OpListModels, "", true}},
		{get, "/models", result{DialectOpenAI, OpListModels, "", true}},
		{get, "/v1/models/gpt-4o-mini", result{DialectOpenAI, OpListModels, "gpt-4o-mini", true}},
		{post, "/v1/messages", result{DialectAnthropic, OpMessages, "", true}},
		{post, "/v1/messages/count_tokens", result{DialectAnthropic, OpCountTokens, "", true}},
		{post, "/v1beta/models/gemini-2.5-pro:generateContent", result{DialectGemini, OpGenerateContent, "gemini-2.5-pro", true}},
		{post, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", result{DialectGemini, OpStreamGenerateContent, "gemini-2.5-flash", true}},
		{post, "/v1beta/models/gemini-2.5-flash:countTokens", result{DialectGemini, OpGeminiCountTokens, "gemini-2.5-flash", true}},
		{post, "/v1/models/gemini-2.5-pro:generateContent", result{DialectGemini, OpGenerateContent, "gemini-2.5-pro", true}},
		{get, "/v1beta/models", result{DialectGemini, OpListModels, "", true}},
		{get, "/v1beta/models/gemini-2.5-pro", result{DialectGemini, OpListModels, "gemini-2.5-pro", true}},

		// Dot segments and empty names are never a model: the upstream would resolve them.
		{get, "/v1beta/models/..", result{DialectGemini, 0, "", false}},
		{get, "/v1beta/models/.", result{DialectGemini, 0, "", false}},
		{get, "/v1beta/models/", result{DialectGemini, 0, "", false}},
		{post, "/v1beta/models/..:generateContent", result{DialectGemini, 0, "", false}},
		{post, "/v1/models/.:streamGenerateContent", result{DialectGemini, 0, "", false}},
		{post, "/v1beta/models/a/b:generateContent", result{DialectGemini, 0, "", false}},
		{get, "/v1/models/..", result{DialectOpenAI, 0, "", false}},

		// Wrong methods are not routed, but the dialect is still a good guess.
		{get, "/v1/chat/completions", result{DialectOpenAI, OpChatCompletions, "", false}},
		{post, "/v1/models", result{DialectOpenAI, OpListModels, "", false}},
		{get, "/v1/messages", result{DialectAnthropic, OpMessages, "", false}},
		{get, "/v1beta/models/gemini-2.5-pro:generateContent", result{DialectGemini, OpGenerateContent, "gemini-2.5-pro", false}},
		{post, "/v1beta/models", result{DialectGemini, OpListModels, "", false}},

		// Unknown paths: best-guess dialect, no operation.
		{post, "/", result{DialectOpenAI, 0, "", false}},
		{post, "", result{DialectOpenAI, 0, "", false}},
		{post, "/v1/chat/completions/", result{DialectOpenAI, 0, "", false}},
		{post, "/v2/chat/completions", result{DialectOpenAI, 0, "", false}},
		{post, "/V1/CHAT/COMPLETIONS", result{DialectOpenAI, 0, "", false}},
		{post, "/v1/messages/batches", result{DialectAnthropic, 0, "", false}},
		{post, "/v1beta/models/gemini-pro:embedContent", result{DialectGemini, 0, "", false}},
		{post, "/v1beta/models/:generateContent", result{DialectGemini, 0, "", false}},
		{post, "/v1beta/models/a/b:generateContent", result{DialectGemini, 0, "", false}},
		{post, "/v1beta/models/gemini%2Fpro:generateContent", result{DialectGemini, 0, "", false}},
		{post, "/v1beta/models/gem ini:generateContent", result{DialectGemini, 0, "", false}},
		{post, "/v1beta/tunedModels/x:generateContent", result{DialectGemini, 0, "", false}},
		{post, "/v1beta/models/x:generateContent:extra", result{DialectGemini, 0, "", false}},
		{get, "/v1/models/", result{DialectOpenAI, 0, "", false}},
		{get, "/v1/models/a/b", result{DialectOpenAI, 0, "", false}},
	}
	for _, tt := range tests {
		var got result
		got.D, got.Op, got.Model, got.OK = Route(tt.method, tt.path)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Route(%s %q) (-want +got):\n%s", tt.method, tt.path, diff)
		}
	}
}
