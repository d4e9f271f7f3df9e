package provider

// Usage is what a provider reports a request consumed, normalised across dialects:
// InputTokens is all input processed, cached or not; CachedInputTokens is the part
// served from the provider's prompt cache. (Anthropic reports the two apart, and
// its input-token rate limit counts input minus cache reads; OpenAI and Gemini
// report the total with the cached part inside.) OutputTokens includes reasoning
// or thinking tokens, which every provider bills as output.
type Usage struct {
	InputTokens, OutputTokens, CachedInputTokens int64
}

// Total is input plus output.
func (u Usage) Total() int64 { return u.InputTokens + u.OutputTokens }

// maxUsageTokens bounds a believable count; anything above is garbage, not usage.
const maxUsageTokens = 1 << 40

// ParseUsage reads usage from a complete (non-streamed) response body:
//
//	OpenAI chat/completions/embeddings: usage.{prompt_tokens, completion_tokens,
//	  prompt_tokens_details.cached_tokens}; DeepSeek's prompt_cache_hit_tokens;
//	OpenAI Responses: usage.{input_tokens, output_tokens,
//	  input_tokens_details.cached_tokens};
//	Anthropic: usage.{input_tokens, output_tokens, cache_creation_input_tokens,
//	  cache_read_input_tokens};
//	Gemini: usageMetadata.{promptTokenCount, candidatesTokenCount,
//	  thoughtsTokenCount, toolUsePromptTokenCount, cachedContentTokenCount}, also
//	  from the last element of a JSON array (a streamGenerateContent response
//	  read without alt=sse).
//
// ok is false when usage is absent, null, or garbage (not an object, wrong types,
// negative or absurd counts).
func ParseUsage(d Dialect, body []byte) (Usage, bool) {
	if d == DialectGemini {
		i := skipSpace(body, 0)
		if i < len(body) && body[i] == '[' {
			var u Usage
			var ok bool
			eachElement(body, func(_ int, e []byte) bool {
				if eu, eok := geminiUsage(e); eok {
					u, ok = eu, true
				}
				return true
			})
			return u, ok
		}
		return geminiUsage(body)
	}
	var raw []byte
	eachMember(body, func(k []byte, esc bool, v []byte) bool {
		if keyIs(k, esc, "usage") {
			raw = v
		}
		return true
	})
	if d == DialectAnthropic {
		return anthropicUsage(raw)
	}
	return openAIUsage(raw)
}

// usageFields reads the named integer members of a usage object into out (in
// order) and returns which were present (bit i for names[i]; null counts as
// absent). ok is false for a non-object, a named member that is not a
// non-negative integer within maxUsageTokens, or when none of names is present.
func usageFields(v []byte, names []string, out []int64) (present uint32, ok bool) {
	if kindOf(v) != kindObject {
		return 0, false
	}
	bad := false
	complete := eachMember(v, func(k []byte, esc bool, val []byte) bool {
		for i, n := range names {
			if !keyIs(k, esc, n) {
				continue
			}
			if kindOf(val) == kindNull {
				return true
			}
			x, neg, big, ok := intValue(val, maxUsageTokens)
			if kindOf(val) != kindNumber || !ok || neg || big {
				bad = true
				return false
			}
			out[i] = x
			present |= 1 << i
		}
		return true
	})
	return present, complete && !bad && present != 0
}

// nestedField reads one integer member of the object in the named member of v
// (prompt_tokens_details.cached_tokens); 0 when absent or unusable.
func nestedField(v []byte, outer, inner string) int64 {
	var n int64
	eachMember(v, func(k []byte, esc bool, o []byte) bool {
		if keyIs(k, esc, outer) {
			var out [1]int64
			if _, ok := usageFields(o, []string{inner}, out[:]); ok {
				n = out[0]
			}
		}
		return true
	})
	return n
}

var openAIUsageFields = []string{"prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "prompt_cache_hit_tokens"}

func openAIUsage(v []byte) (Usage, bool) {
	var f [5]int64
	if _, ok := usageFields(v, openAIUsageFields, f[:]); !ok {
		return Usage{}, false
	}
	u := Usage{InputTokens: f[0], OutputTokens: f[1]}
	cached := nestedField(v, "prompt_tokens_details", "cached_tokens")
	if u.InputTokens == 0 && u.OutputTokens == 0 { // the Responses API's names
		u.InputTokens, u.OutputTokens = f[2], f[3]
		cached = nestedField(v, "input_tokens_details", "cached_tokens")
	}
	u.CachedInputTokens = min(max(cached, f[4]), u.InputTokens)
	return u, true
}

var anthropicUsageFields = []string{"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}

func anthropicUsage(v []byte) (Usage, bool) {
	var f [4]int64
	if _, ok := usageFields(v, anthropicUsageFields, f[:]); !ok {
		return Usage{}, false
	}
	return Usage{InputTokens: f[0] + f[2] + f[3], OutputTokens: f[1], CachedInputTokens: f[3]}, true
}

var geminiUsageFields = []string{"promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "toolUsePromptTokenCount", "cachedContentTokenCount"}

// geminiUsage reads usageMetadata from one GenerateContentResponse object.
func geminiUsage(body []byte) (Usage, bool) {
	var raw []byte
	eachMember(body, func(k []byte, esc bool, v []byte) bool {
		if keyIs(k, esc, "usageMetadata") {
			raw = v
		}
		return true
	})
	return geminiUsageMetadata(raw)
}

func geminiUsageMetadata(v []byte) (Usage, bool) {
	var f [5]int64
	if _, ok := usageFields(v, geminiUsageFields, f[:]); !ok {
		return Usage{}, false
	}
	in := f[0] + f[3]
	return Usage{InputTokens: in, OutputTokens: f[1] + f[2], CachedInputTokens: min(f[4], in)}, true
}
