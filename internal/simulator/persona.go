package simulator

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// errKind is what went wrong, independent of how a persona spells it.
type errKind int

const (
	kindInvalidJSON   errKind = iota // the body is not a JSON object
	kindInvalidParam                 // a field is missing, of the wrong type or out of range
	kindAuthMissing                  // no credentials the persona accepts
	kindAuthInvalid                  // credentials that match no account
	kindNotFound                     // unknown route or model
	kindTooLarge                     // body over maxBodyBytes
	kindContextLength                // prompt + max output over the model's window
	kindRateLimit                    // a bucket, daily cap or concurrency limit refused
	kindQuota                        // billing exhausted (injected)
	kindServer                       // 500, 502, 504 (injected)
	kindUnavailable                  // 503, 529: outage or injected overload
)

// apiError is a refusal before any response byte was sent.
type apiError struct {
	kind    errKind
	status  int    // the status for personas that use the conventional one
	message string // persona-neutral detail; personas may phrase their own
	param   string // the offending field, for personas that report it
	code    string // an OpenAI-style error code, when it differs from the kind's default
	// For kindRateLimit: the binding limit and the model.
	verdict verdict
	model   string
	// fault names an injected fault; it is sent as the x-sim-fault header so that
	// tests can tell injected failures from limit refusals without parsing bodies.
	fault string
}

func invalidParam(param, format string, args ...any) *apiError {
	return &apiError{kind: kindInvalidParam, status: http.StatusBadRequest, param: param, message: fmt.Sprintf(format, args...)}
}

// authMethod is where a request carried its key.
type authMethod int

const (
	authBearer     authMethod = iota // Authorization: Bearer
	authXAPIKey                      // x-api-key
	authGoogHeader                   // x-goog-api-key
	authQuery                        // ?key=
)

// persona is a provider's wire dialect for everything that is not a route's body:
// auth, errors, rate-limit headers, request ids.
type persona interface {
	accepts(authMethod) bool
	writeError(w http.ResponseWriter, e *apiError)
	setRateHeaders(h http.Header, v rateView, now time.Time)
	requestIDHeader() string
}

func personaFor(provider string) persona {
	switch provider {
	case ProviderAnthropic:
		return anthropicPersona{}
	case ProviderGemini:
		return geminiPersona{}
	case ProviderDeepSeek:
		return openaiPersona{deepseek: true}
	}
	return openaiPersona{}
}

// retryAfterSeconds is the Retry-After value: whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		// Only our own response structs reach here; they always marshal.
		http.Error(w, "simulator: encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func setFaultHeader(w http.ResponseWriter, e *apiError) {
	if e.fault != "" {
		w.Header().Set("x-sim-fault", e.fault)
	}
}

// --- OpenAI and DeepSeek ---

type openaiPersona struct{ deepseek bool }

func (p openaiPersona) accepts(m authMethod) bool { return m == authBearer }

func (p openaiPersona) requestIDHeader() string { return "x-request-id" }

type openaiErrorBody struct {
	Error openaiError `json:"error"`
}

type openaiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// openaiRateNames names a refusal reason the way OpenAI's 429 messages do.
var openaiRateNames = map[string][2]string{ // reason -> error type, message wording
	ReasonRPM:         {"requests", "requests per min (RPM)"},
	ReasonTPM:         {"tokens", "tokens per min (TPM)"},
	ReasonITPM:        {"tokens", "input tokens per min (ITPM)"},
	ReasonOTPM:        {"tokens", "output tokens per min (OTPM)"},
	ReasonDaily:       {"tokens", "per day limit"},
	ReasonConcurrency: {"requests", "concurrent requests"},
}

func (p openaiPersona) writeError(w http.ResponseWriter, e *apiError) {
	setFaultHeader(w, e)
	status, typ, code, msg := e.status, "invalid_request_error", e.code, e.message
	switch e.kind {
	case kindInvalidParam:
		if p.deepseek {
			status = http.StatusUnprocessableEntity // DeepSeek: 422 Invalid Parameters
		}
	case kindAuthMissing:
		status = http.StatusUnauthorized
		msg = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
	case kindAuthInvalid:
		status, code = http.StatusUnauthorized, "invalid_api_key"
		msg = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
		if p.deepseek {
			typ, code, msg = "authentication_error", "invalid_request_error", "Authentication Fails, your api key is invalid"
		}
	case kindContextLength:
		code = "context_length_exceeded"
	case kindRateLimit:
		v := e.verdict
		names := openaiRateNames[v.reason]
		typ, code = names[0], "rate_limit_exceeded"
		switch {
		case v.limit == 0:
			msg = fmt.Sprintf("Rate limit reached for %s in organization org-sim. Please try again in %s.", e.model, goDuration(v.retryAfter))
		case v.tooLarge:
			msg = fmt.Sprintf("Request too large for %s in organization org-sim on %s: Limit %d, Requested %d. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.",
				e.model, names[1], v.limit, v.requested)
		default:
			msg = fmt.Sprintf("Rate limit reached for %s in organization org-sim on %s: Limit %d, Used %d, Requested %d. Please try again in %s. Visit https://platform.openai.com/account/rate-limits to learn more.",
				e.model, names[1], v.limit, v.used, v.requested, goDuration(v.retryAfter))
		}
		w.Header().Set("retry-after", strconv.FormatInt(retryAfterSeconds(v.retryAfter), 10))
		if !p.deepseek {
			w.Header().Set("retry-after-ms", strconv.FormatInt(max(1, v.retryAfter.Milliseconds()), 10))
		}
	case kindQuota:
		if p.deepseek {
			status, code, msg = http.StatusPaymentRequired, "insufficient_balance", "Insufficient Balance"
		} else {
			status, typ, code = http.StatusTooManyRequests, "insufficient_quota", "insufficient_quota"
			msg = "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
		}
	case kindServer:
		typ, msg = "server_error", "The server had an error while processing your request. Sorry about that!"
	case kindUnavailable:
		typ, msg = "server_error", "The engine is currently overloaded, please try again later."
		if p.deepseek {
			msg = "Server Overloaded"
		}
	}
	writeJSON(w, status, openaiErrorBody{Error: openaiError{Message: msg, Type: typ, Param: optional(e.param), Code: optional(code)}})
}

// goDuration formats a wait the way OpenAI's headers do ("6m0s", "1s", "20ms"):
// rounded up to the millisecond, so that waiting that long is always enough.
func goDuration(d time.Duration) string {
	return (d + time.Millisecond - 1).Truncate(time.Millisecond).String()
}

func (p openaiPersona) setRateHeaders(h http.Header, v rateView, _ time.Time) {
	set := func(name string, b bucketView) {
		if b.Limit == 0 {
			return
		}
		h.Set("x-ratelimit-limit-"+name, strconv.FormatInt(b.Limit, 10))
		h.Set("x-ratelimit-remaining-"+name, strconv.FormatInt(b.Remaining, 10))
		h.Set("x-ratelimit-reset-"+name, goDuration(b.Reset))
	}
	set("requests", v.Requests)
	set("tokens", v.Tokens)
}

// --- Anthropic ---

type anthropicPersona struct{}

func (anthropicPersona) accepts(m authMethod) bool { return m == authXAPIKey || m == authBearer }

func (anthropicPersona) requestIDHeader() string { return "request-id" }

type anthropicErrorBody struct {
	Type  string         `json:"type"`
	Error anthropicError `json:"error"`
}

type anthropicError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

var anthropicRateNames = map[string]string{
	ReasonRPM:         "requests per minute",
	ReasonTPM:         "tokens per minute",
	ReasonITPM:        "input tokens per minute",
	ReasonOTPM:        "output tokens per minute",
	ReasonDaily:       "tokens per day",
	ReasonConcurrency: "concurrent connections",
}

func (anthropicPersona) writeError(w http.ResponseWriter, e *apiError) {
	setFaultHeader(w, e)
	status, typ, msg := e.status, "invalid_request_error", e.message
	switch e.kind {
	case kindAuthMissing:
		status, typ, msg = http.StatusUnauthorized, "authentication_error", "x-api-key header is required"
	case kindAuthInvalid:
		status, typ, msg = http.StatusUnauthorized, "authentication_error", "invalid x-api-key"
	case kindNotFound:
		typ = "not_found_error"
	case kindTooLarge:
		typ = "request_too_large"
	case kindRateLimit:
		v := e.verdict
		typ = "rate_limit_error"
		msg = "Number of requests has exceeded your rate limit. Please try again later."
		if v.limit > 0 {
			msg = fmt.Sprintf("This request would exceed the rate limit for your organization of %d %s. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.",
				v.limit, anthropicRateNames[v.reason])
		}
		w.Header().Set("retry-after", strconv.FormatInt(retryAfterSeconds(v.retryAfter), 10))
	case kindQuota:
		status = http.StatusBadRequest
		msg = "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."
	case kindServer:
		typ, msg = "api_error", "Internal server error"
	case kindUnavailable:
		typ, msg = "overloaded_error", "Overloaded"
	}
	writeJSON(w, status, anthropicErrorBody{Type: "error", Error: anthropicError{Type: typ, Message: msg}})
}

func (anthropicPersona) setRateHeaders(h http.Header, v rateView, now time.Time) {
	set := func(name string, b bucketView) {
		if b.Limit == 0 {
			return
		}
		h.Set("anthropic-ratelimit-"+name+"-limit", strconv.FormatInt(b.Limit, 10))
		h.Set("anthropic-ratelimit-"+name+"-remaining", strconv.FormatInt(b.Remaining, 10))
		// RFC 3339 to the second, rounded up so that the bucket is full by then.
		h.Set("anthropic-ratelimit-"+name+"-reset", now.Add(b.Reset+time.Second-1).UTC().Truncate(time.Second).Format(time.RFC3339))
	}
	set("requests", v.Requests)
	set("input-tokens", v.InputTokens)
	set("output-tokens", v.OutputTokens)
	// The tokens headers show the most restrictive token limit in effect.
	tokens := v.Tokens
	for _, b := range []bucketView{v.InputTokens, v.OutputTokens} {
		if b.Limit != 0 && (tokens.Limit == 0 || b.Remaining < tokens.Remaining) {
			tokens = b
		}
	}
	set("tokens", tokens)
}

// --- Gemini ---

type geminiPersona struct{}

func (geminiPersona) accepts(m authMethod) bool { return m == authGoogHeader || m == authQuery }

func (geminiPersona) requestIDHeader() string { return "" }

type geminiErrorBody struct {
	Error geminiError `json:"error"`
}

type geminiError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Status  string          `json:"status"`
	Details []geminiDetails `json:"details,omitempty"`
}

type geminiDetails struct {
	Type       string            `json:"@type"`
	Reason     string            `json:"reason,omitempty"`
	Domain     string            `json:"domain,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	Violations []geminiViolation `json:"violations,omitempty"`
	RetryDelay string            `json:"retryDelay,omitempty"`
}

type geminiViolation struct {
	QuotaMetric string `json:"quotaMetric"`
	QuotaID     string `json:"quotaId"`
	QuotaValue  string `json:"quotaValue"`
}

var geminiQuotaIDs = map[string][2]string{ // reason -> metric, id
	ReasonRPM:         {"generativelanguage.googleapis.com/generate_content_requests", "GenerateRequestsPerMinutePerProjectPerModel"},
	ReasonTPM:         {"generativelanguage.googleapis.com/generate_content_input_token_count", "GenerateContentInputTokensPerModelPerMinute"},
	ReasonITPM:        {"generativelanguage.googleapis.com/generate_content_input_token_count", "GenerateContentInputTokensPerModelPerMinute"},
	ReasonOTPM:        {"generativelanguage.googleapis.com/generate_content_output_token_count", "GenerateContentOutputTokensPerModelPerMinute"},
	ReasonDaily:       {"generativelanguage.googleapis.com/generate_content_requests", "GenerateRequestsPerDayPerProjectPerModel"},
	ReasonConcurrency: {"generativelanguage.googleapis.com/generate_content_requests", "GenerateConcurrentRequestsPerProjectPerModel"},
}

func (geminiPersona) writeError(w http.ResponseWriter, e *apiError) {
	setFaultHeader(w, e)
	ge := geminiError{Code: e.status, Message: e.message, Status: "INVALID_ARGUMENT"}
	switch e.kind {
	case kindInvalidJSON, kindTooLarge:
		// Google's front end answers an oversized payload with 400, not 413.
		ge.Code = http.StatusBadRequest
	case kindAuthMissing:
		ge.Code, ge.Status = http.StatusForbidden, "PERMISSION_DENIED"
		ge.Message = "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."
	case kindAuthInvalid:
		// Gemini answers a wrong key with 400 INVALID_ARGUMENT and reason API_KEY_INVALID.
		ge.Code, ge.Message = http.StatusBadRequest, "API key not valid. Please pass a valid API key."
		ge.Details = []geminiDetails{{Type: "type.googleapis.com/google.rpc.ErrorInfo", Reason: "API_KEY_INVALID", Domain: "googleapis.com",
			Metadata: map[string]string{"service": "generativelanguage.googleapis.com"}}}
	case kindNotFound:
		ge.Status = "NOT_FOUND"
	case kindRateLimit:
		v := e.verdict
		ids := geminiQuotaIDs[v.reason]
		ge.Status = "RESOURCE_EXHAUSTED"
		ge.Message = fmt.Sprintf("You exceeded your current quota, please check your plan and billing details. Quota exceeded for metric: %s, limit: %d, model: %s. Please retry in %s.",
			ids[0], v.limit, e.model, goDuration(v.retryAfter))
		if v.limit > 0 {
			ge.Details = append(ge.Details, geminiDetails{Type: "type.googleapis.com/google.rpc.QuotaFailure",
				Violations: []geminiViolation{{QuotaMetric: ids[0], QuotaID: ids[1], QuotaValue: strconv.FormatInt(v.limit, 10)}}})
		} else {
			ge.Message = "Resource has been exhausted (e.g. check quota)."
		}
		ge.Details = append(ge.Details, geminiDetails{Type: "type.googleapis.com/google.rpc.RetryInfo",
			RetryDelay: strconv.FormatInt(retryAfterSeconds(v.retryAfter), 10) + "s"})
	case kindQuota:
		ge.Code, ge.Status = http.StatusTooManyRequests, "RESOURCE_EXHAUSTED"
		ge.Message = "You exceeded your current quota, please check your plan and billing details."
	case kindServer:
		ge.Status, ge.Message = "INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
		switch e.status {
		case http.StatusBadGateway:
			ge.Status = "UNAVAILABLE"
		case http.StatusGatewayTimeout:
			ge.Status = "DEADLINE_EXCEEDED"
		}
	case kindUnavailable:
		ge.Status, ge.Message = "UNAVAILABLE", "The model is overloaded. Please try again later."
	}
	writeJSON(w, ge.Code, geminiErrorBody{Error: ge})
}

// setRateHeaders: Gemini sends no rate-limit headers.
func (geminiPersona) setRateHeaders(http.Header, rateView, time.Time) {}
