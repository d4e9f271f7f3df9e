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

// ---- Shared by the dialects ----

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

// tools adds tool definitions: name, description and parameter schema, in either
// the chat shape {type, function:{...}} or the flat shape of Responses, Anthropic
// and the legacy functions list.
func (p *parser) tools(f field, v []byte) error {
	return objects(f, v, p.toolDefinition)
}

// optional checks the optional member name: absent or null is no value (false,
// nil), a value of kind want is one (true), anything else a bad request saying
// it must be what.
func optional(name string, v []byte, want jsonKind, what string) (bool, error) {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return false, nil
	case want:
		return true, nil
	}
	return false, badRequest(name, "%s must be %s, got %s", name, what, kindOf(v))
}

// objects calls each with every element of the array v at f, which may also be
// absent or null; anything else, or an element that is not an object, is a bad
// field.
func objects(f field, v []byte, each func(obj []byte)) error {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return nil
	case kindArray:
	default:
		return badField(f, "must be an array, got %s", kindOf(v))
	}
	var err error
	eachElement(v, func(i int, obj []byte) bool {
		if kindOf(obj) != kindObject {
			err = badField(f.at(i), "must be an object, got %s", kindOf(obj))
			return false
		}
		each(obj)
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

// eachNested reads the elements of the array v at field f with read, stopping at the
// first error; depth counts the arrays of content this one is nested in.
func eachNested(f field, v []byte, depth int, read func(f field, elem []byte, depth int) error) error {
	if depth >= maxContentNesting {
		return badField(f, "nests content more than %d levels deep", maxContentNesting)
	}
	var err error
	eachElement(v, func(j int, elem []byte) bool {
		err = read(f.at(j), elem, depth)
		return err == nil
	})
	return err
}

// eachMessage reads the required array v, the request's member name (messages,
// contents), each element with read, counting each as a prompt part; it stops at the
// first error and returns how many elements there were.
func (p *parser) eachMessage(name string, v []byte, read func(f field, m []byte) error) (int, error) {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return 0, badRequest(name, "%s is required", name)
	case kindArray:
	default:
		return 0, badRequest(name, "%s must be an array, got %s", name, kindOf(v))
	}
	var err error
	n := 0
	list := root(name)
	eachElement(v, func(i int, m []byte) bool {
		n++
		p.r.PromptParts++
		err = read(list.at(i), m)
		return err == nil
	})
	return n, err
}
