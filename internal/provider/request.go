package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Request is what the limiter needs from a request body.
type Request struct {
	Dialect Dialect
	Op      Operation
	// Model comes from the body (OpenAI, Anthropic) or the path (Gemini).
	Model string
	// Stream is the body's "stream": true, or OpStreamGenerateContent.
	Stream bool
	// MaxOutputTokens is max_tokens / max_completion_tokens / max_output_tokens /
	// generationConfig.maxOutputTokens; 0 means the request does not say. When a
	// body states both max_tokens and max_completion_tokens, the larger counts.
	MaxOutputTokens int64
	// Choices is how many completions the request asks for (OpenAI n, or best_of
	// for legacy completions when larger; Gemini candidateCount); 0 means one.
	// Output can be generated this many times over, and providers reserve for it.
	Choices int64
	// StreamUsageRequested reports that a streamed response will carry usage
	// without the limiter's help: always for Anthropic, Gemini and the Responses
	// API; for chat and legacy completions only when the body already sets
	// stream_options.include_usage. When Stream is true and this is false, the
	// limiter can EnableStreamUsage and strip the extra chunk it causes.
	StreamUsageRequested bool
	// PromptText is all text that counts as input (system, messages, content parts,
	// tool calls and results, tool definitions, embedding inputs...), joined by
	// newlines.
	PromptText string
	// PromptParts is the number of messages (or contents, or system blocks), for
	// the per-message token overhead of chat formats; 0 for embeddings and legacy
	// completions, which have none.
	PromptParts int
	// FixedPromptTokens is input that is not text: token-ID arrays (counted
	// exactly) plus a per-item estimate for images, audio and files (see the
	// *MediaTokens constants), whose true cost the body alone does not tell.
	FixedPromptTokens int64
}

// RequestError is a request the limiter refuses before it reaches a provider.
// Message is safe to show the app and names the offending field.
type RequestError struct {
	Status  int
	Param   string
	Message string
}

func (e *RequestError) Error() string { return e.Message }

func badRequest(param, format string, args ...any) *RequestError {
	return &RequestError{Status: http.StatusBadRequest, Param: param, Message: fmt.Sprintf(format, args...)}
}

// Bounds on what a request may state. maxOutputTokensLimit keeps the limiter's
// arithmetic (prompt + output, times choices) far from overflow; every provider
// rejects larger values anyway (Gemini's field is an int32).
const (
	maxOutputTokensLimit = math.MaxInt32
	maxChoicesLimit      = 128
	maxModelNameBytes    = 256
	// maxContentNesting bounds recursion into content that holds content
	// (Anthropic tool results, OpenAI tool outputs); the APIs allow one level.
	maxContentNesting = 4
)

// Per-item token estimates for non-text input. The body does not reveal image
// dimensions or media durations, so each item is charged what a typical large
// item costs; the response's usage corrects the reservation afterwards.
const (
	// OpenAIMediaTokens: a 1024x1024 image at high detail is 85 + 4 tiles x 170
	// (platform.openai.com/docs/guides/images-vision, "Calculating costs").
	OpenAIMediaTokens = 765
	// OpenAILowDetailImageTokens: detail "low" is a flat 85.
	OpenAILowDetailImageTokens = 85
	// AnthropicMediaTokens: tokens = width x height / 750, and images are scaled to
	// about 1.15 megapixels, so about 1,600 at most (docs.claude.com, "Vision").
	AnthropicMediaTokens = 1600
	// GeminiMediaTokens: 258 per 768x768 tile; a 1024x1024 image is 4 tiles
	// (ai.google.dev/gemini-api/docs/tokens, "Multimodal tokens").
	GeminiMediaTokens = 4 * 258
)

// ParseRequest validates a request body and extracts what the limiter needs.
// pathModel is the model from a Gemini path (ignored elsewhere). Malformed JSON,
// wrong types, a missing model or messages, negative or absurd token limits return a
// *RequestError naming the field. A dialect/operation pair that Route never yields
// is a plain error: it is the caller's bug, not the app's.
func ParseRequest(d Dialect, op Operation, pathModel string, body []byte) (Request, error) {
	bare := Request{Dialect: d, Op: op}
	if !opInDialect(d, op) {
		return bare, fmt.Errorf("parse request: operation %s is not part of the %s dialect", op, d)
	}
	if op == OpListModels {
		bare.Model = pathModel
		return bare, nil
	}
	if err := checkBody(body); err != nil {
		return bare, err
	}
	p := parser{r: bare}
	p.text.Grow(min(len(body), 64<<10))
	var err error
	switch op {
	case OpChatCompletions:
		err = p.openAIChat(body)
	case OpCompletions, OpEmbeddings:
		err = p.openAILegacy(body)
	case OpResponses:
		err = p.openAIResponses(body)
	case OpMessages, OpCountTokens:
		err = p.anthropic(body)
	case OpGenerateContent, OpStreamGenerateContent, OpGeminiCountTokens:
		p.r.Model = pathModel
		p.r.Stream = op == OpStreamGenerateContent
		p.r.StreamUsageRequested = p.r.Stream
		err = p.gemini(body)
	}
	if err != nil {
		return bare, err
	}
	p.r.PromptText = p.text.String()
	return p.r, nil
}

func opInDialect(d Dialect, op Operation) bool {
	switch d {
	case DialectOpenAI:
		return op == OpChatCompletions || op == OpCompletions || op == OpEmbeddings || op == OpResponses || op == OpListModels
	case DialectAnthropic:
		return op == OpMessages || op == OpCountTokens || op == OpListModels
	case DialectGemini:
		return op == OpGenerateContent || op == OpStreamGenerateContent || op == OpGeminiCountTokens || op == OpListModels
	}
	return false
}

func checkBody(body []byte) error {
	i := skipSpace(body, 0)
	if i == len(body) {
		return badRequest("", "request body is empty; expected a JSON object")
	}
	if !json.Valid(body) {
		// The slow path only runs for bad input; it says where the JSON breaks.
		var v struct{}
		err := json.Unmarshal(body, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return badRequest("", "request body is not valid JSON: %s (at byte %d)", se.Error(), se.Offset)
		}
		return badRequest("", "request body is not valid JSON")
	}
	if body[i] != '{' {
		return badRequest("", "request body must be a JSON object, got %s", kindOf(body[i:]))
	}
	return nil
}

// parser accumulates one request's prompt text and fields. Its methods return a
// *RequestError for input the provider would refuse.
type parser struct {
	r    Request
	text strings.Builder
}

// collect stores the raw value of each top-level member named in names into the
// matching slot of out. Later duplicates win, as in the providers' own decoders.
func collect(body []byte, names []string, out [][]byte) {
	eachMember(body, func(k []byte, esc bool, v []byte) bool {
		for i, n := range names {
			if keyIs(k, esc, n) {
				out[i] = v
			}
		}
		return true
	})
}

// addText appends a JSON string value's decoded contents to the prompt text.
func (p *parser) addText(v []byte) bool {
	s, escaped, ok := rawString(v)
	if !ok {
		return false
	}
	if len(s) == 0 {
		return true
	}
	if p.text.Len() > 0 {
		p.text.WriteByte('\n')
	}
	if escaped {
		appendUnescaped(&p.text, s)
	} else {
		p.text.Write(s)
	}
	return true
}

// addRaw appends a JSON value (a tool schema, call arguments) as it is written:
// the model reads a rendering of it, and the raw text is a fair upper estimate.
func (p *parser) addRaw(v []byte) {
	switch kindOf(v) {
	case kindString:
		p.addText(v)
	case kindInvalid, kindNull:
	default:
		if p.text.Len() > 0 {
			p.text.WriteByte('\n')
		}
		p.text.Write(v)
	}
}

// addStringMembers appends the named members of an object value that are
// strings, in the order they appear.
func (p *parser) addStringMembers(obj []byte, names ...string) {
	eachMember(obj, func(k []byte, esc bool, v []byte) bool {
		for _, n := range names {
			if keyIs(k, esc, n) {
				p.addText(v)
			}
		}
		return true
	})
}

// model reads the body's model, which OpenAI and Anthropic require.
func (p *parser) model(v []byte) error {
	if v == nil || kindOf(v) == kindNull {
		return badRequest("model", "model is required")
	}
	s, ok := stringValue(v)
	switch {
	case !ok:
		return badRequest("model", "model must be a string, got %s", kindOf(v))
	case s == "":
		return badRequest("model", "model must not be empty")
	case len(s) > maxModelNameBytes:
		return badRequest("model", "model is %d bytes long; model names are at most %d", len(s), maxModelNameBytes)
	case !printable(s):
		// Model names end up in logs and metric labels, where invalid UTF-8
		// and control characters do harm; no real model name has them.
		return badRequest("model", "model must be printable UTF-8 text")
	}
	p.r.Model = s
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// tokens reads an optional token limit; null means not stated.
func tokens(name string, v []byte) (int64, error) {
	if v == nil || kindOf(v) == kindNull {
		return 0, nil
	}
	if kindOf(v) != kindNumber {
		return 0, badRequest(name, "%s must be an integer, got %s", name, kindOf(v))
	}
	n, neg, big, ok := intValue(v, maxOutputTokensLimit)
	switch {
	case !ok:
		return 0, badRequest(name, "%s must be an integer, got %s", name, truncateForMessage(v))
	case neg:
		return 0, badRequest(name, "%s must not be negative, got %s", name, truncateForMessage(v))
	case big:
		return 0, badRequest(name, "%s is %s, more than the %d any model accepts", name, truncateForMessage(v), maxOutputTokensLimit)
	}
	return n, nil
}

func (p *parser) maxTokens(names []string, vals [][]byte) error {
	for i, name := range names {
		n, err := tokens(name, vals[i])
		if err != nil {
			return err
		}
		p.r.MaxOutputTokens = max(p.r.MaxOutputTokens, n)
	}
	return nil
}

func (p *parser) choices(name string, v []byte) error {
	if v == nil || kindOf(v) == kindNull {
		return nil
	}
	n, neg, big, ok := intValue(v, maxChoicesLimit)
	switch {
	case kindOf(v) != kindNumber || !ok:
		return badRequest(name, "%s must be an integer, got %s", name, truncateForMessage(v))
	case neg:
		return badRequest(name, "%s must not be negative, got %s", name, truncateForMessage(v))
	case big:
		return badRequest(name, "%s is %s; at most %d choices are allowed", name, truncateForMessage(v), maxChoicesLimit)
	}
	p.r.Choices = max(p.r.Choices, n)
	return nil
}

func boolean(name string, v []byte) (bool, error) {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return false, nil
	case kindBool:
		return v[0] == 't', nil
	}
	return false, badRequest(name, "%s must be a boolean, got %s", name, kindOf(v))
}

func truncateForMessage(v []byte) string {
	const n = 40
	if len(v) <= n {
		return string(v)
	}
	return string(v[:n]) + "..."
}

// field names a location in the body, such as messages[2].content[0]. It is a
// value with no pointers, so that walking a valid body allocates nothing; the
// path is only formatted for error messages. Paths deeper than fit are cut
// short, which only shortens a message.
type field struct {
	parts [12]pathPart
	n     int
}

type pathPart struct {
	name  string // a member name; "" for an array index
	index int
}

func root(name string) field {
	var f field
	f.parts[0], f.n = pathPart{name: name}, 1
	return f
}

func (f field) member(name string) field { return f.push(pathPart{name: name}) }
func (f field) at(i int) field           { return f.push(pathPart{index: i}) }

func (f field) push(p pathPart) field {
	if f.n < len(f.parts) {
		f.parts[f.n] = p
		f.n++
	}
	return f
}

func (f field) String() string {
	var sb strings.Builder
	for _, p := range f.parts[:f.n] {
		if p.name == "" {
			sb.WriteByte('[')
			sb.WriteString(strconv.Itoa(p.index))
			sb.WriteByte(']')
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(p.name)
	}
	return sb.String()
}

func badField(f field, format string, args ...any) *RequestError {
	param := f.String()
	return &RequestError{Status: http.StatusBadRequest, Param: param, Message: param + " " + fmt.Sprintf(format, args...)}
}

// ---- OpenAI ----

var openAIChatFields = []string{"model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options", "n", "tools", "functions", "response_format"}

func (p *parser) openAIChat(body []byte) error {
	var f [10][]byte
	collect(body, openAIChatFields, f[:])
	if err := p.model(f[0]); err != nil {
		return err
	}
	if err := p.maxTokens(openAIChatFields[2:4], f[2:4]); err != nil {
		return err
	}
	if err := p.openAIStream(f[4], f[5]); err != nil {
		return err
	}
	if err := p.choices("n", f[6]); err != nil {
		return err
	}
	if err := p.openAIMessages(f[1]); err != nil {
		return err
	}
	if err := p.tools(root("tools"), f[7]); err != nil {
		return err
	}
	if err := p.tools(root("functions"), f[8]); err != nil {
		return err
	}
	p.responseFormat(f[9])
	return nil
}

func (p *parser) openAIStream(stream, options []byte) error {
	s, err := boolean("stream", stream)
	if err != nil {
		return err
	}
	p.r.Stream = s
	switch kindOf(options) {
	case kindInvalid, kindNull:
		return nil
	case kindObject:
	default:
		return badRequest("stream_options", "stream_options must be an object, got %s", kindOf(options))
	}
	var include []byte
	eachMember(options, func(k []byte, esc bool, v []byte) bool {
		if keyIs(k, esc, "include_usage") {
			include = v
		}
		return true
	})
	inc, err := boolean("stream_options.include_usage", include)
	if err != nil {
		return err
	}
	p.r.StreamUsageRequested = s && inc
	return nil
}

func (p *parser) openAIMessages(v []byte) error {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return badRequest("messages", "messages is required")
	case kindArray:
	default:
		return badRequest("messages", "messages must be an array, got %s", kindOf(v))
	}
	var err error
	messages := root("messages")
	eachElement(v, func(i int, m []byte) bool {
		p.r.PromptParts++
		f := messages.at(i)
		err = p.openAIMessage(f, m)
		return err == nil
	})
	if err != nil {
		return err
	}
	if p.r.PromptParts == 0 {
		return badRequest("messages", "messages must not be empty")
	}
	return nil
}

func (p *parser) openAIMessage(f field, m []byte) error {
	if kindOf(m) != kindObject {
		return badField(f, "must be an object, got %s", kindOf(m))
	}
	var role, content, name, toolCalls, functionCall, refusal []byte
	eachMember(m, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "role"):
			role = v
		case keyIs(k, esc, "content"):
			content = v
		case keyIs(k, esc, "name"):
			name = v
		case keyIs(k, esc, "tool_calls"):
			toolCalls = v
		case keyIs(k, esc, "function_call"):
			functionCall = v
		case keyIs(k, esc, "refusal"):
			refusal = v
		}
		return true
	})
	if err := p.role(f, role); err != nil {
		return err
	}
	p.addText(name)
	p.addText(refusal)
	c := f.member("content")
	if err := p.openAIContent(c, content, 0); err != nil {
		return err
	}
	eachElement(toolCalls, func(_ int, call []byte) bool {
		p.toolCall(call)
		return true
	})
	p.toolCall(functionCall)
	return nil
}

func (p *parser) role(msg field, role []byte) error {
	if role == nil {
		f := msg.member("role")
		return badField(f, "is required")
	}
	if !p.addText(role) {
		f := msg.member("role")
		return badField(f, "must be a string, got %s", kindOf(role))
	}
	return nil
}

// toolCall adds a call's function name and arguments; it accepts both the chat
// shape {function:{name, arguments}} and the flat {name, arguments}.
func (p *parser) toolCall(c []byte) {
	eachMember(c, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "function"):
			p.addStringMembers(v, "name", "arguments")
		case keyIs(k, esc, "name"), keyIs(k, esc, "arguments"):
			p.addText(v)
		}
		return true
	})
}

// openAIContent reads message content: a string, null, or an array of parts.
func (p *parser) openAIContent(f field, v []byte, depth int) error {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return nil
	case kindString:
		p.addText(v)
		return nil
	case kindArray:
	default:
		return badField(f, "must be a string, an array of content parts, or null; got %s", kindOf(v))
	}
	if depth >= maxContentNesting {
		return badField(f, "nests content more than %d levels deep", maxContentNesting)
	}
	var err error
	eachElement(v, func(j int, part []byte) bool {
		pf := f.at(j)
		err = p.openAIPart(pf, part, depth)
		return err == nil
	})
	return err
}

// openAIPart reads one content part of either OpenAI API: chat (text, image_url,
// input_audio, file, refusal) or Responses (input_text, output_text, input_image,
// input_file, and tool outputs that hold content of their own).
func (p *parser) openAIPart(f field, part []byte, depth int) error {
	if kindOf(part) != kindObject {
		return badField(f, "must be an object, got %s", kindOf(part))
	}
	var typ, text, detail, imageURL, output []byte
	eachMember(part, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "type"):
			typ = v
		case keyIs(k, esc, "text"), keyIs(k, esc, "refusal"):
			text = v
		case keyIs(k, esc, "image_url"):
			imageURL = v
		case keyIs(k, esc, "detail"):
			detail = v
		case keyIs(k, esc, "output"):
			output = v
		}
		return true
	})
	switch string(str(typ)) {
	case "image_url", "input_image":
		// Chat nests detail inside image_url; Responses puts it beside.
		if detail == nil {
			eachMember(imageURL, func(k []byte, esc bool, v []byte) bool {
				if keyIs(k, esc, "detail") {
					detail = v
				}
				return true
			})
		}
		if string(str(detail)) == "low" {
			p.r.FixedPromptTokens += OpenAILowDetailImageTokens
		} else {
			p.r.FixedPromptTokens += OpenAIMediaTokens
		}
	case "input_audio", "file", "input_file":
		p.r.FixedPromptTokens += OpenAIMediaTokens
	default:
		p.addText(text)
		if output != nil {
			o := f.member("output")
			return p.openAIContent(o, output, depth+1)
		}
	}
	return nil
}

// tools adds tool definitions: name, description and parameter schema, in either
// the chat shape {type, function:{...}} or the flat shape of Responses, Anthropic
// and the legacy functions list.
func (p *parser) tools(f field, v []byte) error {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return nil
	case kindArray:
	default:
		return badField(f, "must be an array, got %s", kindOf(v))
	}
	var err error
	eachElement(v, func(i int, t []byte) bool {
		if kindOf(t) != kindObject {
			tf := f.at(i)
			err = badField(tf, "must be an object, got %s", kindOf(t))
			return false
		}
		p.toolDefinition(t)
		return true
	})
	return err
}

func (p *parser) toolDefinition(t []byte) {
	p.toolFields(t, true)
}

// toolFields adds a definition's name, description and schema. The nested
// function (chat) or custom (Responses) object is read one level down only:
// following nesting further would let a hostile body make the walk quadratic.
func (p *parser) toolFields(t []byte, outer bool) {
	eachMember(t, func(k []byte, esc bool, v []byte) bool {
		switch {
		case outer && (keyIs(k, esc, "function") || keyIs(k, esc, "custom")):
			p.toolFields(v, false)
		case keyIs(k, esc, "name"), keyIs(k, esc, "description"):
			p.addText(v)
		case keyIs(k, esc, "parameters"), keyIs(k, esc, "input_schema"), keyIs(k, esc, "format"):
			p.addRaw(v)
		}
		return true
	})
}

// responseFormat adds a structured-output schema, which the model is shown.
func (p *parser) responseFormat(v []byte) {
	eachMember(v, func(k []byte, esc bool, s []byte) bool {
		if keyIs(k, esc, "json_schema") || keyIs(k, esc, "schema") {
			p.addRaw(s)
		}
		return true
	})
}

var openAILegacyFields = []string{"model", "prompt", "input", "max_tokens", "stream", "stream_options", "n", "best_of", "suffix"}

// openAILegacy reads /v1/completions and /v1/embeddings, whose input is a string,
// an array of strings, an array of token IDs, or an array of such arrays.
func (p *parser) openAILegacy(body []byte) error {
	var f [9][]byte
	collect(body, openAILegacyFields, f[:])
	if err := p.model(f[0]); err != nil {
		return err
	}
	param, input := "prompt", f[1]
	if p.r.Op == OpEmbeddings {
		param, input = "input", f[2]
	} else {
		if err := p.maxTokens(openAILegacyFields[3:4], f[3:4]); err != nil {
			return err
		}
		if err := p.openAIStream(f[4], f[5]); err != nil {
			return err
		}
		if err := p.choices("n", f[6]); err != nil {
			return err
		}
		if err := p.choices("best_of", f[7]); err != nil {
			return err
		}
		p.addText(f[8])
	}
	if input == nil || kindOf(input) == kindNull {
		if p.r.Op == OpEmbeddings {
			return badRequest(param, "input is required")
		}
		return nil // completions default to the empty prompt
	}
	return p.legacyInput(root(param), input, 0)
}

func (p *parser) legacyInput(f field, v []byte, depth int) error {
	switch kindOf(v) {
	case kindString:
		p.addText(v)
		return nil
	case kindNumber:
		if depth == 0 {
			break
		}
		if _, neg, big, ok := intValue(v, math.MaxInt32); !ok || neg || big {
			return badField(f, "holds %s, which is not a token ID", truncateForMessage(v))
		}
		p.r.FixedPromptTokens++
		return nil
	case kindArray:
		if depth >= 2 {
			break
		}
		var err error
		eachElement(v, func(i int, e []byte) bool {
			err = p.legacyInput(f.at(i), e, depth+1)
			return err == nil
		})
		return err
	}
	return badField(f, "must be a string, an array of strings, or an array of token IDs; got %s", kindOf(v))
}

var openAIResponsesFields = []string{"model", "input", "instructions", "max_output_tokens", "stream", "tools", "text"}

func (p *parser) openAIResponses(body []byte) error {
	var f [7][]byte
	collect(body, openAIResponsesFields, f[:])
	if err := p.model(f[0]); err != nil {
		return err
	}
	if err := p.maxTokens(openAIResponsesFields[3:4], f[3:4]); err != nil {
		return err
	}
	s, err := boolean("stream", f[4])
	if err != nil {
		return err
	}
	p.r.Stream, p.r.StreamUsageRequested = s, s
	switch kindOf(f[2]) {
	case kindInvalid, kindNull:
	case kindString:
		p.addText(f[2])
		p.r.PromptParts++
	default:
		return badRequest("instructions", "instructions must be a string, got %s", kindOf(f[2]))
	}
	if err := p.responsesInput(f[1]); err != nil {
		return err
	}
	if err := p.tools(root("tools"), f[5]); err != nil {
		return err
	}
	eachMember(f[6], func(k []byte, esc bool, v []byte) bool {
		if keyIs(k, esc, "format") {
			p.responseFormat(v)
		}
		return true
	})
	return nil
}

func (p *parser) responsesInput(v []byte) error {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return nil // a request may continue a stored conversation with no new input
	case kindString:
		p.addText(v)
		p.r.PromptParts++
		return nil
	case kindArray:
	default:
		return badRequest("input", "input must be a string or an array of input items, got %s", kindOf(v))
	}
	var err error
	input := root("input")
	eachElement(v, func(i int, item []byte) bool {
		p.r.PromptParts++
		f := input.at(i)
		err = p.responsesItem(f, item)
		return err == nil
	})
	return err
}

// responsesItem reads one Responses input item: a message {role, content}, a
// function call {name, arguments}, a tool output {output}, or a reasoning summary.
func (p *parser) responsesItem(f field, item []byte) error {
	if kindOf(item) != kindObject {
		return badField(f, "must be an object, got %s", kindOf(item))
	}
	var content, output, summary []byte
	eachMember(item, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "role"), keyIs(k, esc, "name"), keyIs(k, esc, "arguments"), keyIs(k, esc, "input"):
			p.addText(v)
		case keyIs(k, esc, "content"):
			content = v
		case keyIs(k, esc, "output"):
			output = v
		case keyIs(k, esc, "summary"):
			summary = v
		}
		return true
	})
	c := f.member("content")
	if err := p.openAIContent(c, content, 0); err != nil {
		return err
	}
	o := f.member("output")
	if err := p.openAIContent(o, output, 0); err != nil {
		return err
	}
	eachElement(summary, func(_ int, s []byte) bool {
		p.addStringMembers(s, "text")
		return true
	})
	return nil
}

// ---- Anthropic ----

var anthropicFields = []string{"model", "messages", "system", "max_tokens", "stream", "tools"}

func (p *parser) anthropic(body []byte) error {
	var f [6][]byte
	collect(body, anthropicFields, f[:])
	if err := p.model(f[0]); err != nil {
		return err
	}
	if p.r.Op == OpMessages {
		if f[3] == nil || kindOf(f[3]) == kindNull {
			return badRequest("max_tokens", "max_tokens is required")
		}
		if err := p.maxTokens(anthropicFields[3:4], f[3:4]); err != nil {
			return err
		}
		s, err := boolean("stream", f[4])
		if err != nil {
			return err
		}
		p.r.Stream, p.r.StreamUsageRequested = s, s
	}
	system := root("system")
	switch kindOf(f[2]) {
	case kindInvalid, kindNull:
	case kindString:
		p.addText(f[2])
		p.r.PromptParts++
	case kindArray:
		if err := p.anthropicBlocks(system, f[2], 0); err != nil {
			return err
		}
		p.r.PromptParts++
	default:
		return badField(system, "must be a string or an array of text blocks, got %s", kindOf(f[2]))
	}
	if err := p.anthropicMessages(f[1]); err != nil {
		return err
	}
	return p.tools(root("tools"), f[5])
}

func (p *parser) anthropicMessages(v []byte) error {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return badRequest("messages", "messages is required")
	case kindArray:
	default:
		return badRequest("messages", "messages must be an array, got %s", kindOf(v))
	}
	var err error
	n := 0
	messages := root("messages")
	eachElement(v, func(i int, m []byte) bool {
		n++
		p.r.PromptParts++
		f := messages.at(i)
		err = p.anthropicMessage(f, m)
		return err == nil
	})
	if err != nil {
		return err
	}
	if n == 0 && p.r.Op == OpMessages {
		return badRequest("messages", "messages must not be empty")
	}
	return nil
}

func (p *parser) anthropicMessage(f field, m []byte) error {
	if kindOf(m) != kindObject {
		return badField(f, "must be an object, got %s", kindOf(m))
	}
	var role, content []byte
	eachMember(m, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "role"):
			role = v
		case keyIs(k, esc, "content"):
			content = v
		}
		return true
	})
	if err := p.role(f, role); err != nil {
		return err
	}
	c := f.member("content")
	switch kindOf(content) {
	case kindString:
		p.addText(content)
		return nil
	case kindArray:
		return p.anthropicBlocks(c, content, 0)
	case kindInvalid:
		return badField(c, "is required")
	}
	return badField(c, "must be a string or an array of content blocks, got %s", kindOf(content))
}

// anthropicBlocks reads content blocks: text, image, document, tool_use,
// tool_result (which holds blocks of its own), thinking, search results.
func (p *parser) anthropicBlocks(f field, v []byte, depth int) error {
	if depth >= maxContentNesting {
		return badField(f, "nests content more than %d levels deep", maxContentNesting)
	}
	var err error
	eachElement(v, func(j int, b []byte) bool {
		bf := f.at(j)
		err = p.anthropicBlock(bf, b, depth)
		return err == nil
	})
	return err
}

func (p *parser) anthropicBlock(f field, b []byte, depth int) error {
	if kindOf(b) != kindObject {
		return badField(f, "must be an object, got %s", kindOf(b))
	}
	var typ, content, source []byte
	eachMember(b, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "type"):
			typ = v
		case keyIs(k, esc, "text"), keyIs(k, esc, "thinking"), keyIs(k, esc, "name"), keyIs(k, esc, "title"):
			p.addText(v)
		case keyIs(k, esc, "input"):
			p.addRaw(v)
		case keyIs(k, esc, "content"):
			content = v
		case keyIs(k, esc, "source"):
			source = v
		}
		return true
	})
	switch string(str(typ)) {
	case "image":
		p.r.FixedPromptTokens += AnthropicMediaTokens
	case "document":
		p.anthropicDocument(source)
	}
	switch kindOf(content) {
	case kindString:
		p.addText(content)
	case kindArray:
		c := f.member("content")
		return p.anthropicBlocks(c, content, depth+1)
	}
	return nil
}

// anthropicDocument counts a document's text when it is plain text, else charges
// the media estimate (a PDF's cost is not knowable from its bytes here).
func (p *parser) anthropicDocument(source []byte) {
	var typ, data []byte
	eachMember(source, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "type"):
			typ = v
		case keyIs(k, esc, "data"):
			data = v
		}
		return true
	})
	if string(str(typ)) == "text" {
		p.addText(data)
		return
	}
	p.r.FixedPromptTokens += AnthropicMediaTokens
}

// ---- Gemini ----

// Gemini's REST API is proto3 JSON, which accepts both lowerCamel and snake_case
// member names (protobuf.dev/programming-guides/json), and its own docs use both.
var geminiFields = []string{"contents", "systemInstruction", "system_instruction", "tools", "generationConfig", "generation_config", "generateContentRequest", "generate_content_request"}

func (p *parser) gemini(body []byte) error {
	var f [8][]byte
	collect(body, geminiFields, f[:])
	if p.r.Op == OpGeminiCountTokens {
		if inner := either(f[6], f[7]); kindOf(inner) == kindObject {
			collect(inner, geminiFields[:6], f[:6])
		}
	}
	sys := either(f[1], f[2])
	sf := root("systemInstruction")
	switch kindOf(sys) {
	case kindInvalid, kindNull:
	case kindObject:
		if err := p.geminiContent(sf, sys); err != nil {
			return err
		}
		p.r.PromptParts++
	default:
		return badField(sf, "must be an object, got %s", kindOf(sys))
	}
	if err := p.geminiContents(f[0]); err != nil {
		return err
	}
	if err := p.geminiTools(f[3]); err != nil {
		return err
	}
	return p.generationConfig(either(f[4], f[5]))
}

// either returns the camelCase spelling's value, else the snake_case one's.
func either(camel, snake []byte) []byte {
	if camel != nil {
		return camel
	}
	return snake
}

func (p *parser) geminiContents(v []byte) error {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		if p.r.Op == OpGeminiCountTokens {
			return nil
		}
		return badRequest("contents", "contents is required")
	case kindArray:
	default:
		return badRequest("contents", "contents must be an array, got %s", kindOf(v))
	}
	var err error
	n := 0
	contents := root("contents")
	eachElement(v, func(i int, c []byte) bool {
		n++
		p.r.PromptParts++
		f := contents.at(i)
		if kindOf(c) != kindObject {
			err = badField(f, "must be an object, got %s", kindOf(c))
			return false
		}
		err = p.geminiContent(f, c)
		return err == nil
	})
	if err != nil {
		return err
	}
	if n == 0 && p.r.Op != OpGeminiCountTokens {
		return badRequest("contents", "contents must not be empty")
	}
	return nil
}

func (p *parser) geminiContent(f field, c []byte) error {
	var parts []byte
	eachMember(c, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "role"):
			p.addText(v)
		case keyIs(k, esc, "parts"):
			parts = v
		}
		return true
	})
	pf := f.member("parts")
	switch kindOf(parts) {
	case kindInvalid, kindNull:
		return nil
	case kindObject:
		// Some clients send a lone part where a list belongs; proto JSON
		// parsers tolerate it, so the limiter does too.
		p.geminiPart(parts)
		return nil
	case kindArray:
	default:
		return badField(pf, "must be an array, got %s", kindOf(parts))
	}
	var err error
	eachElement(parts, func(j int, part []byte) bool {
		if kindOf(part) != kindObject {
			ef := pf.at(j)
			err = badField(ef, "must be an object, got %s", kindOf(part))
			return false
		}
		p.geminiPart(part)
		return true
	})
	return err
}

func (p *parser) geminiPart(part []byte) {
	eachMember(part, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "text"):
			p.addText(v)
		case keyIs(k, esc, "inlineData"), keyIs(k, esc, "inline_data"), keyIs(k, esc, "fileData"), keyIs(k, esc, "file_data"):
			p.r.FixedPromptTokens += GeminiMediaTokens
		case keyIs(k, esc, "functionCall"), keyIs(k, esc, "function_call"),
			keyIs(k, esc, "functionResponse"), keyIs(k, esc, "function_response"),
			keyIs(k, esc, "executableCode"), keyIs(k, esc, "executable_code"),
			keyIs(k, esc, "codeExecutionResult"), keyIs(k, esc, "code_execution_result"):
			p.addRaw(v)
		}
		return true
	})
}

func (p *parser) geminiTools(v []byte) error {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return nil
	case kindArray:
	default:
		return badRequest("tools", "tools must be an array, got %s", kindOf(v))
	}
	eachElement(v, func(_ int, t []byte) bool {
		eachMember(t, func(k []byte, esc bool, decls []byte) bool {
			if keyIs(k, esc, "functionDeclarations") || keyIs(k, esc, "function_declarations") {
				eachElement(decls, func(_ int, d []byte) bool {
					eachMember(d, func(k []byte, esc bool, v []byte) bool {
						switch {
						case keyIs(k, esc, "name"), keyIs(k, esc, "description"):
							p.addText(v)
						case keyIs(k, esc, "parameters"), keyIs(k, esc, "parametersJsonSchema"), keyIs(k, esc, "parameters_json_schema"):
							p.addRaw(v)
						}
						return true
					})
					return true
				})
			}
			return true
		})
		return true
	})
	return nil
}

var generationConfigFields = []string{"maxOutputTokens", "max_output_tokens", "candidateCount", "candidate_count"}

func (p *parser) generationConfig(v []byte) error {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return nil
	case kindObject:
	default:
		return badRequest("generationConfig", "generationConfig must be an object, got %s", kindOf(v))
	}
	var f [4][]byte
	collect(v, generationConfigFields, f[:])
	n, err := tokens("generationConfig.maxOutputTokens", either(f[0], f[1]))
	if err != nil {
		return err
	}
	p.r.MaxOutputTokens = n
	return p.choices("generationConfig.candidateCount", either(f[2], f[3]))
}
