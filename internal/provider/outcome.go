package provider

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// Outcome classifies an upstream response for the limiter's retry, breaker and
// fallback decisions.
type Outcome struct {
	// Kind is "" for success (2xx); else a limiterconfig.Failure* kind, or
	// KindClientError for a 4xx that is the request's own fault.
	Kind string
	// Retryable follows the table "Errors the sidecar tells apart" in
	// docs/ARCHITECTURE.md.
	Retryable bool
	// RetryAfter is the provider's advice on when to try again, from (first
	// found) retry-after-ms, retry-after, Gemini's google.rpc.RetryInfo, the
	// "try again in 6.5s" that OpenAI and Gemini put in 429 messages, or, for a
	// 429, the reset of a rate-limit window the headers report as exhausted.
	RetryAfter    time.Duration
	HasRetryAfter bool
	// Code is the provider's error code or type: OpenAI error.code (else
	// error.type), Anthropic error.type, Gemini error.status; e.g.
	// rate_limit_exceeded, insufficient_quota, context_length_exceeded,
	// overloaded_error, RESOURCE_EXHAUSTED.
	Code string
}

// KindClientError is the Outcome.Kind of a 4xx that retrying cannot fix (400, 401,
// 403, 404, 413, 422...): the limiter hands it back to the app unchanged.
const KindClientError = "clientError"

// MaxRetryAfter bounds every delay parsed here; longer advice is read as this.
// No retry policy waits a day, and the bound keeps arithmetic far from overflow.
const MaxRetryAfter = 24 * time.Hour

// maxErrorField bounds the code and message taken from an error body.
const (
	maxCodeBytes    = 64
	maxMessageBytes = 512
)

// Classify classifies an upstream response by status, headers and (a prefix of)
// its body, following docs/ARCHITECTURE.md's error table and the error shapes in
// docs/providers.md:
//
//	429 rate limit                          -> rateLimited, retryable
//	429 insufficient_quota, 402, Anthropic
//	  "credit balance is too low"           -> quotaExhausted, not retryable
//	503, 529 (Anthropic overloaded)         -> unavailable, retryable
//	500, 502, 504 and other 5xx             -> serverError, retryable
//	408                                     -> timeout, retryable
//	4xx saying the prompt is over the model's context window (OpenAI
//	  context_length_exceeded, Anthropic "prompt is too long", Gemini "input
//	  token count ... exceeds")             -> contextLengthExceeded, not retryable
//	other 4xx, and 1xx/3xx                  -> clientError, not retryable
//
// body may be truncated: fields that lie wholly inside the prefix still count.
func Classify(providerType string, status int, h http.Header, body []byte, now time.Time) Outcome {
	if status >= 200 && status < 300 {
		return Outcome{}
	}
	d := DialectOf(providerType)
	pe := parseProviderError(d, body)
	o := Outcome{Code: pe.code}
	switch {
	case status == http.StatusTooManyRequests:
		if isQuotaExhausted(pe) {
			o.Kind = limiterconfig.FailureQuotaExhausted
		} else {
			o.Kind, o.Retryable = limiterconfig.FailureRateLimited, true
		}
	case status == http.StatusPaymentRequired:
		o.Kind = limiterconfig.FailureQuotaExhausted
	case status == http.StatusServiceUnavailable || status == 529:
		o.Kind, o.Retryable = limiterconfig.FailureUnavailable, true
	case status == http.StatusRequestTimeout:
		o.Kind, o.Retryable = limiterconfig.FailureTimeout, true
	case status >= 500 && status < 600:
		o.Kind, o.Retryable = limiterconfig.FailureServerError, true
	case status >= 400 && status < 500 && isContextLength(pe):
		o.Kind = limiterconfig.FailureContextLengthExceeded
	case status >= 400 && status < 500 && isQuotaExhausted(pe):
		o.Kind = limiterconfig.FailureQuotaExhausted
	default:
		o.Kind = KindClientError
	}
	if d, ok := ParseRetryAfter(h, now); ok {
		o.RetryAfter, o.HasRetryAfter = d, true
	} else if d, ok := ParseResetDuration(pe.retryDelay); ok {
		o.RetryAfter, o.HasRetryAfter = min(d, MaxRetryAfter), true
	} else if d, ok := retryHint(pe.message); ok {
		o.RetryAfter, o.HasRetryAfter = d, true
	} else if status == http.StatusTooManyRequests {
		if d, ok := ParseRateLimits(providerType, h, now).exhaustedReset(); ok {
			o.RetryAfter, o.HasRetryAfter = min(d, MaxRetryAfter), true
		}
	}
	return o
}

// providerError is what an error body says, in any dialect.
type providerError struct {
	code, typ, message, retryDelay string
}

func isQuotaExhausted(pe providerError) bool {
	switch pe.code {
	case "insufficient_quota", "billing_hard_limit_reached", "insufficient_balance":
		return true
	}
	return containsFold(pe.message, "credit balance is too low")
}

func isContextLength(pe providerError) bool {
	if pe.code == "context_length_exceeded" || pe.typ == "context_length_exceeded" {
		return true
	}
	m := pe.message
	return containsFold(m, "maximum context length") || // OpenAI, DeepSeek, vLLM
		containsFold(m, "context_length_exceeded") ||
		containsFold(m, "prompt is too long") || // Anthropic
		containsFold(m, "exceed context limit") || // Anthropic, input + max_tokens
		containsFold(m, "context window") ||
		(containsFold(m, "input token count") && containsFold(m, "exceeds the maximum")) // Gemini
}

// containsFold is a case-insensitive substring test for an ASCII needle.
func containsFold(s, needle string) bool {
	n := len(needle)
	for i := 0; i+n <= len(s); i++ {
		if strings.EqualFold(s[i:i+n], needle) {
			return true
		}
	}
	return false
}

// parseProviderError reads the error members of a body in any dialect:
// {"error":{"message","type","code"}} (OpenAI; "code" may be a number on
// compatible servers), {"type":"error","error":{"type","message"}} (Anthropic),
// {"error":{"code","message","status","details"}} (Gemini, also wrapped in an
// array), {"error":"text"} or top-level {"message","type","code"} (compatible
// servers). A truncated body falls back to finding the members by name.
func parseProviderError(d Dialect, body []byte) providerError {
	var pe providerError
	obj := body
	if i := skipSpace(body, 0); i < len(body) && body[i] == '[' {
		eachElement(body, func(_ int, e []byte) bool {
			obj = e
			return false
		})
	}
	var top providerError // members beside "error", for servers that send no "error"
	found := false
	eachMember(obj, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "error"):
			found = true
			if kindOf(v) == kindString {
				pe.message, _ = stringValue(v)
				return true
			}
			pe.readErrorObject(v)
		default:
			top.readMember(k, esc, v)
		}
		return true
	})
	if !found || pe == (providerError{}) {
		// No complete "error" member: a server that puts its fields at the top
		// level, or a body cut short inside the error object.
		pe = scanProviderError(body)
		if pe.message == "" {
			pe.message = top.message
		}
		if pe.code == "" {
			pe.code = top.code
		}
		if pe.typ == "" {
			pe.typ = top.typ
		}
	}
	pe.normalize(d)
	return pe
}

// parseErrorObject reads a bare error object ({"type","message"} or
// {"code","message","status"}), as found inside stream events.
func parseErrorObject(d Dialect, obj []byte) providerError {
	var pe providerError
	pe.readErrorObject(obj)
	pe.normalize(d)
	return pe
}

// normalize picks the dialect's code (OpenAI error.code else error.type,
// Anthropic error.type, Gemini error.status) and bounds what came from the body.
func (pe *providerError) normalize(d Dialect) {
	switch d {
	case DialectAnthropic:
		pe.code = pe.typ
	case DialectGemini:
		if pe.typ != "" {
			pe.code = pe.typ
		}
	default:
		if pe.code == "" {
			pe.code = pe.typ
		}
	}
	pe.code = truncateString(pe.code, maxCodeBytes)
	pe.message = truncateString(pe.message, maxMessageBytes)
}

// readErrorObject reads an "error" object; Gemini's "status" is kept as typ.
func (pe *providerError) readErrorObject(v []byte) {
	eachMember(v, func(k []byte, esc bool, f []byte) bool {
		switch {
		case keyIs(k, esc, "status"), keyIs(k, esc, "type"):
			if kindOf(f) == kindString {
				pe.typ, _ = stringValue(f)
			}
		case keyIs(k, esc, "details"):
			eachElement(f, func(_ int, detail []byte) bool {
				eachMember(detail, func(k []byte, esc bool, rd []byte) bool {
					if keyIs(k, esc, "retryDelay") {
						pe.retryDelay, _ = stringValue(rd)
					}
					return true
				})
				return true
			})
		default:
			pe.readMember(k, esc, f)
		}
		return true
	})
}

func (pe *providerError) readMember(k []byte, esc bool, v []byte) {
	switch {
	case keyIs(k, esc, "message"):
		pe.message, _ = stringValue(v)
	case keyIs(k, esc, "type"):
		if pe.typ == "" {
			pe.typ, _ = stringValue(v)
		}
	case keyIs(k, esc, "code"):
		switch kindOf(v) {
		case kindString:
			pe.code, _ = stringValue(v)
		case kindNumber:
			// Gemini's and some compatible servers' code is the HTTP status,
			// which says nothing the status line does not.
		}
	}
}

// scanProviderError finds error members by name anywhere in a body that does not
// parse, typically because the limiter read only a prefix of it.
func scanProviderError(body []byte) providerError {
	var pe providerError
	pe.message = findStringMember(body, "message")
	pe.code = findStringMember(body, "code")
	pe.typ = findStringMember(body, "status")
	if pe.typ == "" {
		// Anthropic's outer "type" is "error"; the error's own type follows it.
		for rest := body; ; {
			t, next := findStringMemberFrom(rest, "type")
			if t == "" {
				break
			}
			if t != "error" {
				pe.typ = t
				break
			}
			rest = next
		}
	}
	pe.retryDelay = findStringMember(body, "retryDelay")
	return pe
}

func findStringMember(body []byte, name string) string {
	s, _ := findStringMemberFrom(body, name)
	return s
}

// findStringMemberFrom finds the first `"name": "value"` with a complete string
// value and returns the value and the rest of body after it.
func findStringMemberFrom(body []byte, name string) (string, []byte) {
	key := make([]byte, 0, len(name)+2)
	key = append(append(append(key, '"'), name...), '"')
	for {
		i := bytes.Index(body, key)
		if i < 0 {
			return "", nil
		}
		body = body[i+len(key):]
		j := skipSpace(body, 0)
		if j >= len(body) || body[j] != ':' {
			continue
		}
		j = skipSpace(body, j+1)
		end, _, ok := skipString(body, j)
		if !ok {
			continue
		}
		s, _ := stringValue(body[j:end])
		if s != "" {
			return s, body[end:]
		}
		body = body[end:]
	}
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// retryHint reads the delay from messages such as OpenAI's "Please try again in
// 6.5s." and Gemini's "Please retry in 10h17m5.72s.".
func retryHint(message string) (time.Duration, bool) {
	for _, marker := range []string{"try again in ", "retry in "} {
		i := strings.Index(message, marker)
		if i < 0 {
			continue
		}
		rest := message[i+len(marker):]
		end := 0
		for end < len(rest) && strings.IndexByte("0123456789.hmsun", rest[end]) >= 0 {
			end++
		}
		if d, ok := ParseResetDuration(strings.TrimRight(rest[:end], ".")); ok && strings.ContainsAny(rest[:end], "hms") {
			return min(d, MaxRetryAfter), true
		}
	}
	return 0, false
}

// ParseRetryAfter reads the provider's advice on when to retry: retry-after-ms
// (milliseconds, which OpenAI's and Anthropic's SDKs honour first) wins over
// Retry-After, which is seconds or an HTTP date (RFC 9110 section 10.2.3). A date
// in the past means now (0, true). Negative, fractional-date and garbage values are
// ignored; delays beyond MaxRetryAfter read as MaxRetryAfter.
func ParseRetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, ok := parseDecimal(v); ok {
			return durationOf(ms, float64(time.Millisecond)), true
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, ok := parseDecimal(v); ok {
		return durationOf(s, float64(time.Second)), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	return min(max(d, 0), MaxRetryAfter), true
}

// parseDecimal reads a non-negative decimal number ("12", "1.5"); no sign, no
// exponent, no hex, no Inf or NaN, unlike strconv.ParseFloat.
func parseDecimal(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 32 {
		return 0, false
	}
	dot := false
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			return 0, false
		}
	}
	if digits == 0 {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// durationOf converts n units to a duration, clamped to [0, MaxRetryAfter].
func durationOf(n, unit float64) time.Duration {
	d := n * unit
	if d >= float64(MaxRetryAfter) {
		return MaxRetryAfter
	}
	return max(time.Duration(d), 0)
}

// ParseResetDuration reads a rate-limit reset such as OpenAI's "1s", "6m0s",
// "20ms", "1h2m3.5s" (a Go duration: the time until the window is full again,
// platform.openai.com/docs/guides/rate-limits "Rate limits in headers") or
// Gemini's RetryInfo.retryDelay ("30s", "1.5s": google.protobuf.Duration in JSON).
// A bare number is read as seconds, as Azure OpenAI sends. Empty, negative and
// garbage values give false.
func ParseResetDuration(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return 0, false
	}
	if n, ok := parseDecimal(s); ok {
		if n*float64(time.Second) >= float64(1<<63-1) {
			return 0, false
		}
		return time.Duration(n * float64(time.Second)), true
	}
	if s[0] == '-' || s[0] == '+' {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}
