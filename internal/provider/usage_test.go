package provider

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseUsage(t *testing.T) {
	tests := []struct {
		name   string
		d      Dialect
		body   string
		want   Usage
		wantOK bool
	}{
		{"openai chat", DialectOpenAI, `{"id":"x","choices":[{"message":{"content":"usage"}}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":8}}}`, Usage{19, 10, 8}, true},
		{"openai embeddings", DialectOpenAI, `{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}`, Usage{InputTokens: 8}, true},
		{"openai responses", DialectOpenAI, `{"object":"response","usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":4},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":20},"total_tokens":123}}`, Usage{36, 87, 4}, true},
		{"deepseek cache hits", DialectOpenAI, `{"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_cache_hit_tokens":60,"prompt_cache_miss_tokens":40}}`, Usage{100, 5, 60}, true},
		{"cached never above input", DialectOpenAI, `{"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":50}}}`, Usage{10, 5, 10}, true},
		{"openai null details", DialectOpenAI, `{"usage":{"prompt_tokens":1,"completion_tokens":2,"prompt_tokens_details":null}}`, Usage{1, 2, 0}, true},
		{"anthropic with cache", DialectAnthropic, `{"type":"message","usage":{"input_tokens":50,"cache_creation_input_tokens":200,"cache_read_input_tokens":1000,"output_tokens":75}}`, Usage{1250, 75, 1000}, true},
		{"anthropic plain", DialectAnthropic, `{"usage":{"input_tokens":12,"output_tokens":3}}`, Usage{12, 3, 0}, true},
		{"gemini", DialectGemini, `{"candidates":[],"usageMetadata":{"promptTokenCount":30,"candidatesTokenCount":12,"thoughtsTokenCount":100,"cachedContentTokenCount":10,"totalTokenCount":142}}`, Usage{30, 112, 10}, true},
		{"gemini tool use prompt", DialectGemini, `{"usageMetadata":{"promptTokenCount":30,"toolUsePromptTokenCount":5,"candidatesTokenCount":1}}`, Usage{35, 1, 0}, true},
		{"gemini array stream body", DialectGemini, `[{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":1}},{"candidates":[]},{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":9}}]`, Usage{5, 9, 0}, true},
		{"huge but plausible", DialectOpenAI, `{"usage":{"prompt_tokens":1000000000,"completion_tokens":0}}`, Usage{InputTokens: 1000000000}, true},
		{"integral float", DialectOpenAI, `{"usage":{"prompt_tokens":1e2,"completion_tokens":2.0}}`, Usage{100, 2, 0}, true},

		{"absent", DialectOpenAI, `{"choices":[]}`, Usage{}, false},
		{"null", DialectOpenAI, `{"usage":null}`, Usage{}, false},
		{"empty object", DialectAnthropic, `{"usage":{}}`, Usage{}, false},
		{"not an object", DialectOpenAI, `{"usage":[1,2]}`, Usage{}, false},
		{"string count", DialectOpenAI, `{"usage":{"prompt_tokens":"19","completion_tokens":10}}`, Usage{}, false},
		{"negative count", DialectAnthropic, `{"usage":{"input_tokens":-1,"output_tokens":3}}`, Usage{}, false},
		{"fractional count", DialectGemini, `{"usageMetadata":{"promptTokenCount":1.5}}`, Usage{}, false},
		{"absurd count", DialectOpenAI, `{"usage":{"prompt_tokens":1e300,"completion_tokens":1}}`, Usage{}, false},
		{"overflowing count", DialectOpenAI, `{"usage":{"prompt_tokens":99999999999999999999999,"completion_tokens":1}}`, Usage{}, false},
		{"truncated body", DialectOpenAI, `{"usage":{"prompt_tokens":19,"completion_to`, Usage{}, false},
		{"garbage", DialectAnthropic, `<html>502 Bad Gateway</html>`, Usage{}, false},
		{"empty", DialectGemini, ``, Usage{}, false},
		{"gemini wrong member", DialectGemini, `{"usage":{"promptTokenCount":5}}`, Usage{}, false},
		{"anthropic body to openai parser", DialectOpenAI, `{"usage":{"input_tokens":12,"output_tokens":3}}`, Usage{12, 3, 0}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseUsage(tt.d, []byte(tt.body))
			if ok != tt.wantOK {
				t.Fatalf("ParseUsage ok = %v, want %v (usage %+v)", ok, tt.wantOK, got)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseUsage (-want +got):\n%s", diff)
			}
		})
	}
	if got := (Usage{InputTokens: 3, OutputTokens: 4, CachedInputTokens: 2}).Total(); got != 7 {
		t.Errorf("Total = %d, want 7", got)
	}
}
