package translate

import (
	"fmt"
	"net/http"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
)

// Error translates an upstream error answer into the error the app's dialect
// expects; see UpstreamError.
func (t *Translation) Error(status int, body []byte, o provider.Outcome) *provider.Error {
	return UpstreamError(t.app, t.providerType, status, body, o)
}

// UpstreamError is the error an app speaking dialect app gets for an upstream
// error answer of a provider of providerType, for provider.WriteError(w, app, e):
// the answer of a translated request, or of any entry a chain fell over from.
// status and body are the upstream's (the body may be the prefix the proxy read);
// o is provider.Classify's outcome for them. The status is kept, except
// Anthropic's 529 (overloaded), which other dialects' SDKs know as 503. The code
// says the failure in the words the app's SDK and code look for
// (rate_limit_exceeded, insufficient_quota, context_length_exceeded), else it is
// the upstream's own code; the message is the upstream's; o.RetryAfter becomes
// the app's Retry-After.
func UpstreamError(app provider.Dialect, providerType string, status int, body []byte, o provider.Outcome) *provider.Error {
	msg := provider.ErrorMessage(provider.DialectOf(providerType), body)
	if msg == "" {
		msg = fmt.Sprintf("%s answered HTTP %d", providerType, status)
	}
	switch {
	case status == 529 && app != provider.DialectAnthropic:
		status = http.StatusServiceUnavailable
	case status < 400 || status > 599:
		status = http.StatusBadGateway
	}
	e := &provider.Error{Status: status, Code: failureCode(o.Kind, o.Code), Message: msg}
	if o.HasRetryAfter {
		e.RetryAfter = o.RetryAfter
	}
	return e
}

// failureCode is the code an app's SDK recognises for a failure kind.
func failureCode(kind, upstream string) string {
	switch kind {
	case limiterconfig.FailureRateLimited:
		return "rate_limit_exceeded"
	case limiterconfig.FailureQuotaExhausted:
		return "insufficient_quota"
	case limiterconfig.FailureContextLengthExceeded:
		return "context_length_exceeded"
	}
	return upstream
}

// streamError is the error a translated stream reports for a mid-stream failure
// of kind (a limiterconfig.Failure*), with the status the app's SDK maps to the
// same meaning.
func streamError(app provider.Dialect, kind, code, msg string) *provider.Error {
	status := http.StatusInternalServerError
	switch kind {
	case limiterconfig.FailureRateLimited, limiterconfig.FailureQuotaExhausted:
		status = http.StatusTooManyRequests
	case limiterconfig.FailureUnavailable:
		status = http.StatusServiceUnavailable
		if app == provider.DialectAnthropic {
			status = 529 // overloaded_error
		}
	case limiterconfig.FailureTimeout:
		status = http.StatusGatewayTimeout
	case limiterconfig.FailureContextLengthExceeded:
		status = http.StatusBadRequest
	}
	if msg == "" {
		msg = "the provider reported an error in the stream"
	}
	return &provider.Error{Status: status, Code: failureCode(kind, code), Message: msg}
}
