package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// The providers' error shapes, decoded strictly: an unknown or missing member is
// a failure.
type (
	wantOpenAI struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	wantAnthropic struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	wantGemini struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Status  string `json:"status"`
			Details []struct {
				Type       string `json:"@type"`
				RetryDelay string `json:"retryDelay,omitempty"`
				Reason     string `json:"reason,omitempty"`
				Domain     string `json:"domain,omitempty"`
			} `json:"details,omitempty"`
		} `json:"error"`
	}
)

func strictDecode(t *testing.T, body []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if dec.More() {
		t.Fatalf("trailing data after the error JSON: %s", body)
	}
}

// serveError answers every request with WriteError(d, e) over real HTTP.
func serveError(t *testing.T, d Dialect, e *Error) (status int, h http.Header, body []byte) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip") // left over from an upstream; must go
		WriteError(w, d, e)
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

func ptr(s string) *string { return &s }

func TestWriteErrorOpenAI(t *testing.T) {
	tests := []struct {
		e          *Error
		wantStatus int
		want       wantOpenAI
	}{
		{&Error{Status: 429, Code: "rate_limit_exceeded", Message: "Requests per minute for gpt-4o exhausted; retry in 2s.", RetryAfter: 1500 * time.Millisecond}, 429,
			func() (w wantOpenAI) {
				w.Error.Message, w.Error.Type, w.Error.Code = "Requests per minute for gpt-4o exhausted; retry in 2s.", "rate_limit_error", ptr("rate_limit_exceeded")
				return
			}()},
		{&Error{Status: 400, Code: "context_length_exceeded", Param: "messages", Message: "too long"}, 400,
			func() (w wantOpenAI) {
				w.Error.Message, w.Error.Type, w.Error.Param, w.Error.Code = "too long", "invalid_request_error", ptr("messages"), ptr("context_length_exceeded")
				return
			}()},
		{&Error{Status: 503, Code: "circuit_open"}, 503,
			func() (w wantOpenAI) {
				w.Error.Message, w.Error.Type, w.Error.Code = "Service Unavailable", "server_error", ptr("circuit_open")
				return
			}()},
		{&Error{Status: 200, Message: "not an error status"}, 500,
			func() (w wantOpenAI) { w.Error.Message, w.Error.Type = "not an error status", "server_error"; return }()},
		{&Error{Status: 401, Message: "m"}, 401,
			func() (w wantOpenAI) { w.Error.Message, w.Error.Type = "m", "authentication_error"; return }()},
		{&Error{Status: 403, Message: "m"}, 403,
			func() (w wantOpenAI) { w.Error.Message, w.Error.Type = "m", "permission_error"; return }()},
		{&Error{Status: 404, Message: "m"}, 404,
			func() (w wantOpenAI) { w.Error.Message, w.Error.Type = "m", "not_found_error"; return }()},
		{&Error{Status: 1000}, 500,
			func() (w wantOpenAI) { w.Error.Message, w.Error.Type = "Internal Server Error", "server_error"; return }()},
		{nil, 500,
			func() (w wantOpenAI) { w.Error.Message, w.Error.Type = "Internal Server Error", "server_error"; return }()},
	}
	for _, tt := range tests {
		status, h, body := serveError(t, DialectOpenAI, tt.e)
		if status != tt.wantStatus {
			t.Errorf("status = %d, want %d", status, tt.wantStatus)
		}
		checkCommonHeaders(t, h, body, tt.e)
		var got wantOpenAI
		strictDecode(t, body, &got)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("body (-want +got):\n%s", diff)
		}
		// param and code are present as null when unset, as OpenAI sends them.
		if !bytes.Contains(body, []byte(`"param":`)) || !bytes.Contains(body, []byte(`"code":`)) {
			t.Errorf("param or code missing: %s", body)
		}
	}
}

func checkCommonHeaders(t *testing.T, h http.Header, body []byte, e *Error) {
	t.Helper()
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if h.Get("Content-Encoding") != "" {
		t.Errorf("Content-Encoding survived: %q", h.Get("Content-Encoding"))
	}
	if !json.Valid(body) {
		t.Errorf("invalid JSON: %s", body)
	}
	var ra, ram string
	if e != nil && e.RetryAfter > 0 {
		ra = "2"
		ram = "1500"
	}
	if got := h.Get("Retry-After"); got != ra {
		t.Errorf("Retry-After = %q, want %q", got, ra)
	}
	if got := h.Get("Retry-After-Ms"); got != ram {
		t.Errorf("retry-after-ms = %q, want %q", got, ram)
	}
}

func TestWriteErrorAnthropic(t *testing.T) {
	tests := []struct {
		status   int
		wantType string
	}{
		{400, "invalid_request_error"},
		{401, "authentication_error"},
		{403, "permission_error"},
		{404, "not_found_error"},
		{413, "request_too_large"},
		{422, "invalid_request_error"},
		{429, "rate_limit_error"},
		{500, "api_error"},
		{502, "api_error"},
		{503, "overloaded_error"},
		{529, "overloaded_error"},
	}
	for _, tt := range tests {
		e := &Error{Status: tt.status, Code: "x", Param: "p", Message: "limit hit", RetryAfter: 1500 * time.Millisecond}
		status, h, body := serveError(t, DialectAnthropic, e)
		if status != tt.status {
			t.Errorf("status = %d, want %d", status, tt.status)
		}
		checkCommonHeaders(t, h, body, e)
		var got wantAnthropic
		strictDecode(t, body, &got)
		want := wantAnthropic{Type: "error"}
		want.Error.Type, want.Error.Message = tt.wantType, "limit hit"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("status %d body (-want +got):\n%s", tt.status, diff)
		}
	}
}

func TestWriteErrorGemini(t *testing.T) {
	tests := []struct {
		e          *Error
		wantStatus string
		details    []string // @type, retryDelay or reason
	}{
		{&Error{Status: 429, Code: "queue_timeout", Message: "waited 30s", RetryAfter: 1500 * time.Millisecond}, "RESOURCE_EXHAUSTED",
			[]string{"type.googleapis.com/google.rpc.RetryInfo", "1.5s", "type.googleapis.com/google.rpc.ErrorInfo", "QUEUE_TIMEOUT"}},
		{&Error{Status: 400, Message: "bad"}, "INVALID_ARGUMENT", nil},
		{&Error{Status: 401}, "UNAUTHENTICATED", nil},
		{&Error{Status: 403}, "PERMISSION_DENIED", nil},
		{&Error{Status: 404, Code: "model_not_found"}, "NOT_FOUND", []string{"type.googleapis.com/google.rpc.ErrorInfo", "MODEL_NOT_FOUND"}},
		{&Error{Status: 413}, "INVALID_ARGUMENT", nil},
		{&Error{Status: 409}, "ABORTED", nil},
		{&Error{Status: 412}, "FAILED_PRECONDITION", nil},
		{&Error{Status: 418}, "FAILED_PRECONDITION", nil},
		{&Error{Status: 499}, "CANCELLED", nil},
		{&Error{Status: 500}, "INTERNAL", nil},
		{&Error{Status: 501}, "UNIMPLEMENTED", nil},
		{&Error{Status: 529}, "UNAVAILABLE", nil},
		{&Error{Status: 503}, "UNAVAILABLE", nil},
		{&Error{Status: 504}, "DEADLINE_EXCEEDED", nil},
	}
	for _, tt := range tests {
		status, h, body := serveError(t, DialectGemini, tt.e)
		if status != tt.e.Status {
			t.Errorf("status = %d, want %d", status, tt.e.Status)
		}
		checkCommonHeaders(t, h, body, tt.e)
		var got wantGemini
		strictDecode(t, body, &got)
		if got.Error.Code != tt.e.Status || got.Error.Status != tt.wantStatus || got.Error.Message == "" {
			t.Errorf("error = %+v, want code %d status %s and a message", got.Error, tt.e.Status, tt.wantStatus)
		}
		var details []string
		for _, d := range got.Error.Details {
			details = append(details, d.Type, d.RetryDelay+d.Reason)
			if d.Reason != "" && d.Domain != ErrorDomain {
				t.Errorf("ErrorInfo domain = %q", d.Domain)
			}
		}
		if diff := cmp.Diff(tt.details, details); diff != "" {
			t.Errorf("details (-want +got):\n%s", diff)
		}
		// Our own RetryInfo must read back as the delay the limiter meant.
		if tt.e.RetryAfter > 0 {
			if o := Classify("gemini", status, nil, body, testNow); o.RetryAfter != tt.e.RetryAfter {
				t.Errorf("Classify reads our RetryInfo as %v, want %v", o.RetryAfter, tt.e.RetryAfter)
			}
		}
	}
}

// TestWriteErrorOpenAISDK checks the official OpenAI Go SDK reads our errors.
func TestWriteErrorOpenAISDK(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, DialectOpenAI, &Error{Status: 429, Code: "rate_limit_exceeded", Param: "model", Message: "slow down", RetryAfter: time.Second})
	}))
	defer srv.Close()
	client := openai.NewClient(option.WithBaseURL(srv.URL+"/v1/"), option.WithAPIKey("sk-test"), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("SDK error = %v (%T), want *openai.Error", err, err)
	}
	got := []any{apiErr.StatusCode, apiErr.Code, apiErr.Message, apiErr.Param, apiErr.Type}
	want := []any{429, "rate_limit_exceeded", "slow down", "model", "rate_limit_error"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SDK saw (-want +got):\n%s", diff)
	}
}
