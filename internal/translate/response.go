package translate

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aiquota/aiquota/internal/provider"
)

// Response translates a complete (non-streamed) successful answer from the
// target's dialect into the app's. now stamps the fields some dialects require and
// others lack (OpenAI's created). An error means the answer could not be read or
// cannot be said in the app's dialect (a tool call whose arguments are not JSON,
// for an app that needs an object): the proxy should treat it as a failed attempt
// (a 502 in the app's dialect, or the next chain entry), not pass the body on.
//
// The usage in the translated answer is provider.ParseUsage of the upstream body,
// the same figures the limiter settles on.
func (t *Translation) Response(body []byte, now time.Time) ([]byte, error) {
	if !json.Valid(body) {
		return nil, fmt.Errorf("translate response: the %s answer is not valid JSON", t.target)
	}
	var (
		r   response
		err error
	)
	switch t.target {
	case provider.DialectOpenAI:
		err = decodeChatResponse(body, &r)
	case provider.DialectAnthropic:
		err = decodeAnthropicResponse(body, &r)
	case provider.DialectGemini:
		err = decodeGeminiResponse(body, &r, now)
	}
	if err != nil {
		return nil, fmt.Errorf("translate response: %w", err)
	}
	usage, hasUsage := provider.ParseUsage(t.target, body)
	if r.id.empty() {
		r.id = fallbackID(now)
	}
	out := make([]byte, 0, len(body)+256)
	switch t.appOp {
	case provider.OpChatCompletions:
		out = encodeChatResponse(out, &r, usage, hasUsage, now)
	case provider.OpResponses:
		out = encodeResponsesResponse(out, &r, usage, now)
	case provider.OpMessages:
		out, err = encodeAnthropicResponse(out, &r, usage)
	default:
		out, err = encodeGeminiResponse(out, &r, usage, hasUsage)
	}
	if err != nil {
		return nil, fmt.Errorf("translate response: %w", err)
	}
	return out, nil
}

// fallbackID names an answer whose provider gave it no id.
func fallbackID(now time.Time) jstr {
	return jstr(strconv.AppendInt([]byte(`"aiquota-`), now.UnixNano(), 36)).closeQuote()
}

func (s jstr) closeQuote() jstr { return append(s, '"') }

var errNotObject = errors.New("the answer is not a JSON object")

// ---- reading answers ----

func decodeChatResponse(body []byte, r *response) error {
	var choices []byte
	if !provider.EachMember(body, func(k []byte, esc bool, v []byte) bool {
		switch {
		case provider.KeyIs(k, esc, "id") && kindOf(v) == kindString:
			r.id = v
		case provider.KeyIs(k, esc, "model") && kindOf(v) == kindString:
			r.model = v
		case provider.KeyIs(k, esc, "choices"):
			choices = v
		}
		return true
	}) {
		return errNotObject
	}
	return eachElement(choices, func(i int, c []byte) error {
		ch := choice{index: i}
		var msg []byte
		_ = eachMember(c, func(k, v []byte) error {
			switch string(k) {
			case "index":
				if n, ok := provider.JSONInt(v, 127); ok {
					ch.index = int(n)
				}
			case "message":
				msg = v
			case "finish_reason":
				ch.finish = openAIFinish(v)
			}
			return nil
		})
		err := eachMember(msg, func(k, v []byte) error {
			switch string(k) {
			case "content", "refusal":
				if kindOf(v) == kindString {
					ch.parts = textPart(ch.parts, jstr(v))
				}
			case "tool_calls":
				return eachElement(v, func(_ int, tc []byte) error {
					p, err := chatToolCall(tc)
					if err != nil {
						return fmt.Errorf("a tool call in the answer: %w", err)
					}
					ch.parts = append(ch.parts, p)
					return nil
				})
			}
			return nil
		})
		r.choices = append(r.choices, ch)
		return err
	})
}

func openAIFinish(v []byte) finishReason {
	switch s := jstr(v); {
	case s.is("stop"):
		return finishStop
	case s.is("length"):
		return finishLength
	case s.is("tool_calls"), s.is("function_call"):
		return finishToolCalls
	case s.is("content_filter"):
		return finishContentFilter
	case absent(v):
		return finishUnknown
	}
	return finishStop
}

func decodeAnthropicResponse(body []byte, r *response) error {
	ch := choice{}
	var content []byte
	if !provider.EachMember(body, func(k []byte, esc bool, v []byte) bool {
		switch {
		case provider.KeyIs(k, esc, "id") && kindOf(v) == kindString:
			r.id = v
		case provider.KeyIs(k, esc, "model") && kindOf(v) == kindString:
			r.model = v
		case provider.KeyIs(k, esc, "content"):
			content = v
		case provider.KeyIs(k, esc, "stop_reason"):
			ch.finish = anthropicFinish(v)
		case provider.KeyIs(k, esc, "stop_sequence") && kindOf(v) == kindString:
			ch.stopSequence = v
		}
		return true
	}) {
		return errNotObject
	}
	err := eachElement(content, func(_ int, b []byte) error {
		fs := pick(b, "type", "text", "id", "name", "input")
		typ, text, id, name, input := fs[0], fs[1], fs[2], fs[3], fs[4]
		switch t := jstr(typ); {
		case t.is("text") && kindOf(text) == kindString:
			ch.parts = textPart(ch.parts, jstr(text))
		case t.is("tool_use"):
			if kindOf(id) != kindString || kindOf(name) != kindString || kindOf(input) != kindObject {
				return errors.New("a tool_use block in the answer lacks its id, name or input")
			}
			ch.parts = append(ch.parts, part{kind: partToolCall, id: id, name: name, argsValue: input})
		}
		// Thinking blocks stay with Anthropic: other dialects have no place for
		// their signatures.
		return nil
	})
	r.choices = append(r.choices, ch)
	return err
}

func anthropicFinish(v []byte) finishReason {
	switch s := jstr(v); {
	case s.is("end_turn"), s.is("pause_turn"):
		return finishStop
	case s.is("stop_sequence"):
		return finishStopSequence
	case s.is("max_tokens"), s.is("model_context_window_exceeded"):
		return finishLength
	case s.is("tool_use"):
		return finishToolCalls
	case s.is("refusal"):
		return finishContentFilter
	case absent(v):
		return finishUnknown
	}
	return finishStop
}

func decodeGeminiResponse(body []byte, r *response, now time.Time) error {
	var candidates, feedback []byte
	if !provider.EachMember(body, func(k []byte, esc bool, v []byte) bool {
		switch {
		case provider.KeyIs(k, esc, "responseId") && kindOf(v) == kindString:
			r.id = v
		case provider.KeyIs(k, esc, "modelVersion") && kindOf(v) == kindString:
			r.model = v
		case provider.KeyIs(k, esc, "candidates"):
			candidates = v
		case provider.KeyIs(k, esc, "promptFeedback"):
			feedback = v
		}
		return true
	}) {
		return errNotObject
	}
	calls := 0
	err := eachElement(candidates, func(i int, c []byte) error {
		ch, err := geminiCandidate(i, c, r.id, now, &calls)
		r.choices = append(r.choices, ch)
		return err
	})
	if len(r.choices) == 0 {
		// No candidates: the prompt itself was blocked.
		blocked := false
		_ = eachMember(feedback, func(k, v []byte) error {
			blocked = blocked || string(k) == "blockReason" && !absent(v)
			return nil
		})
		if blocked {
			r.choices = append(r.choices, choice{finish: finishContentFilter})
		}
	}
	return err
}

// geminiCandidate reads one candidate. Function calls get ids made from the
// response's id (Gemini gives none, or ids only it knows), so ids stay unique
// across the turns of a conversation.
func geminiCandidate(i int, c []byte, respID jstr, now time.Time, calls *int) (choice, error) {
	ch := choice{index: i}
	var content, finish []byte
	_ = eachMember(c, func(k, v []byte) error {
		switch string(k) {
		case "index":
			if n, ok := provider.JSONInt(v, 127); ok {
				ch.index = int(n)
			}
		case "content":
			content = v
		case "finishReason":
			finish = v
		}
		return nil
	})
	partsRaw := pick(content, "parts")[0]
	hasCall := false
	err := eachElement(partsRaw, func(_ int, p []byte) error {
		fs := pick(p, "text", "thought", "functionCall")
		text, thought, call := fs[0], fs[1], fs[2]
		switch {
		case kindOf(text) == kindString && !isTrue(thought):
			ch.parts = textPart(ch.parts, jstr(text))
		case kindOf(call) == kindObject:
			fs := pick(call, "name", "args", "id")
			name, args, id := fs[0], fs[1], fs[2]
			if kindOf(name) != kindString {
				return errors.New("a functionCall in the answer has no name")
			}
			if kindOf(args) != kindObject {
				args = []byte("{}")
			}
			if kindOf(id) != kindString || jstr(id).empty() {
				id = geminiCallID(respID, now, *calls)
			}
			*calls++
			hasCall = true
			ch.parts = append(ch.parts, part{kind: partToolCall, id: id, name: name, argsValue: args})
		}
		return nil
	})
	ch.finish = geminiFinish(finish, hasCall)
	return ch, err
}

func geminiCallID(respID jstr, now time.Time, n int) jstr {
	id := []byte(`"call_`)
	if !respID.empty() {
		for _, c := range respID.String() {
			if c < 0x80 && idByte(byte(c)) {
				id = append(id, byte(c))
			}
		}
	} else {
		id = strconv.AppendInt(id, now.UnixNano(), 36)
	}
	id = append(id, '_')
	id = strconv.AppendInt(id, int64(n), 10)
	return append(id, '"')
}

func geminiFinish(v []byte, hasCall bool) finishReason {
	switch s := jstr(v); {
	case absent(v):
		return finishUnknown
	case s.is("STOP"):
		if hasCall {
			return finishToolCalls
		}
		return finishStop
	case s.is("MAX_TOKENS"):
		return finishLength
	case s.is("SAFETY"), s.is("RECITATION"), s.is("BLOCKLIST"), s.is("PROHIBITED_CONTENT"), s.is("SPII"), s.is("IMAGE_SAFETY"), s.is("LANGUAGE"):
		return finishContentFilter
	case s.is("MALFORMED_FUNCTION_CALL"), s.is("UNEXPECTED_TOOL_CALL"), s.is("TOO_MANY_TOOL_CALLS"):
		return finishError
	}
	return finishStop
}

// ---- writing answers ----

func chatFinish(f finishReason) string {
	switch f {
	case finishLength:
		return "length"
	case finishToolCalls:
		return "tool_calls"
	case finishContentFilter:
		return "content_filter"
	}
	return "stop"
}

func anthropicStop(f finishReason) string {
	switch f {
	case finishStopSequence:
		return "stop_sequence"
	case finishLength:
		return "max_tokens"
	case finishToolCalls:
		return "tool_use"
	case finishContentFilter:
		return "refusal"
	}
	return "end_turn"
}

func geminiFinishName(f finishReason) string {
	switch f {
	case finishLength:
		return "MAX_TOKENS"
	case finishContentFilter:
		return "SAFETY"
	case finishError:
		return "OTHER"
	}
	return "STOP"
}

func appendChatUsage(dst []byte, u provider.Usage) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = appendInt(dst, u.InputTokens)
	dst = append(dst, `,"completion_tokens":`...)
	dst = appendInt(dst, u.OutputTokens)
	dst = append(dst, `,"total_tokens":`...)
	dst = appendInt(dst, u.Total())
	dst = append(dst, `,"prompt_tokens_details":{"cached_tokens":`...)
	dst = appendInt(dst, u.CachedInputTokens)
	return append(dst, "}}"...)
}

func appendResponsesUsage(dst []byte, u provider.Usage) []byte {
	dst = append(dst, `{"input_tokens":`...)
	dst = appendInt(dst, u.InputTokens)
	dst = append(dst, `,"input_tokens_details":{"cached_tokens":`...)
	dst = appendInt(dst, u.CachedInputTokens)
	dst = append(dst, `},"output_tokens":`...)
	dst = appendInt(dst, u.OutputTokens)
	dst = append(dst, `,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":`...)
	dst = appendInt(dst, u.Total())
	return append(dst, '}')
}

// appendAnthropicUsage writes usage as Anthropic counts it: input_tokens is the
// input not read from the cache.
func appendAnthropicUsage(dst []byte, u provider.Usage) []byte {
	dst = append(dst, `{"input_tokens":`...)
	dst = appendInt(dst, max(0, u.InputTokens-u.CachedInputTokens))
	dst = append(dst, `,"cache_creation_input_tokens":0,"cache_read_input_tokens":`...)
	dst = appendInt(dst, u.CachedInputTokens)
	dst = append(dst, `,"output_tokens":`...)
	dst = appendInt(dst, u.OutputTokens)
	return append(dst, '}')
}

func appendGeminiUsage(dst []byte, u provider.Usage) []byte {
	dst = append(dst, `{"promptTokenCount":`...)
	dst = appendInt(dst, u.InputTokens)
	dst = append(dst, `,"candidatesTokenCount":`...)
	dst = appendInt(dst, u.OutputTokens)
	dst = append(dst, `,"totalTokenCount":`...)
	dst = appendInt(dst, u.Total())
	if u.CachedInputTokens > 0 {
		dst = append(dst, `,"cachedContentTokenCount":`...)
		dst = appendInt(dst, u.CachedInputTokens)
	}
	return append(dst, '}')
}

func appendModel(dst []byte, model jstr) []byte {
	if model.empty() {
		return append(dst, `""`...)
	}
	return append(dst, model...)
}

func encodeChatResponse(dst []byte, r *response, u provider.Usage, hasUsage bool, now time.Time) []byte {
	dst = append(dst, `{"id":`...)
	dst = append(dst, r.id...)
	dst = append(dst, `,"object":"chat.completion","created":`...)
	dst = appendInt(dst, now.Unix())
	dst = append(dst, `,"model":`...)
	dst = appendModel(dst, r.model)
	dst = append(dst, `,"choices":[`...)
	for i, c := range r.choices {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"index":`...)
		dst = appendInt(dst, int64(c.index))
		dst = append(dst, `,"message":{"role":"assistant","content":`...)
		ts, _ := texts(c.parts)
		if len(ts) == 0 {
			dst = append(dst, "null"...)
		} else {
			dst = appendJoined(dst, ts, "")
		}
		dst = append(dst, `,"refusal":null`...)
		calls := 0
		for _, p := range c.parts {
			if p.kind != partToolCall {
				continue
			}
			if calls == 0 {
				dst = append(dst, `,"tool_calls":[`...)
			} else {
				dst = append(dst, ',')
			}
			calls++
			dst = append(dst, `{"id":`...)
			dst = append(dst, p.id...)
			dst = append(dst, `,"type":"function","function":{"name":`...)
			dst = append(dst, p.name...)
			dst = append(dst, `,"arguments":`...)
			dst = appendArgsText(dst, p)
			dst = append(dst, "}}"...)
		}
		if calls > 0 {
			dst = append(dst, ']')
		}
		dst = append(dst, `},"logprobs":null,"finish_reason":"`...)
		dst = append(dst, chatFinish(c.finish)...)
		dst = append(dst, `"}`...)
	}
	dst = append(dst, ']')
	if hasUsage {
		dst = append(dst, `,"usage":`...)
		dst = appendChatUsage(dst, u)
	}
	return append(dst, '}')
}

// responsesID makes an id with the Responses API's prefix from another dialect's.
func responsesID(dst []byte, prefix string, id jstr) []byte {
	dst = append(dst, '"')
	dst = append(dst, prefix...)
	return append(append(dst, id.interior()...), '"')
}

func encodeResponsesResponse(dst []byte, r *response, u provider.Usage, now time.Time) []byte {
	var c choice
	if len(r.choices) > 0 {
		c = r.choices[0]
	}
	dst = append(dst, `{"id":`...)
	dst = responsesID(dst, "resp_", r.id)
	dst = append(dst, `,"object":"response","created_at":`...)
	dst = appendInt(dst, now.Unix())
	status, incomplete := responsesStatus(c.finish)
	dst = append(dst, `,"status":"`...)
	dst = append(dst, status...)
	dst = append(dst, `","error":null,"incomplete_details":`...)
	dst = append(dst, incomplete...)
	dst = append(dst, `,"model":`...)
	dst = appendModel(dst, r.model)
	dst = append(dst, `,"output":[`...)
	n := 0
	ts, _ := texts(c.parts)
	if len(ts) > 0 {
		n++
		dst = append(dst, `{"type":"message","id":`...)
		dst = responsesID(dst, "msg_", r.id)
		dst = append(dst, `,"status":"completed","role":"assistant","content":[{"type":"output_text","text":`...)
		dst = appendJoined(dst, ts, "")
		dst = append(dst, `,"annotations":[],"logprobs":[]}]}`...)
	}
	for _, p := range c.parts {
		if p.kind != partToolCall {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = appendFunctionCallItem(dst, p.id, p.name, func(dst []byte) []byte { return appendArgsText(dst, p) })
	}
	dst = append(dst, `],"parallel_tool_calls":true,"tool_choice":"auto","tools":[],"usage":`...)
	dst = appendResponsesUsage(dst, u)
	return append(dst, '}')
}

func appendFunctionCallItem(dst []byte, id, name jstr, args func([]byte) []byte) []byte {
	dst = append(dst, `{"type":"function_call","id":`...)
	dst = responsesID(dst, "fc_", id)
	dst = append(dst, `,"call_id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"name":`...)
	dst = append(dst, name...)
	dst = append(dst, `,"arguments":`...)
	dst = args(dst)
	return append(dst, `,"status":"completed"}`...)
}

// responsesStatus is a Responses status and incomplete_details for a finish.
func responsesStatus(f finishReason) (status, incomplete string) {
	switch f {
	case finishLength:
		return "incomplete", `{"reason":"max_output_tokens"}`
	case finishContentFilter:
		return "incomplete", `{"reason":"content_filter"}`
	}
	return "completed", "null"
}

func encodeAnthropicResponse(dst []byte, r *response, u provider.Usage) ([]byte, error) {
	var c choice
	if len(r.choices) > 0 {
		c = r.choices[0]
	}
	dst = append(dst, `{"id":`...)
	dst = append(dst, r.id...)
	dst = append(dst, `,"type":"message","role":"assistant","model":`...)
	dst = appendModel(dst, r.model)
	dst = append(dst, `,"content":[`...)
	for i, p := range c.parts {
		if i > 0 {
			dst = append(dst, ',')
		}
		if p.kind == partText {
			dst = append(append(append(dst, `{"type":"text","text":`...), p.text...), '}')
			continue
		}
		args, ok := argsObject(p)
		if !ok {
			return nil, fmt.Errorf("the arguments of tool call %s are not a JSON object", p.id.String())
		}
		dst = append(dst, `{"type":"tool_use","id":`...)
		dst = appendToolID(dst, p.id)
		dst = append(append(dst, `,"name":`...), p.name...)
		dst = append(append(append(dst, `,"input":`...), args...), '}')
	}
	dst = append(dst, `],"stop_reason":"`...)
	dst = append(dst, anthropicStop(c.finish)...)
	dst = append(dst, `","stop_sequence":`...)
	if c.finish == finishStopSequence && !c.stopSequence.empty() {
		dst = append(dst, c.stopSequence...)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"usage":`...)
	dst = appendAnthropicUsage(dst, u)
	return append(dst, '}'), nil
}

func encodeGeminiResponse(dst []byte, r *response, u provider.Usage, hasUsage bool) ([]byte, error) {
	dst = append(dst, `{"candidates":[`...)
	for i, c := range r.choices {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"content":{"role":"model","parts":[`...)
		for j, p := range c.parts {
			if j > 0 {
				dst = append(dst, ',')
			}
			if p.kind == partText {
				dst = append(append(append(dst, `{"text":`...), p.text...), '}')
				continue
			}
			args, ok := argsObject(p)
			if !ok {
				return nil, fmt.Errorf("the arguments of tool call %s are not a JSON object", p.id.String())
			}
			dst = append(append(dst, `{"functionCall":{"name":`...), p.name...)
			dst = append(append(append(dst, `,"args":`...), args...), "}}"...)
		}
		dst = append(dst, `]},"finishReason":"`...)
		dst = append(dst, geminiFinishName(c.finish)...)
		dst = append(dst, `","index":`...)
		dst = appendInt(dst, int64(c.index))
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	if hasUsage {
		dst = append(dst, `,"usageMetadata":`...)
		dst = appendGeminiUsage(dst, u)
	}
	dst = append(dst, `,"modelVersion":`...)
	dst = appendModel(dst, r.model)
	dst = append(dst, `,"responseId":`...)
	dst = append(dst, r.id...)
	return append(dst, '}'), nil
}
