package provider

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error is an error the sidecar itself answers with, in the caller's dialect.
type Error struct {
	// Status is the HTTP status; anything outside 400..599 is written as 500.
	Status int
	// Code is a machine-readable reason, e.g. rate_limit_exceeded,
	// context_length_exceeded, circuit_open, queue_timeout, request_too_large,
	// invalid_request.
	Code string
	// Param names the offending request field, if any.
	Param string
	// Message says what happened and what to do: which limit, how long to wait.
	Message string
	// RetryAfter, when positive, is sent as Retry-After (whole seconds, rounded
	// up) and retry-after-ms, which the official SDKs honour.
	RetryAfter time.Duration
}

// Wire shapes. Field order is fixed so that output is deterministic.
type (
	openAIErrorBody struct {
		Error openAIErrorObject `json:"error"`
	}
	openAIErrorObject struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}
	anthropicErrorBody struct {
		Type  string               `json:"type"`
		Error anthropicErrorObject `json:"error"`
	}
	anthropicErrorObject struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	geminiErrorBody struct {
		Error geminiErrorObject `json:"error"`
	}
	geminiErrorObject struct {
		Code    int            `json:"code"`
		Message string         `json:"message"`
		Status  string         `json:"status"`
		Details []geminiDetail `json:"details,omitempty"`
	}
	// geminiDetail is a google.rpc detail: RetryInfo carries RetryDelay, ErrorInfo
	// Reason and Domain (cloud.google.com/apis/design/errors).
	geminiDetail struct {
		Type       string `json:"@type"`
		RetryDelay string `json:"retryDelay,omitempty"`
		Reason     string `json:"reason,omitempty"`
		Domain     string `json:"domain,omitempty"`
	}
)

// ErrorDomain is the google.rpc.ErrorInfo domain of the sidecar's Gemini errors.
const ErrorDomain = "aiquota.dev"

// WriteError writes e as the dialect's error JSON, with Content-Type
// application/json and, when RetryAfter is positive, Retry-After and
// retry-after-ms. Shapes:
//
//	OpenAI    {"error":{"message","type","param","code"}}
//	Anthropic {"type":"error","error":{"type","message"}} with the type for the
//	          status (docs.claude.com/en/api/errors)
//	Gemini    {"error":{"code","message","status","details"}} with the
//	          google.rpc.Code name for the status, a RetryInfo detail carrying the
//	          delay and an ErrorInfo detail carrying Code.
//
// An unknown dialect gets the OpenAI shape, the one most clients parse.
func WriteError(w http.ResponseWriter, d Dialect, e *Error) {
	status, body := ErrorBody(d, e)
	body = append(body, '\n')
	h := w.Header()
	h.Del("Content-Encoding")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	if e != nil && e.RetryAfter > 0 {
		secs := (e.RetryAfter + time.Second - 1) / time.Second
		ms := (e.RetryAfter + time.Millisecond - 1) / time.Millisecond
		h.Set("Retry-After", strconv.FormatInt(int64(secs), 10))
		h.Set("Retry-After-Ms", strconv.FormatInt(int64(ms), 10))
	}
	w.WriteHeader(status)
	_, _ = w.Write(body) // the app hung up; nothing left to tell it
}

// ErrorBody is the status and JSON body WriteError sends for e, for callers that
// put the error somewhere else (a translated stream carries it as an event).
func ErrorBody(d Dialect, e *Error) (status int, body []byte) {
	if e == nil {
		e = &Error{}
	}
	status = e.Status
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(status)
		if msg == "" {
			msg = "error"
		}
	}
	var v any
	switch d {
	case DialectAnthropic:
		v = anthropicErrorBody{Type: "error", Error: anthropicErrorObject{Type: anthropicErrorType(status), Message: msg}}
	case DialectGemini:
		g := geminiErrorObject{Code: status, Message: msg, Status: googleStatus(status)}
		if e.RetryAfter > 0 {
			g.Details = append(g.Details, geminiDetail{
				Type:       "type.googleapis.com/google.rpc.RetryInfo",
				RetryDelay: strconv.FormatFloat(e.RetryAfter.Seconds(), 'f', -1, 64) + "s",
			})
		}
		if e.Code != "" {
			g.Details = append(g.Details, geminiDetail{
				Type:   "type.googleapis.com/google.rpc.ErrorInfo",
				Reason: strings.ToUpper(e.Code),
				Domain: ErrorDomain,
			})
		}
		v = geminiErrorBody{Error: g}
	default:
		o := openAIErrorObject{Message: msg, Type: openAIErrorType(status)}
		if e.Param != "" {
			o.Param = &e.Param
		}
		if e.Code != "" {
			o.Code = &e.Code
		}
		v = openAIErrorBody{Error: o}
	}
	body, err := json.Marshal(v)
	if err != nil {
		// Only strings and ints go in; Marshal cannot fail on them.
		body = []byte(`{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}`)
	}
	return status, body
}

// openAIErrorType follows the types OpenAI's own errors carry.
func openAIErrorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func anthropicErrorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusServiceUnavailable, 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// googleStatus maps an HTTP status to its google.rpc.Code name, as Google APIs do
// (cloud.google.com/apis/design/errors, "Handling errors").
func googleStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusConflict:
		return "ABORTED"
	case http.StatusPreconditionFailed:
		return "FAILED_PRECONDITION"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case 499:
		return "CANCELLED"
	case http.StatusNotImplemented:
		return "UNIMPLEMENTED"
	case http.StatusServiceUnavailable, 529:
		return "UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	}
	if status >= 500 {
		return "INTERNAL"
	}
	return "FAILED_PRECONDITION"
}
