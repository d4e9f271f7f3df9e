package provider

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRequestValid(t *testing.T) {
	tests := []struct {
		name      string
		d         Dialect
		op        Operation
		pathModel string
		body      string
		want      Request
	}{
		{
			name: "openai chat, system and user",
			d:    DialectOpenAI, op: OpChatCompletions,
			body: `{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi \"there\"\n\u00e9"}],"max_tokens":256}`,
			want: Request{Model: "gpt-4o", MaxOutputTokens: 256, PromptText: "system\nBe brief.\nuser\nHi \"there\"\n\u00e9", PromptParts: 2},
		},
		{
			name: "openai chat, larger of max_tokens and max_completion_tokens, stream with usage, n",
			d:    DialectOpenAI, op: OpChatCompletions,
			body: `{"model":"o3","messages":[{"role":"user","content":"x"}],"max_tokens":100,"max_completion_tokens":5000,"stream":true,"stream_options":{"include_usage":true},"n":3}`,
			want: Request{Model: "o3", Stream: true, MaxOutputTokens: 5000, Choices: 3, StreamUsageRequested: true, PromptText: "user\nx", PromptParts: 1},
		},
		{
			name: "openai chat, include_usage without stream is not a stream",
			d:    DialectOpenAI, op: OpChatCompletions,
			body: `{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}`,
			want: Request{Model: "m", PromptText: "user\nx", PromptParts: 1},
		},
		{
			name: "openai chat, nulls mean not stated",
			d:    DialectOpenAI, op: OpChatCompletions,
			body: `{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"c1","content":"sunny"}],"max_tokens":null,"stream":null,"stream_options":null,"n":null}`,
			want: Request{Model: "m", PromptText: "assistant\nget_weather\n{\"city\":\"Paris\"}\ntool\nsunny", PromptParts: 2},
		},
		{
			name: "openai chat, content parts, images by detail, tools and schema",
			d:    DialectOpenAI, op: OpChatCompletions,
			body: `{"model":"gpt-4.1","messages":[{"role":"user","name":"ann","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"low"}},{"type":"image_url","image_url":{"url":"https://x/y.png"}},{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]}],` +
				`"tools":[{"type":"function","function":{"name":"lookup","description":"Look up a thing","parameters":{"type":"object"}}}],` +
				`"response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object"}}}}`,
			want: Request{Model: "gpt-4.1", PromptText: "user\nann\nWhat is this?\nlookup\nLook up a thing\n{\"type\":\"object\"}\n{\"name\":\"r\",\"schema\":{\"type\":\"object\"}}", PromptParts: 1,
				FixedPromptTokens: OpenAILowDetailImageTokens + 2*OpenAIMediaTokens},
		},
		{
			name: "openai chat, integral float max_tokens is accepted as providers do",
			d:    DialectOpenAI, op: OpChatCompletions,
			body: `{"model":"m","messages":[{"role":"user","content":""}],"max_tokens":1e3}`,
			want: Request{Model: "m", MaxOutputTokens: 1000, PromptText: "user", PromptParts: 1},
		},
		{
			name: "openai chat, duplicate keys: the last wins, as upstream decoders do",
			d:    DialectOpenAI, op: OpChatCompletions,
			body: `{"model":"cheap","messages":[{"role":"user","content":"x"}],"model":"expensive"}`,
			want: Request{Model: "expensive", PromptText: "user\nx", PromptParts: 1},
		},
		{
			name: "openai chat, keys match exactly: Model is not model, escaped model is",
			d:    DialectOpenAI, op: OpChatCompletions,
			body: `{"Model":"a","mod\u0065l":"b","messages":[{"role":"user","content":"x"}]}`,
			want: Request{Model: "b", PromptText: "user\nx", PromptParts: 1},
		},
		{
			name: "openai legacy completions, prompt array, token ids, best_of",
			d:    DialectOpenAI, op: OpCompletions,
			body: `{"model":"gpt-3.5-turbo-instruct","prompt":["Say hi",[1,2,3]],"max_tokens":7,"n":2,"best_of":4,"suffix":"end","stream":true}`,
			want: Request{Model: "gpt-3.5-turbo-instruct", Stream: true, MaxOutputTokens: 7, Choices: 4, PromptText: "end\nSay hi", FixedPromptTokens: 3},
		},
		{
			name: "openai legacy completions, no prompt",
			d:    DialectOpenAI, op: OpCompletions,
			body: `{"model":"m"}`,
			want: Request{Model: "m"},
		},
		{
			name: "openai embeddings, strings and token arrays",
			d:    DialectOpenAI, op: OpEmbeddings,
			body: `{"model":"text-embedding-3-small","input":["alpha","beta"],"dimensions":256}`,
			want: Request{Model: "text-embedding-3-small", PromptText: "alpha\nbeta"},
		},
		{
			name: "openai embeddings, nested token arrays",
			d:    DialectOpenAI, op: OpEmbeddings,
			body: `{"model":"e","input":[[1,2],[3,4,5]]}`,
			want: Request{Model: "e", FixedPromptTokens: 5},
		},
		{
			name: "openai responses, instructions, items, tools, stream",
			d:    DialectOpenAI, op: OpResponses,
			body: `{"model":"gpt-5","instructions":"Be kind.","input":[{"role":"user","content":[{"type":"input_text","text":"hello"},{"type":"input_image","image_url":"https://x","detail":"low"}]},{"type":"function_call","call_id":"1","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"1","output":"42"},{"type":"reasoning","summary":[{"type":"summary_text","text":"thought"}]}],` +
				`"tools":[{"type":"function","name":"f","description":"does f","parameters":{}}],"max_output_tokens":900,"stream":true}`,
			want: Request{Model: "gpt-5", Stream: true, StreamUsageRequested: true, MaxOutputTokens: 900,
				PromptText: "Be kind.\nuser\nhello\nf\n{}\n42\nthought\nf\ndoes f\n{}", PromptParts: 5, FixedPromptTokens: OpenAILowDetailImageTokens},
		},
		{
			name: "openai responses, string input, no output limit",
			d:    DialectOpenAI, op: OpResponses,
			body: `{"model":"gpt-5","input":"Tell me a joke"}`,
			want: Request{Model: "gpt-5", PromptText: "Tell me a joke", PromptParts: 1},
		},
		{
			name: "anthropic messages, system blocks, tool use and results, image, document",
			d:    DialectAnthropic, op: OpMessages,
			body: `{"model":"claude-opus-4-7","max_tokens":1024,"stream":true,"system":[{"type":"text","text":"You are terse."}],"messages":[` +
				`{"role":"user","content":[{"type":"text","text":"Look:"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},{"type":"document","source":{"type":"text","media_type":"text/plain","data":"doc text"}},{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBE"}}]},` +
				`{"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"sig"},{"type":"tool_use","id":"t1","name":"calc","input":{"x":1}}]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"2"}]}]}],` +
				`"tools":[{"name":"calc","description":"adds","input_schema":{"type":"object"}}]}`,
			want: Request{Model: "claude-opus-4-7", Stream: true, StreamUsageRequested: true, MaxOutputTokens: 1024,
				PromptText:  "You are terse.\nuser\nLook:\ndoc text\nassistant\nhmm\ncalc\n{\"x\":1}\nuser\n2\ncalc\nadds\n{\"type\":\"object\"}",
				PromptParts: 4, FixedPromptTokens: 2 * AnthropicMediaTokens},
		},
		{
			name: "anthropic messages, string system and content",
			d:    DialectAnthropic, op: OpMessages,
			body: `{"model":"claude-haiku-4","max_tokens":10,"system":"sys","messages":[{"role":"user","content":"hi"}]}`,
			want: Request{Model: "claude-haiku-4", MaxOutputTokens: 10, PromptText: "sys\nuser\nhi", PromptParts: 2},
		},
		{
			name: "anthropic count_tokens needs no max_tokens and ignores stream",
			d:    DialectAnthropic, op: OpCountTokens,
			body: `{"model":"claude-sonnet-4","messages":[{"role":"user","content":"hi"}],"stream":"whatever"}`,
			want: Request{Model: "claude-sonnet-4", PromptText: "user\nhi", PromptParts: 1},
		},
		{
			name: "gemini generateContent, camelCase",
			d:    DialectGemini, op: OpGenerateContent, pathModel: "gemini-2.5-pro",
			body: `{"systemInstruction":{"parts":[{"text":"Be a cat."}]},"contents":[{"role":"user","parts":[{"text":"Hello"},{"inlineData":{"mimeType":"image/png","data":"AAAA"}}]},{"role":"model","parts":[{"functionCall":{"name":"f","args":{"a":1}}}]}],` +
				`"tools":[{"functionDeclarations":[{"name":"f","description":"does f","parameters":{"type":"OBJECT"}}]}],"generationConfig":{"maxOutputTokens":2048,"candidateCount":2}}`,
			want: Request{Model: "gemini-2.5-pro", MaxOutputTokens: 2048, Choices: 2,
				PromptText:  "Be a cat.\nuser\nHello\nmodel\n{\"name\":\"f\",\"args\":{\"a\":1}}\nf\ndoes f\n{\"type\":\"OBJECT\"}",
				PromptParts: 3, FixedPromptTokens: GeminiMediaTokens},
		},
		{
			name: "gemini streamGenerateContent, snake_case, lone part object",
			d:    DialectGemini, op: OpStreamGenerateContent, pathModel: "gemini-2.5-flash",
			body: `{"system_instruction":{"parts":{"text":"sys"}},"contents":[{"parts":[{"text":"Hi"},{"file_data":{"file_uri":"gs://x"}}]}],"generation_config":{"max_output_tokens":64},"model":"ignored"}`,
			want: Request{Model: "gemini-2.5-flash", Stream: true, StreamUsageRequested: true, MaxOutputTokens: 64,
				PromptText: "sys\nHi", PromptParts: 2, FixedPromptTokens: GeminiMediaTokens},
		},
		{
			name: "gemini countTokens with generateContentRequest",
			d:    DialectGemini, op: OpGeminiCountTokens, pathModel: "gemini-2.5-pro",
			body: `{"generateContentRequest":{"model":"models/gemini-2.5-pro","contents":[{"parts":[{"text":"count me"}]}]}}`,
			want: Request{Model: "gemini-2.5-pro", PromptText: "count me", PromptParts: 1},
		},
		{
			name: "list models reads no body",
			d:    DialectOpenAI, op: OpListModels, pathModel: "gpt-4o",
			body: `not json at all`,
			want: Request{Model: "gpt-4o"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.d, tt.op, tt.pathModel, []byte(tt.body))
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			tt.want.Dialect, tt.want.Op = tt.d, tt.op
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRequest (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRequestInvalid(t *testing.T) {
	chat := func(extra string) string {
		return `{"model":"m","messages":[{"role":"user","content":"x"}]` + extra + `}`
	}
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	nestedOutputs := `{"type":"function_call_output","output":[{"type":"x","output":[{"type":"x","output":[{"type":"x","output":[{"type":"x","output":[{"type":"x","output":"deep"}]}]}]}]}]}`
	nestedResults := `{"type":"tool_result","content":[{"type":"tool_result","content":[{"type":"tool_result","content":[{"type":"tool_result","content":[{"type":"text","text":"x"}]}]}]}]}`
	tests := []struct {
		name  string
		d     Dialect
		op    Operation
		body  string
		param string
		msg   string // a substring of the message
	}{
		{"empty body", DialectOpenAI, OpChatCompletions, ``, "", "empty"},
		{"whitespace body", DialectOpenAI, OpChatCompletions, " \n\t", "", "empty"},
		{"bad json", DialectOpenAI, OpChatCompletions, `{"model":"m",}`, "", "not valid JSON"},
		{"truncated json", DialectAnthropic, OpMessages, `{"model":"m","messages":[`, "", "not valid JSON"},
		{"trailing garbage", DialectOpenAI, OpChatCompletions, chat("") + "x", "", "not valid JSON"},
		{"array body", DialectOpenAI, OpChatCompletions, `[1,2]`, "", "must be a JSON object, got an array"},
		{"string body", DialectGemini, OpGenerateContent, `"hi"`, "", "must be a JSON object, got a string"},
		{"nesting beyond JSON depth", DialectOpenAI, OpChatCompletions, `{"model":"m","x":` + deep + `}`, "", "not valid JSON"},
		{"missing model", DialectOpenAI, OpChatCompletions, `{"messages":[{"role":"user","content":"x"}]}`, "model", "model is required"},
		{"null model", DialectAnthropic, OpMessages, `{"model":null,"max_tokens":1,"messages":[{"role":"user","content":"x"}]}`, "model", "model is required"},
		{"numeric model", DialectOpenAI, OpEmbeddings, `{"model":4,"input":"x"}`, "model", "must be a string, got a number"},
		{"empty model", DialectOpenAI, OpResponses, `{"model":"","input":"x"}`, "model", "must not be empty"},
		{"model too long", DialectOpenAI, OpChatCompletions, `{"model":"` + strings.Repeat("m", 300) + `","messages":[{"role":"user","content":"x"}]}`, "model", "300 bytes"},
		{"model with invalid UTF-8", DialectOpenAI, OpChatCompletions, "{\"model\":\"gpt\xff\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model", "printable UTF-8"},
		{"model with a newline", DialectAnthropic, OpMessages, `{"model":"claude\nx","max_tokens":1,"messages":[{"role":"user","content":"x"}]}`, "model", "printable UTF-8"},
		{"missing messages", DialectOpenAI, OpChatCompletions, `{"model":"m"}`, "messages", "messages is required"},
		{"messages not array", DialectOpenAI, OpChatCompletions, `{"model":"m","messages":{"role":"user"}}`, "messages", "must be an array, got an object"},
		{"empty messages", DialectOpenAI, OpChatCompletions, `{"model":"m","messages":[]}`, "messages", "must not be empty"},
		{"message not object", DialectOpenAI, OpChatCompletions, `{"model":"m","messages":[{"role":"user","content":"x"},"hi"]}`, "messages[1]", "messages[1] must be an object, got a string"},
		{"message without role", DialectOpenAI, OpChatCompletions, `{"model":"m","messages":[{"content":"x"}]}`, "messages[0].role", "is required"},
		{"numeric role", DialectOpenAI, OpChatCompletions, `{"model":"m","messages":[{"role":1,"content":"x"}]}`, "messages[0].role", "must be a string, got a number"},
		{"numeric content", DialectOpenAI, OpChatCompletions, `{"model":"m","messages":[{"role":"user","content":42}]}`, "messages[0].content", "must be a string, an array of content parts, or null; got a number"},
		{"part not object", DialectOpenAI, OpChatCompletions, `{"model":"m","messages":[{"role":"user","content":["text"]}]}`, "messages[0].content[0]", "must be an object, got a string"},
		{"negative max_tokens", DialectOpenAI, OpChatCompletions, chat(`,"max_tokens":-5`), "max_tokens", "max_tokens must not be negative, got -5"},
		{"negative max_completion_tokens", DialectOpenAI, OpChatCompletions, chat(`,"max_completion_tokens":-1e2`), "max_completion_tokens", "must not be negative"},
		{"string max_tokens", DialectOpenAI, OpChatCompletions, chat(`,"max_tokens":"100"`), "max_tokens", "must be an integer, got a string"},
		{"fractional max_tokens", DialectOpenAI, OpChatCompletions, chat(`,"max_tokens":1.5`), "max_tokens", "must be an integer, got 1.5"},
		{"huge max_tokens", DialectOpenAI, OpChatCompletions, chat(`,"max_tokens":99999999999999999999999`), "max_tokens", "more than the 2147483647"},
		{"huge float max_tokens", DialectOpenAI, OpChatCompletions, chat(`,"max_tokens":1e308`), "max_tokens", "more than the 2147483647"},
		{"out of range float max_tokens", DialectOpenAI, OpChatCompletions, chat(`,"max_tokens":1e400`), "max_tokens", "must be an integer"},
		{"boolean stream as string", DialectOpenAI, OpChatCompletions, chat(`,"stream":"true"`), "stream", "stream must be a boolean, got a string"},
		{"stream_options not object", DialectOpenAI, OpChatCompletions, chat(`,"stream":true,"stream_options":true`), "stream_options", "must be an object"},
		{"include_usage not bool", DialectOpenAI, OpChatCompletions, chat(`,"stream":true,"stream_options":{"include_usage":1}`), "stream_options.include_usage", "must be a boolean"},
		{"negative n", DialectOpenAI, OpChatCompletions, chat(`,"n":-1`), "n", "n must not be negative"},
		{"huge n", DialectOpenAI, OpChatCompletions, chat(`,"n":1000000`), "n", "at most 128"},
		{"tools not array", DialectOpenAI, OpChatCompletions, chat(`,"tools":{}`), "tools", "tools must be an array"},
		{"tool not object", DialectOpenAI, OpChatCompletions, chat(`,"tools":[1]`), "tools[0]", "tools[0] must be an object"},
		{"embeddings without input", DialectOpenAI, OpEmbeddings, `{"model":"e"}`, "input", "input is required"},
		{"embeddings numeric input", DialectOpenAI, OpEmbeddings, `{"model":"e","input":5}`, "input", "must be a string, an array of strings, or an array of token IDs"},
		{"embeddings negative token", DialectOpenAI, OpEmbeddings, `{"model":"e","input":[1,-2]}`, "input[1]", "not a token ID"},
		{"embeddings triple nesting", DialectOpenAI, OpEmbeddings, `{"model":"e","input":[[[1]]]}`, "input[0][0]", "must be a string"},
		{"completions object prompt", DialectOpenAI, OpCompletions, `{"model":"e","prompt":{}}`, "prompt", "must be a string"},
		{"responses numeric input", DialectOpenAI, OpResponses, `{"model":"m","input":3}`, "input", "must be a string or an array"},
		{"responses item not object", DialectOpenAI, OpResponses, `{"model":"m","input":["x"]}`, "input[0]", "must be an object"},
		{"responses numeric instructions", DialectOpenAI, OpResponses, `{"model":"m","instructions":1}`, "instructions", "must be a string"},
		{"responses nested outputs", DialectOpenAI, OpResponses, `{"model":"m","input":[` + nestedOutputs + `]}`, "input[0].output[0].output[0].output[0].output[0].output", "nests content more than 4 levels"},
		{"anthropic missing max_tokens", DialectAnthropic, OpMessages, `{"model":"c","messages":[{"role":"user","content":"x"}]}`, "max_tokens", "max_tokens is required"},
		{"anthropic negative max_tokens", DialectAnthropic, OpMessages, `{"model":"c","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}`, "max_tokens", "must not be negative"},
		{"anthropic empty messages", DialectAnthropic, OpMessages, `{"model":"c","max_tokens":1,"messages":[]}`, "messages", "must not be empty"},
		{"anthropic missing content", DialectAnthropic, OpMessages, `{"model":"c","max_tokens":1,"messages":[{"role":"user"}]}`, "messages[0].content", "is required"},
		{"anthropic null content", DialectAnthropic, OpMessages, `{"model":"c","max_tokens":1,"messages":[{"role":"user","content":null}]}`, "messages[0].content", "got null"},
		{"anthropic block not object", DialectAnthropic, OpMessages, `{"model":"c","max_tokens":1,"messages":[{"role":"user","content":[1]}]}`, "messages[0].content[0]", "must be an object"},
		{"anthropic numeric system", DialectAnthropic, OpMessages, `{"model":"c","max_tokens":1,"system":5,"messages":[{"role":"user","content":"x"}]}`, "system", "must be a string or an array"},
		{"anthropic nested tool results", DialectAnthropic, OpMessages, `{"model":"c","max_tokens":1,"messages":[{"role":"user","content":[` + nestedResults + `]}]}`, "messages[0].content[0].content[0].content[0].content[0].content", "nests content more than 4 levels"},
		{"anthropic stream as number", DialectAnthropic, OpMessages, `{"model":"c","max_tokens":1,"stream":1,"messages":[{"role":"user","content":"x"}]}`, "stream", "must be a boolean"},
		{"gemini missing contents", DialectGemini, OpGenerateContent, `{}`, "contents", "contents is required"},
		{"gemini empty contents", DialectGemini, OpGenerateContent, `{"contents":[]}`, "contents", "must not be empty"},
		{"gemini content not object", DialectGemini, OpGenerateContent, `{"contents":["hi"]}`, "contents[0]", "must be an object"},
		{"gemini parts not array", DialectGemini, OpGenerateContent, `{"contents":[{"parts":"hi"}]}`, "contents[0].parts", "must be an array"},
		{"gemini part not object", DialectGemini, OpGenerateContent, `{"contents":[{"parts":[null]}]}`, "contents[0].parts[0]", "must be an object, got null"},
		{"gemini system not object", DialectGemini, OpGenerateContent, `{"systemInstruction":"x","contents":[{"parts":[{"text":"x"}]}]}`, "systemInstruction", "must be an object"},
		{"gemini negative maxOutputTokens", DialectGemini, OpGenerateContent, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"maxOutputTokens":-3}}`, "generationConfig.maxOutputTokens", "must not be negative"},
		{"gemini generationConfig not object", DialectGemini, OpGenerateContent, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":[]}`, "generationConfig", "must be an object"},
		{"gemini tools not array", DialectGemini, OpGenerateContent, `{"contents":[{"parts":[{"text":"x"}]}],"tools":{}}`, "tools", "must be an array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.d, tt.op, "p", []byte(tt.body))
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("ParseRequest error = %v (%T), want a *RequestError", err, err)
			}
			if re.Status != 400 || re.Param != tt.param || !strings.Contains(re.Message, tt.msg) {
				t.Errorf("RequestError = {%d %q %q}, want {400 %q ...%q...}", re.Status, re.Param, re.Message, tt.param, tt.msg)
			}
			if re.Error() != re.Message {
				t.Errorf("Error() = %q, want the message", re.Error())
			}
			if diff := cmp.Diff(Request{Dialect: tt.d, Op: tt.op}, got); diff != "" {
				t.Errorf("a failed parse returns a bare Request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRequestWrongOperation(t *testing.T) {
	for _, tt := range []struct {
		d  Dialect
		op Operation
	}{
		{DialectAnthropic, OpChatCompletions},
		{DialectOpenAI, OpMessages},
		{DialectGemini, OpResponses},
		{0, OpChatCompletions},
		{DialectOpenAI, 0},
	} {
		_, err := ParseRequest(tt.d, tt.op, "", []byte(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
		var re *RequestError
		if err == nil || errors.As(err, &re) {
			t.Errorf("ParseRequest(%v, %v) error = %v, want a plain error (the caller's bug)", tt.d, tt.op, err)
		}
	}
}
