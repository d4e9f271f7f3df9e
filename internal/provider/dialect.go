// Package provider is the limiter's knowledge of the AI providers' wire formats:
// which endpoint a request is for, what it asks for (model, prompt, output budget),
// how many tokens that is, what the provider reports back (usage, rate-limit headers,
// errors, streams), and how to answer in each provider's own error dialect.
//
// It does no I/O except writing error responses, holds no mutable package state
// (the tokenizer vocabularies are loaded once, lazily, and never change), and is
// safe for concurrent use. Nothing here panics on any input: every parser is fuzzed.
package provider

import (
	"net/http"
	"strings"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// Dialect is a wire format: the one the app speaks to the sidecar, and the one the
// upstream speaks. The zero value is "unknown".
type Dialect uint8

// Dialects.
const (
	DialectOpenAI Dialect = iota + 1
	DialectAnthropic
	DialectGemini
)

func (d Dialect) String() string {
	switch d {
	case DialectOpenAI:
		return "openai"
	case DialectAnthropic:
		return "anthropic"
	case DialectGemini:
		return "gemini"
	default:
		return "unknown"
	}
}

// DialectOf maps a limiterconfig provider type to its wire dialect: openai, deepseek
// and openai-compatible speak OpenAI; anthropic and gemini their own. An unknown
// type yields the zero Dialect.
func DialectOf(providerType string) Dialect {
	switch providerType {
	case limiterconfig.ProviderOpenAI, limiterconfig.ProviderDeepSeek, limiterconfig.ProviderOpenAICompatible:
		return DialectOpenAI
	case limiterconfig.ProviderAnthropic:
		return DialectAnthropic
	case limiterconfig.ProviderGemini:
		return DialectGemini
	default:
		return 0
	}
}

// Operation is what a request asks the provider to do.
type Operation uint8

// Operations.
const (
	OpChatCompletions Operation = iota + 1
	OpCompletions
	OpEmbeddings
	OpResponses
	OpMessages
	OpCountTokens // Anthropic /v1/messages/count_tokens
	OpGenerateContent
	OpStreamGenerateContent
	OpGeminiCountTokens
	OpListModels
)

func (o Operation) String() string {
	switch o {
	case OpChatCompletions:
		return "chatCompletions"
	case OpCompletions:
		return "completions"
	case OpEmbeddings:
		return "embeddings"
	case OpResponses:
		return "responses"
	case OpMessages:
		return "messages"
	case OpCountTokens:
		return "countTokens"
	case OpGenerateContent:
		return "generateContent"
	case OpStreamGenerateContent:
		return "streamGenerateContent"
	case OpGeminiCountTokens:
		return "geminiCountTokens"
	case OpListModels:
		return "listModels"
	default:
		return "unknown"
	}
}

// Limited reports whether the operation consumes quota. Listing models and counting
// tokens are proxied without a reservation: providers do not charge them against
// RPM/TPM the way they charge generation.
func (o Operation) Limited() bool {
	switch o {
	case OpChatCompletions, OpCompletions, OpEmbeddings, OpResponses, OpMessages,
		OpGenerateContent, OpStreamGenerateContent:
		return true
	default:
		return false
	}
}

// Route identifies what an incoming request to the sidecar is. Accepted:
//
//	OpenAI:    POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses;
//	           GET /v1/models and /v1/models/{model}; each also without the /v1 prefix,
//	           because DeepSeek's SDK base URL has none.
//	Anthropic: POST /v1/messages, /v1/messages/count_tokens.
//	Gemini:    POST /v1beta/models/{model}:generateContent, :streamGenerateContent,
//	           :countTokens; GET /v1beta/models and /v1beta/models/{model};
//	           the same under /v1/ (Gemini's stable version path).
//
// pathModel is {model} for Gemini and the OpenAI model lookup, else "". For anything
// else ok is false and d is still a best guess at the caller's dialect from the path,
// for the 404 the limiter answers with. A known path with the wrong method is not
// routed either: the limiter must not guess what a GET on a POST endpoint means.
//
// GET /v1/models is both OpenAI's and Anthropic's model list; it routes as OpenAI.
func Route(method, path string) (d Dialect, op Operation, pathModel string, ok bool) {
	if rest, found := strings.CutPrefix(path, "/v1beta/"); found {
		op, pathModel, ok = routeGemini(method, rest)
		return DialectGemini, op, pathModel, ok
	}
	if strings.HasPrefix(path, "/v1/models/") && strings.ContainsRune(path, ':') {
		op, pathModel, ok = routeGemini(method, path[len("/v1/"):])
		return DialectGemini, op, pathModel, ok
	}
	switch path {
	case "/v1/messages":
		return DialectAnthropic, OpMessages, "", method == http.MethodPost
	case "/v1/messages/count_tokens":
		return DialectAnthropic, OpCountTokens, "", method == http.MethodPost
	}
	if strings.HasPrefix(path, "/v1/messages/") {
		return DialectAnthropic, 0, "", false
	}
	rest := strings.TrimPrefix(path, "/v1")
	post := method == http.MethodPost
	switch rest {
	case "/chat/completions":
		return DialectOpenAI, OpChatCompletions, "", post
	case "/completions":
		return DialectOpenAI, OpCompletions, "", post
	case "/embeddings":
		return DialectOpenAI, OpEmbeddings, "", post
	case "/responses":
		return DialectOpenAI, OpResponses, "", post
	case "/models":
		return DialectOpenAI, OpListModels, "", method == http.MethodGet
	}
	if m, found := strings.CutPrefix(rest, "/models/"); found && validPathModel(m) {
		return DialectOpenAI, OpListModels, m, method == http.MethodGet
	}
	return DialectOpenAI, 0, "", false
}

// routeGemini routes the part of a Gemini path after the version: "models",
// "models/{model}" or "models/{model}:{method}".
func routeGemini(method, rest string) (Operation, string, bool) {
	if rest == "models" {
		return OpListModels, "", method == http.MethodGet
	}
	m, found := strings.CutPrefix(rest, "models/")
	if !found {
		return 0, "", false
	}
	model, verb, hasVerb := strings.Cut(m, ":")
	if !validPathModel(model) {
		return 0, "", false
	}
	if !hasVerb {
		return OpListModels, model, method == http.MethodGet
	}
	post := method == http.MethodPost
	switch verb {
	case "generateContent":
		return OpGenerateContent, model, post
	case "streamGenerateContent":
		return OpStreamGenerateContent, model, post
	case "countTokens":
		return OpGeminiCountTokens, model, post
	}
	return 0, "", false
}

// validPathModel accepts a model name as one path segment: non-empty, not a dot
// segment, no slash, no colon, printable ASCII only, bounded. Model names are all of
// that; anything else is a probe, and echoing it into logs or upstream URLs is not
// worth the risk (the upstream resolves "/models/.." to another resource, with the
// account's key).
func validPathModel(m string) bool {
	if m == "" || m == "." || m == ".." || len(m) > 256 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == ':' || c == '?' || c == '#' || c == '%' {
			return false
		}
	}
	return true
}
