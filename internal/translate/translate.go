// Package translate turns a request in one provider dialect into the same request
// in another, and the answer, streamed or not, back into the app's dialect: OpenAI
// Chat Completions, OpenAI Responses (as a source), Anthropic Messages and Gemini
// generateContent. It is what lets a FallbackChain fall over from one provider type
// to another.
//
// Everything here is a pure function of its inputs: no I/O, no clocks, no global
// state. A request that needs no translation (Needed is false) never comes here and
// keeps the proxy's zero-copy path.
//
// Where a request says something the target cannot express, Request either drops
// it and names it in Translation.Dropped (for the x-aiquota-dropped header) or
// refuses with an *UnsupportedError, so the chain walk skips that entry, when
// dropping would change what the app asked for. docs/translation.md has the table.
package translate

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
)

// Source is the app's side of a request: its dialect and operation, as
// provider.Route found them.
type Source struct {
	Dialect provider.Dialect
	Op      provider.Operation
	// RawQuery is the app's URL query. A Gemini stream is answered as SSE only when
	// it says alt=sse, as Gemini does; otherwise as a streamed JSON array.
	RawQuery string
}

// Target is the chain entry a request is translated for.
type Target struct {
	// ProviderType is a limiterconfig.Provider* type. OpenAI gets
	// max_completion_tokens; DeepSeek and OpenAI-compatible servers, which do not
	// all know it, get max_tokens, and are sent Chat Completions even when the app
	// speaks Responses.
	ProviderType string
	// Model is the entry's model, set in the body (OpenAI, Anthropic) or the path
	// (Gemini).
	Model string
	// MaxOutputTokens is stated when the app states no output budget and the
	// target requires one (Anthropic's max_tokens). Pass the entry's pool
	// maxOutputTokens, which is also what the limiter reserves; 0 means
	// limiterconfig.DefaultMaxOutputTokens.
	MaxOutputTokens int64
}

// UnsupportedError is a request that cannot be translated for a target without
// changing what it asks for. The chain walk skips that entry; the request may
// still suit another.
type UnsupportedError struct {
	// Field is the app's field, as a path such as messages[].content[].image_url.
	Field string
	// Reason says what the target lacks.
	Reason string
	// Target is the provider type and dialect operation, e.g. "gemini".
	Target string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s cannot be sent to %s: %s", e.Field, e.Target, e.Reason)
}

func unsupported(field, format string, args ...any) *UnsupportedError {
	return &UnsupportedError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// malformed is a request that is wrong whatever the target: the walk answers the
// app with its 400 instead of trying further entries.
func malformed(field, format string, args ...any) *provider.RequestError {
	return &provider.RequestError{Status: http.StatusBadRequest, Param: field, Message: fmt.Sprintf(format, args...)}
}

// Translatable reports whether requests of an operation can be translated at all.
// Embeddings, legacy completions and token counts cannot: a chain walk serves them
// only from entries of the app's own dialect.
func Translatable(op provider.Operation) bool {
	switch op {
	case provider.OpChatCompletions, provider.OpResponses, provider.OpMessages,
		provider.OpGenerateContent, provider.OpStreamGenerateContent:
		return true
	}
	return false
}

// Needed reports whether a request in dialect d and operation op must be translated
// to reach a provider of providerType. It must not when the provider speaks the
// app's dialect and operation (DeepSeek and OpenAI-compatible servers speak Chat
// Completions but not, reliably, Responses).
func Needed(d provider.Dialect, op provider.Operation, providerType string) bool {
	if provider.DialectOf(providerType) != d {
		return true
	}
	return op == provider.OpResponses && providerType != limiterconfig.ProviderOpenAI
}

// Translation is one translated request, and what is needed to translate its
// answer back. It is immutable and may be used from several goroutines; each
// streamed answer needs its own Stream.
type Translation struct {
	// Body is the request body for the target.
	Body []byte
	// Path is the upstream path, to append to the entry's endpoint:
	// /v1/chat/completions, /v1/messages or /v1beta/models/{model}:generateContent
	// (:streamGenerateContent for streams).
	Path string
	// RawQuery is the upstream query: alt=sse for Gemini streams, else "".
	RawQuery string
	// Stream reports that the answer is streamed (both sides stream or neither).
	Stream bool
	// Dropped names the app's fields that were left out or narrowed to fit the
	// target, sorted and unique; see DroppedHeader.
	Dropped []string

	app          provider.Dialect
	appOp        provider.Operation
	target       provider.Dialect
	providerType string
	appSSE       bool // a Gemini app's stream is SSE (alt=sse), not a JSON array
	includeUsage bool // an OpenAI chat app asked for the usage chunk
}

// DroppedHeader is the value for an x-aiquota-dropped response header: the dropped
// fields, comma-separated; "" when nothing was dropped.
func (t *Translation) DroppedHeader() string { return strings.Join(t.Dropped, ", ") }

// Request translates an app's request body for target. body must be a request
// provider.ParseRequest accepted (the proxy parses before it routes). Errors:
// *UnsupportedError when the target cannot express the request (skip the entry),
// *provider.RequestError when the request is malformed whatever the target
// (answer 400), a plain error for a pair this package does not translate (a bug in
// the caller: check Needed and Translatable first).
func Request(src Source, body []byte, target Target) (*Translation, error) {
	td := provider.DialectOf(target.ProviderType)
	if td == 0 {
		return nil, fmt.Errorf("translate: unknown provider type %q", target.ProviderType)
	}
	if !Translatable(src.Op) {
		return nil, fmt.Errorf("translate: %s requests cannot be translated", src.Op)
	}
	if !Needed(src.Dialect, src.Op, target.ProviderType) {
		return nil, fmt.Errorf("translate: %s %s needs no translation for %s", src.Dialect, src.Op, target.ProviderType)
	}
	if target.Model == "" {
		return nil, fmt.Errorf("translate: no target model")
	}
	var (
		r   *request
		err error
	)
	switch src.Op {
	case provider.OpChatCompletions:
		r, err = decodeChat(body)
	case provider.OpResponses:
		r, err = decodeResponses(body)
	case provider.OpMessages:
		r, err = decodeAnthropic(body)
	case provider.OpGenerateContent, provider.OpStreamGenerateContent:
		r, err = decodeGemini(body)
		if r != nil {
			r.stream = src.Op == provider.OpStreamGenerateContent
		}
	}
	if err != nil {
		return nil, targetNamed(err, target)
	}
	t := &Translation{
		Stream: r.stream, app: src.Dialect, appOp: src.Op, target: td,
		providerType: target.ProviderType, includeUsage: r.includeUsage,
	}
	if src.Op == provider.OpStreamGenerateContent {
		q, _ := url.ParseQuery(src.RawQuery)
		t.appSSE = q.Get("alt") == "sse"
	}
	maxOut := target.MaxOutputTokens
	if maxOut <= 0 {
		maxOut = limiterconfig.DefaultMaxOutputTokens
	}
	e := encoder{r: r, target: target, defaultMax: maxOut}
	switch td {
	case provider.DialectOpenAI:
		t.Path = "/v1/chat/completions"
		err = e.chat()
	case provider.DialectAnthropic:
		t.Path = "/v1/messages"
		err = e.anthropic()
	case provider.DialectGemini:
		if !provider.ValidPathModel(target.Model) {
			return nil, fmt.Errorf("translate: model %q cannot be named in a Gemini path", target.Model)
		}
		t.Path = "/v1beta/models/" + target.Model + ":generateContent"
		if r.stream {
			t.Path = "/v1beta/models/" + target.Model + ":streamGenerateContent"
			t.RawQuery = "alt=sse"
		}
		err = e.gemini()
	}
	if err != nil {
		return nil, targetNamed(err, target)
	}
	t.Body = e.out
	t.Dropped = r.dropped
	slices.Sort(t.Dropped)
	t.Dropped = slices.Compact(t.Dropped)
	return t, nil
}

func targetNamed(err error, target Target) error {
	var ue *UnsupportedError
	if errors.As(err, &ue) {
		ue.Target = target.ProviderType
	}
	return err
}

// UpstreamHeader adjusts the headers the proxy forwards from the app for the
// target's dialect: it removes the app dialect's own version and beta headers,
// which mean nothing to the target (and Anthropic's anthropic-beta could switch
// on features the translation did not ask for), and Content-Length, as the body
// changed. provider.ApplyAuth then sets the target's credentials and
// anthropic-version.
func (t *Translation) UpstreamHeader(h http.Header) {
	h.Del("Content-Length")
	switch t.app {
	case provider.DialectAnthropic:
		h.Del("Anthropic-Version")
		h.Del("Anthropic-Beta")
		h.Del("Anthropic-Dangerous-Direct-Browser-Access")
	case provider.DialectOpenAI:
		h.Del("Openai-Beta")
	case provider.DialectGemini:
		h.Del("X-Goog-Api-Client")
		h.Del("X-Goog-User-Project")
	}
	h.Set("Content-Type", "application/json")
}

// ResponseHeader adjusts the headers copied from the upstream's answer for the
// app: the body is re-encoded, so its length and encoding no longer hold.
func (t *Translation) ResponseHeader(h http.Header) {
	h.Del("Content-Length")
	h.Del("Content-Encoding")
	switch {
	case t.Stream && (t.app != provider.DialectGemini || t.appSSE):
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
	default:
		h.Set("Content-Type", "application/json")
	}
}
