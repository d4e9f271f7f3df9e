package translate

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// encoder writes a request for the target from the dialect-neutral model.
type encoder struct {
	r          *request
	target     Target
	defaultMax int64
	out        []byte
}

// dropParam records a stated parameter the target has no place for.
func (e *encoder) dropParam(p param) {
	if p.set() {
		e.r.dropped = append(e.r.dropped, p.name)
	}
}

func (e *encoder) key(first *bool, name string) { e.out = appendKey(e.out, first, name) }

func (e *encoder) raw(first *bool, name string, v []byte) {
	e.key(first, name)
	e.out = append(e.out, v...)
}

// appendJoined appends the texts as one string token, separated by sep (JSON
// string content, already escaped). Interiors are joined without decoding.
func appendJoined(dst []byte, texts []jstr, sep string) []byte {
	if len(texts) == 1 {
		return append(dst, texts[0]...)
	}
	dst = append(dst, '"')
	for i, t := range texts {
		if i > 0 {
			dst = append(dst, sep...)
		}
		dst = append(dst, t.interior()...)
	}
	return append(dst, '"')
}

// texts returns the text tokens of parts, and whether parts holds anything else.
func texts(parts []part) (ts []jstr, other bool) {
	for _, p := range parts {
		if p.kind == partText {
			ts = append(ts, p.text)
		} else {
			other = true
		}
	}
	return ts, other
}

// argsObject returns a tool call's arguments as a JSON object: Anthropic and Gemini
// take objects, OpenAI sends a string of JSON text, "" meaning no arguments. ok is
// false when the text is not a JSON object (models do produce broken arguments).
func argsObject(p part) (obj []byte, ok bool) {
	if p.argsValue != nil {
		return p.argsValue, true
	}
	s := p.argsText.String()
	if strings.TrimSpace(s) == "" {
		return []byte("{}"), true
	}
	b := bytes.TrimSpace([]byte(s))
	return b, json.Valid(b) && kindOf(b) == kindObject
}

func argsError(p part) error {
	return unsupported("tool call arguments", "the arguments of call %s are not a JSON object, which the target requires", p.id.String())
}

// appendArgsText appends a tool call's arguments as a string token of JSON text.
func appendArgsText(dst []byte, p part) []byte {
	if p.argsText != nil {
		return append(dst, p.argsText...)
	}
	var buf [512]byte
	return appendRawString(dst, compactInto(buf[:0], p.argsValue))
}

// resultText reduces a tool result to text for targets whose results are text:
// text parts are joined; a Gemini response object is unwrapped when it holds only
// an "output" string, or an "error" string where the target can flag a failed
// call (errorFlag; Gemini's documented convention), else sent as its JSON.
// isError reports the unwrapped "error" form.
func resultText(p part, errorFlag bool) (tok jstr, isError bool, err error) {
	if p.object == nil {
		ts, other := texts(p.content)
		if other {
			return nil, false, unsupported("tool result content", "the target's tool results hold only text")
		}
		if len(ts) == 0 {
			return jstr(`""`), p.isError, nil
		}
		return appendJoined(nil, ts, `\n`), p.isError, nil
	}
	var only []byte
	var onlyKey string
	n := 0
	_ = eachMember(p.object, func(k, v []byte) error {
		n++
		only, onlyKey = v, string(k)
		return nil
	})
	if n == 1 && kindOf(only) == kindString && (onlyKey == "output" || onlyKey == "error" && errorFlag) {
		return jstr(only), onlyKey == "error", nil
	}
	var buf [256]byte
	return appendRawString(nil, compactInto(buf[:0], p.object)), false, nil
}

// resultObject makes a tool result a JSON object, for Gemini's
// functionResponse.response: an object stays; text that is a JSON object is sent as
// that object; other text is wrapped as {"output": text}, or {"error": text} for a
// failed call.
func resultObject(p part) ([]byte, error) {
	if p.object != nil {
		return p.object, nil
	}
	ts, other := texts(p.content)
	if other {
		return nil, unsupported("tool result content", "Gemini's function responses hold only JSON, not images")
	}
	tok := appendJoined(nil, ts, `\n`)
	if len(ts) == 0 {
		tok = []byte(`""`)
	}
	if !p.isError {
		s := jstr(tok).String()
		if t := strings.TrimSpace(s); strings.HasPrefix(t, "{") && json.Valid([]byte(t)) {
			return []byte(t), nil
		}
	}
	k := `{"output":`
	if p.isError {
		k = `{"error":`
	}
	return append(append([]byte(k), tok...), '}'), nil
}

// stringContentOnly is a provider of the OpenAI dialect that takes only string content
// (DeepSeek's chat API has no content parts and no images).
func (e *encoder) stringContentOnly() bool {
	return e.target.ProviderType == limiterconfig.ProviderDeepSeek
}

// ---- OpenAI Chat Completions ----

// maxOpenAIStops is the number of stop sequences OpenAI accepts.
const maxOpenAIStops = 4

func (e *encoder) chat() error {
	r := e.r
	e.out = make([]byte, 0, 512+estimateSize(r))
	first := true
	e.out = append(e.out, '{')
	e.key(&first, "model")
	e.out = appendString(e.out, e.target.Model)
	e.key(&first, "messages")
	if err := e.chatMessages(); err != nil {
		return err
	}
	if r.maxTokens > 0 {
		name := "max_completion_tokens"
		if e.target.ProviderType != limiterconfig.ProviderOpenAI {
			name = "max_tokens" // DeepSeek and most compatible servers know only this
		}
		e.key(&first, name)
		e.out = appendInt(e.out, r.maxTokens)
	}
	for _, p := range []struct {
		name string
		v    param
	}{{"temperature", r.temperature}, {"top_p", r.topP}, {"presence_penalty", r.presencePenalty}, {"frequency_penalty", r.frequencyPenalty}, {"seed", r.seed}} {
		if p.v.set() {
			e.raw(&first, p.name, p.v.v)
		}
	}
	e.dropParam(r.topK)
	if len(r.stopSeqs) > maxOpenAIStops {
		return unsupported(r.stop.name, "OpenAI takes at most %d stop sequences, the request has %d", maxOpenAIStops, len(r.stopSeqs))
	}
	if len(r.stopSeqs) > 0 {
		e.key(&first, "stop")
		e.out = appendTokens(e.out, r.stopSeqs)
	}
	if r.n > 1 {
		e.key(&first, "n")
		e.out = appendInt(e.out, r.n)
	}
	if r.stream {
		e.raw(&first, "stream", []byte("true"))
		// Usage comes in the stream only when asked for; the limiter settles on
		// it and the app's dialect reports it.
		e.raw(&first, "stream_options", []byte(`{"include_usage":true}`))
	}
	if len(r.tools) > 0 {
		e.key(&first, "tools")
		e.out = append(e.out, '[')
		for i, t := range r.tools {
			if i > 0 {
				e.out = append(e.out, ',')
			}
			e.out = append(e.out, `{"type":"function","function":{"name":`...)
			e.out = append(e.out, t.name...)
			if !t.description.empty() {
				e.out = append(append(e.out, `,"description":`...), t.description...)
			}
			if t.schema != nil {
				e.out = append(append(e.out, `,"parameters":`...), t.schema...)
			}
			e.out = append(e.out, "}}"...)
		}
		e.out = append(e.out, ']')
		switch r.toolChoice {
		case choiceAuto:
			e.raw(&first, "tool_choice", []byte(`"auto"`))
		case choiceNone:
			e.raw(&first, "tool_choice", []byte(`"none"`))
		case choiceRequired:
			e.raw(&first, "tool_choice", []byte(`"required"`))
		case choiceNamed:
			e.key(&first, "tool_choice")
			e.out = append(e.out, `{"type":"function","function":{"name":`...)
			e.out = append(append(e.out, r.toolChoiceName...), "}}"...)
		}
		if r.oneToolCall.set() {
			e.raw(&first, "parallel_tool_calls", []byte("false"))
		}
	}
	switch r.format.kind {
	case formatJSONObject:
		e.raw(&first, "response_format", []byte(`{"type":"json_object"}`))
	case formatJSONSchema:
		if e.stringContentOnly() {
			return unsupported("response schema", "DeepSeek returns JSON objects but does not follow schemas")
		}
		e.key(&first, "response_format")
		e.out = append(e.out, `{"type":"json_schema","json_schema":{"name":`...)
		if r.format.name.empty() {
			e.out = append(e.out, `"response"`...) // OpenAI requires a name
		} else {
			e.out = append(e.out, r.format.name...)
		}
		if !r.format.description.empty() {
			e.out = append(append(e.out, `,"description":`...), r.format.description...)
		}
		if r.format.schema != nil {
			e.out = append(append(e.out, `,"schema":`...), r.format.schema...)
		}
		if r.format.strict {
			e.out = append(e.out, `,"strict":true`...)
		}
		e.out = append(e.out, "}}"...)
	}
	if r.user.set() {
		e.raw(&first, "user", r.user.v)
	}
	e.out = append(e.out, '}')
	return nil
}

func appendTokens(dst []byte, toks []jstr) []byte {
	dst = append(dst, '[')
	for i, t := range toks {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, t...)
	}
	return append(dst, ']')
}

func (e *encoder) chatMessages() error {
	r := e.r
	e.out = append(e.out, '[')
	n := 0
	open := func(ro string) {
		if n > 0 {
			e.out = append(e.out, ',')
		}
		n++
		e.out = append(e.out, `{"role":"`...)
		e.out = append(e.out, ro...)
		e.out = append(e.out, '"')
	}
	if len(r.system) > 0 {
		open("system")
		e.out = append(e.out, `,"content":`...)
		e.out = appendJoined(e.out, r.system, `\n\n`)
		e.out = append(e.out, '}')
	}
	for _, m := range r.messages {
		if m.role == roleAssistant {
			open("assistant")
			ts, _ := texts(m.parts)
			e.out = append(e.out, `,"content":`...)
			if len(ts) == 0 {
				e.out = append(e.out, "null"...)
			} else {
				e.out = appendJoined(e.out, ts, "")
			}
			calls := 0
			for _, p := range m.parts {
				if p.kind != partToolCall {
					continue
				}
				if calls == 0 {
					e.out = append(e.out, `,"tool_calls":[`...)
				} else {
					e.out = append(e.out, ',')
				}
				calls++
				e.out = append(e.out, `{"id":`...)
				e.out = append(e.out, p.id...)
				e.out = append(e.out, `,"type":"function","function":{"name":`...)
				e.out = append(e.out, p.name...)
				e.out = append(e.out, `,"arguments":`...)
				e.out = appendArgsText(e.out, p)
				e.out = append(e.out, "}}"...)
			}
			if calls > 0 {
				e.out = append(e.out, ']')
			}
			e.out = append(e.out, '}')
			continue
		}
		// A user turn: tool results first, each its own tool message, as OpenAI
		// wants them right after the assistant's calls; then the rest.
		var rest []part
		for _, p := range m.parts {
			if p.kind != partToolResult {
				rest = append(rest, p)
				continue
			}
			tok, isError, err := resultText(p, false)
			if err != nil {
				return err
			}
			if isError && p.object == nil {
				e.r.dropped = append(e.r.dropped, "messages[].content[].is_error")
			}
			open("tool")
			e.out = append(e.out, `,"tool_call_id":`...)
			e.out = append(e.out, p.id...)
			e.out = append(e.out, `,"content":`...)
			e.out = append(e.out, tok...)
			e.out = append(e.out, '}')
		}
		if len(rest) == 0 {
			continue
		}
		open("user")
		e.out = append(e.out, `,"content":`...)
		if err := e.chatUserContent(rest); err != nil {
			return err
		}
		e.out = append(e.out, '}')
	}
	e.out = append(e.out, ']')
	return nil
}

func (e *encoder) chatUserContent(parts []part) error {
	ts, other := texts(parts)
	if !other && (len(ts) == 1 || e.stringContentOnly()) {
		e.out = appendJoined(e.out, ts, `\n`)
		return nil
	}
	if e.stringContentOnly() {
		return unsupported("image", "DeepSeek's chat API takes no images")
	}
	e.out = append(e.out, '[')
	for i, p := range parts {
		if i > 0 {
			e.out = append(e.out, ',')
		}
		if p.kind == partText {
			e.out = append(e.out, `{"type":"text","text":`...)
			e.out = append(append(e.out, p.text...), '}')
			continue
		}
		e.out = append(e.out, `{"type":"image_url","image_url":{"url":`...)
		if p.url != nil {
			e.out = append(e.out, p.url...)
		} else {
			e.out = append(e.out, `"data:`...)
			e.out = append(e.out, p.mediaType...)
			e.out = append(e.out, ";base64,"...)
			e.out = append(e.out, p.data...)
			e.out = append(e.out, '"')
		}
		if p.detail.set() {
			e.out = append(append(e.out, `,"detail":`...), p.detail.v...)
		}
		e.out = append(e.out, "}}"...)
	}
	e.out = append(e.out, ']')
	return nil
}

// estimateSize is about the size of the request's content, to size the output
// buffer once.
func estimateSize(r *request) int {
	n := 0
	for _, s := range r.system {
		n += len(s)
	}
	for _, m := range r.messages {
		for _, p := range m.parts {
			n += len(p.text) + len(p.url) + len(p.data) + len(p.argsText) + 2*len(p.argsValue) + 64
			for _, c := range p.content {
				n += len(c.text) + len(c.data) + 16
			}
			n += 2 * len(p.object)
		}
	}
	for _, t := range r.tools {
		n += len(t.name) + len(t.description) + len(t.schema) + 64
	}
	return n + len(r.format.schema)
}

// ---- Anthropic Messages ----

// anthropicImageTypes are the media types Anthropic accepts for images
// (docs.claude.com/en/docs/build-with-claude/vision).
var anthropicImageTypes = []string{"image/jpeg", "image/png", "image/gif", "image/webp"}

func (e *encoder) anthropic() error {
	r := e.r
	if r.n > 1 {
		return unsupported(r.nName, "Anthropic generates one answer per request")
	}
	if r.format.kind == formatJSONObject || r.format.kind == formatJSONSchema && r.format.schema == nil {
		// Anthropic's structured outputs need a schema, and a bare object schema
		// there must forbid every property.
		return unsupported("JSON output without a schema", "Anthropic can hold output to a JSON schema, not to JSON in general")
	}
	e.out = make([]byte, 0, 512+estimateSize(r))
	first := true
	e.out = append(e.out, '{')
	e.key(&first, "model")
	e.out = appendString(e.out, e.target.Model)
	e.key(&first, "max_tokens")
	if r.maxTokens > 0 {
		e.out = appendInt(e.out, r.maxTokens)
	} else {
		e.out = appendInt(e.out, e.defaultMax)
	}
	if len(r.system) == 1 {
		e.raw(&first, "system", r.system[0])
	} else if len(r.system) > 1 {
		e.key(&first, "system")
		e.out = append(e.out, '[')
		for i, s := range r.system {
			if i > 0 {
				e.out = append(e.out, ',')
			}
			e.out = append(append(append(e.out, `{"type":"text","text":`...), s...), '}')
		}
		e.out = append(e.out, ']')
	}
	e.key(&first, "messages")
	if err := e.anthropicMessages(); err != nil {
		return err
	}
	if len(r.stopSeqs) > 0 {
		e.key(&first, "stop_sequences")
		e.out = appendTokens(e.out, r.stopSeqs)
	}
	// Current Claude models refuse sampling parameters (temperature, top_p,
	// top_k) other than their defaults, and the official SDKs no longer send
	// them; the model samples as Anthropic sets it.
	e.dropParam(r.temperature)
	e.dropParam(r.topP)
	e.dropParam(r.topK)
	e.dropParam(r.presencePenalty)
	e.dropParam(r.frequencyPenalty)
	e.dropParam(r.seed)
	if r.stream {
		e.raw(&first, "stream", []byte("true"))
	}
	if len(r.tools) > 0 {
		e.key(&first, "tools")
		e.out = append(e.out, '[')
		for i, t := range r.tools {
			if i > 0 {
				e.out = append(e.out, ',')
			}
			e.out = append(append(e.out, `{"name":`...), t.name...)
			if !t.description.empty() {
				e.out = append(append(e.out, `,"description":`...), t.description...)
			}
			e.out = append(e.out, `,"input_schema":`...)
			if t.schema != nil {
				e.out = append(e.out, t.schema...)
			} else {
				e.out = append(e.out, `{"type":"object","properties":{}}`...)
			}
			e.out = append(e.out, '}')
		}
		e.out = append(e.out, ']')
		mode := ""
		switch r.toolChoice {
		case choiceAuto:
			mode = "auto"
		case choiceNone:
			mode = "none"
		case choiceRequired:
			mode = "any"
		case choiceNamed:
			mode = "tool"
		}
		if mode == "" && r.oneToolCall.set() {
			mode = "auto"
		}
		if mode != "" {
			e.key(&first, "tool_choice")
			e.out = append(append(append(e.out, `{"type":"`...), mode...), '"')
			if r.toolChoice == choiceNamed {
				e.out = append(append(e.out, `,"name":`...), r.toolChoiceName...)
			}
			if r.oneToolCall.set() && mode != "none" {
				e.out = append(e.out, `,"disable_parallel_tool_use":true`...)
			}
			e.out = append(e.out, '}')
		}
	}
	if r.format.kind == formatJSONSchema {
		e.key(&first, "output_config")
		e.out = append(e.out, `{"format":{"type":"json_schema","schema":`...)
		e.out = append(e.out, r.format.schema...)
		e.out = append(e.out, "}}"...)
	}
	if r.user.set() {
		e.key(&first, "metadata")
		e.out = append(append(append(e.out, `{"user_id":`...), r.user.v...), '}')
	}
	e.out = append(e.out, '}')
	return nil
}

// anthropicMessages writes the conversation with consecutive turns of one role
// merged (OpenAI's tool messages become one user turn of tool_result blocks) and,
// in user turns, tool results first, as Anthropic requires.
func (e *encoder) anthropicMessages() error {
	return e.turns(`{"role":"assistant","content":[`, `{"role":"user","content":[`, func(turn []message) error {
		n := 0
		for pass := 0; pass < 2; pass++ {
			for _, m := range turn {
				for _, p := range m.parts {
					if (p.kind == partToolResult) != (pass == 0) {
						continue
					}
					if n > 0 {
						e.out = append(e.out, ',')
					}
					n++
					if err := e.anthropicBlock(p); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
}

// turns writes the conversation as an array of turns, consecutive messages of one
// role merged into one: each turn opens with the assistant's or the user's head,
// body writes its messages' parts, and "]}" closes it.
func (e *encoder) turns(assistant, user string, body func(turn []message) error) error {
	msgs := e.r.messages
	e.out = append(e.out, '[')
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && msgs[j].role == msgs[i].role {
			j++
		}
		if i > 0 {
			e.out = append(e.out, ',')
		}
		if msgs[i].role == roleAssistant {
			e.out = append(e.out, assistant...)
		} else {
			e.out = append(e.out, user...)
		}
		if err := body(msgs[i:j]); err != nil {
			return err
		}
		e.out = append(e.out, "]}"...)
		i = j
	}
	e.out = append(e.out, ']')
	return nil
}

func (e *encoder) anthropicBlock(p part) error {
	switch p.kind {
	case partText:
		e.out = append(append(append(e.out, `{"type":"text","text":`...), p.text...), '}')
	case partImage:
		return e.anthropicImage(p)
	case partToolCall:
		args, ok := argsObject(p)
		if !ok {
			return argsError(p)
		}
		e.out = append(e.out, `{"type":"tool_use","id":`...)
		e.out = appendToolID(e.out, p.id)
		e.out = append(append(e.out, `,"name":`...), p.name...)
		e.out = append(append(append(e.out, `,"input":`...), args...), '}')
	case partToolResult:
		e.out = append(e.out, `{"type":"tool_result","tool_use_id":`...)
		e.out = appendToolID(e.out, p.id)
		if p.object != nil {
			tok, isError, _ := resultText(p, true)
			e.out = append(append(e.out, `,"content":`...), tok...)
			if isError {
				e.out = append(e.out, `,"is_error":true`...)
			}
		} else if len(p.content) > 0 {
			e.out = append(e.out, `,"content":[`...)
			for i, c := range p.content {
				if i > 0 {
					e.out = append(e.out, ',')
				}
				if err := e.anthropicBlock(c); err != nil {
					return err
				}
			}
			e.out = append(e.out, ']')
		}
		if p.isError {
			e.out = append(e.out, `,"is_error":true`...)
		}
		e.out = append(e.out, '}')
	}
	return nil
}

func (e *encoder) anthropicImage(p part) error {
	e.dropParam(p.detail)
	if p.url != nil {
		e.out = append(append(append(e.out, `{"type":"image","source":{"type":"url","url":`...), p.url...), "}}"...)
		return nil
	}
	if !contains(anthropicImageTypes, p.mediaType) {
		return unsupported("image", "Anthropic takes JPEG, PNG, GIF and WebP images, not %s", p.mediaType)
	}
	e.out = append(e.out, `{"type":"image","source":{"type":"base64","media_type":`...)
	e.out = appendString(e.out, p.mediaType)
	e.out = append(e.out, `,"data":"`...)
	e.out = append(e.out, p.data...)
	e.out = append(e.out, `"}}`...)
	return nil
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// appendToolID appends a tool call id for Anthropic, which takes only letters,
// digits, '_' and '-': other bytes become '_', the same way for a call and its
// result, so they still pair.
func appendToolID(dst []byte, id jstr) []byte {
	in := id.interior()
	clean := true
	for _, c := range in {
		if !idByte(c) {
			clean = false
			break
		}
	}
	if clean && len(in) > 0 {
		return append(dst, id...)
	}
	s := id.String()
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if idByte(s[i]) {
			dst = append(dst, s[i])
		} else {
			dst = append(dst, '_')
		}
	}
	if s == "" {
		dst = append(dst, '_')
	}
	return append(dst, '"')
}

func idByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// ---- Gemini generateContent ----

// maxGeminiStops is the number of stop sequences Gemini accepts.
const maxGeminiStops = 5

// geminiImageTypes are the image types Gemini takes inline
// (ai.google.dev/gemini-api/docs/image-understanding).
var geminiImageTypes = []string{"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}

// skipSignature marks a function call that Gemini did not make, and so has no
// thought signature, which Gemini 3 models otherwise require on calls in the
// conversation (ai.google.dev/gemini-api/docs/thought-signatures).
const skipSignature = `"skip_thought_signature_validator"`

func (e *encoder) gemini() error {
	r := e.r
	if len(r.stopSeqs) > maxGeminiStops {
		return unsupported(r.stop.name, "Gemini takes at most %d stop sequences, the request has %d", maxGeminiStops, len(r.stopSeqs))
	}
	e.out = make([]byte, 0, 512+estimateSize(r))
	first := true
	e.out = append(e.out, '{')
	e.key(&first, "contents")
	if err := e.geminiContents(); err != nil {
		return err
	}
	if len(r.system) > 0 {
		e.key(&first, "systemInstruction")
		e.out = append(e.out, `{"parts":[`...)
		for i, s := range r.system {
			if i > 0 {
				e.out = append(e.out, ',')
			}
			e.out = append(append(append(e.out, `{"text":`...), s...), '}')
		}
		e.out = append(e.out, "]}"...)
	}
	if len(r.tools) > 0 {
		e.key(&first, "tools")
		e.out = append(e.out, `[{"functionDeclarations":[`...)
		for i, t := range r.tools {
			if i > 0 {
				e.out = append(e.out, ',')
			}
			e.out = append(append(e.out, `{"name":`...), t.name...)
			if !t.description.empty() {
				e.out = append(append(e.out, `,"description":`...), t.description...)
			}
			if t.schema != nil {
				// parametersJsonSchema takes JSON Schema as it is; parameters
				// would need the OpenAPI subset.
				e.out = append(append(e.out, `,"parametersJsonSchema":`...), t.schema...)
			}
			e.out = append(e.out, '}')
		}
		e.out = append(e.out, "]}]"...)
		mode := ""
		switch r.toolChoice {
		case choiceAuto:
			mode = "AUTO"
		case choiceNone:
			mode = "NONE"
		case choiceRequired, choiceNamed:
			mode = "ANY"
		}
		if mode != "" {
			e.key(&first, "toolConfig")
			e.out = append(append(append(e.out, `{"functionCallingConfig":{"mode":"`...), mode...), '"')
			if r.toolChoice == choiceNamed {
				e.out = append(append(append(e.out, `,"allowedFunctionNames":[`...), r.toolChoiceName...), ']')
			}
			e.out = append(e.out, "}}"...)
		}
	}
	e.dropParam(r.oneToolCall)
	e.dropParam(r.user)
	e.key(&first, "generationConfig")
	e.out = append(e.out, '{')
	gfirst := true
	for _, p := range []struct {
		name string
		v    param
	}{{"temperature", r.temperature}, {"topP", r.topP}, {"topK", r.topK}, {"presencePenalty", r.presencePenalty}, {"frequencyPenalty", r.frequencyPenalty}, {"seed", r.seed}} {
		if p.v.set() {
			e.raw(&gfirst, p.name, p.v.v)
		}
	}
	if r.n > 1 {
		e.key(&gfirst, "candidateCount")
		e.out = appendInt(e.out, r.n)
	}
	if r.maxTokens > 0 {
		e.key(&gfirst, "maxOutputTokens")
		e.out = appendInt(e.out, r.maxTokens)
	}
	if len(r.stopSeqs) > 0 {
		e.key(&gfirst, "stopSequences")
		e.out = appendTokens(e.out, r.stopSeqs)
	}
	switch r.format.kind {
	case formatJSONObject:
		e.raw(&gfirst, "responseMimeType", []byte(`"application/json"`))
	case formatJSONSchema:
		e.raw(&gfirst, "responseMimeType", []byte(`"application/json"`))
		if r.format.schema != nil {
			e.raw(&gfirst, "responseJsonSchema", r.format.schema)
		}
	}
	e.out = append(e.out, "}}"...)
	return nil
}

func (e *encoder) geminiContents() error {
	msgs := e.r.messages
	// Gemini names a function response by its function; the other dialects only
	// by the call's id.
	names := map[string]jstr{}
	for _, m := range msgs {
		for _, p := range m.parts {
			if p.kind == partToolCall {
				names[string(p.id)] = p.name
			}
		}
	}
	return e.turns(`{"role":"model","parts":[`, `{"role":"user","parts":[`, func(turn []message) error {
		n := 0
		signed := false
		for _, m := range turn {
			for _, p := range m.parts {
				if n > 0 {
					e.out = append(e.out, ',')
				}
				n++
				switch p.kind {
				case partText:
					e.out = append(append(append(e.out, `{"text":`...), p.text...), '}')
				case partImage:
					if err := e.geminiImage(p); err != nil {
						return err
					}
				case partToolCall:
					args, ok := argsObject(p)
					if !ok {
						return argsError(p)
					}
					e.out = append(append(e.out, `{"functionCall":{"name":`...), p.name...)
					e.out = append(append(append(e.out, `,"args":`...), args...), '}')
					if !signed {
						// Only the first call of a turn carries a signature.
						e.out = append(append(e.out, `,"thoughtSignature":`...), skipSignature...)
						signed = true
					}
					e.out = append(e.out, '}')
				case partToolResult:
					name := p.name
					if name == nil {
						name = names[string(p.id)]
					}
					if name == nil {
						return unsupported("tool result", "it answers no tool call in the conversation (id %s), and Gemini names results by function", p.id.String())
					}
					obj, err := resultObject(p)
					if err != nil {
						return err
					}
					e.out = append(append(e.out, `{"functionResponse":{"name":`...), name...)
					e.out = append(append(append(e.out, `,"response":`...), obj...), "}}"...)
				}
			}
		}
		return nil
	})
}

func (e *encoder) geminiImage(p part) error {
	e.dropParam(p.detail)
	if p.url != nil {
		// Gemini takes images inline or as files uploaded to Google; fetching the
		// URL would be I/O the limiter does not do on a request's path.
		return unsupported("image URL", "Gemini takes images as inline data, not by URL; send a data: URL")
	}
	if !contains(geminiImageTypes, p.mediaType) {
		return unsupported("image", "Gemini takes PNG, JPEG, WebP, HEIC and HEIF images, not %s", p.mediaType)
	}
	e.out = append(e.out, `{"inlineData":{"mimeType":`...)
	e.out = appendString(e.out, p.mediaType)
	e.out = append(e.out, `,"data":"`...)
	e.out = append(e.out, p.data...)
	e.out = append(e.out, `"}}`...)
	return nil
}
