package provider

import (
	"net/http"
	"net/url"
	"strings"
)

// credentialHeaders are every header through which an app may have sent a key
// (OpenAI and DeepSeek Bearer; Anthropic x-api-key, or Bearer from the 1.x SDKs;
// Gemini x-goog-api-key; Azure OpenAI api-key), plus the OpenAI organization and
// project headers, which bind a request to the app's account and make the
// provider refuse the sidecar's key ("mismatched_organization").
var credentialHeaders = []string{
	"Authorization", "Proxy-Authorization", "X-Api-Key", "X-Goog-Api-Key", "Api-Key",
	"Openai-Organization", "Openai-Project",
}

// AnthropicVersion is sent when the app names no API version: the only version
// Anthropic has published for the Messages API (docs.claude.com/en/api/versioning).
const AnthropicVersion = "2023-06-01"

// ApplyAuth removes whatever credentials the app sent — the headers above and the
// key= query parameter Gemini accepts — and sets the provider's own: a Bearer
// token for OpenAI-dialect providers, x-api-key (plus anthropic-version when the
// app sent none) for Anthropic, x-goog-api-key for Gemini. Surrounding whitespace
// is trimmed from key, since mounted secret files often end in a newline that
// would make the header invalid. An empty key only removes. query may be nil.
func ApplyAuth(h http.Header, query url.Values, providerType, key string) {
	for _, name := range credentialHeaders {
		h.Del(name)
	}
	if query != nil {
		query.Del("key")
	}
	key = strings.TrimSpace(key)
	d := DialectOf(providerType)
	if d == DialectAnthropic && h.Get("Anthropic-Version") == "" {
		h.Set("Anthropic-Version", AnthropicVersion)
	}
	if key == "" {
		return
	}
	switch d {
	case DialectAnthropic:
		h.Set("X-Api-Key", key)
	case DialectGemini:
		h.Set("X-Goog-Api-Key", key)
	default:
		h.Set("Authorization", "Bearer "+key)
	}
}
