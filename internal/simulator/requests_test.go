package simulator

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMalformedRequests(t *testing.T) {
	huge := `{"model":"m","pad":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	tests := []struct {
		name, key, provider, path, body string
		wantStatus                      int
		wantBody                        any
	}{
		{"openai bad json", "sk-o", ProviderOpenAI, chatPath, `{"model":`, 400,
			obj{"error": obj{"message": "We could not parse the JSON body of your request: unexpected end of JSON input", "type": "invalid_request_error", "param": nil, "code": nil}}},
		{"openai not an object", "sk-o", ProviderOpenAI, chatPath, `[1,2]`, 400,
			obj{"error": obj{"message": "We could not parse the JSON body of your request: it must be a JSON object.", "type": "invalid_request_error", "param": nil, "code": nil}}},
		{"openai empty body", "sk-o", ProviderOpenAI, chatPath, ``, 400,
			obj{"error": obj{"message": "We could not parse the JSON body of your request: it must be a JSON object.", "type": "invalid_request_error", "param": nil, "code": nil}}},
		{"openai missing model", "sk-o", ProviderOpenAI, chatPath, `{"messages":[]}`, 400,
			obj{"error": obj{"message": "you must provide a model parameter", "type": "invalid_request_error", "param": "model", "code": nil}}},
		{"openai model of the wrong type", "sk-o", ProviderOpenAI, chatPath, `{"model":5}`, 400,
			obj{"error": obj{"message": "Invalid type for 'model': expected a string, but got a number instead.", "type": "invalid_request_error", "param": "model", "code": nil}}},
		{"openai content of the wrong type", "sk-o", ProviderOpenAI, chatPath, `{"model":"m","messages":[{"role":"user","content":7}]}`, 400,
			obj{"error": obj{"message": "Invalid type for 'messages[0].content': expected a string or an array of content parts.", "type": "invalid_request_error", "param": "messages[0].content", "code": nil}}},
		{"openai empty messages", "sk-o", ProviderOpenAI, chatPath, `{"model":"m","messages":[]}`, 400,
			obj{"error": obj{"message": "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", "type": "invalid_request_error", "param": "messages", "code": nil}}},
		{"openai embeddings bad input", "sk-o", ProviderOpenAI, "/v1/embeddings", `{"model":"m","input":[1,"a"]}`, 400,
			obj{"error": obj{"message": "Invalid 'input': expected a string, an array of strings, an array of integers, or an array of arrays of integers.", "type": "invalid_request_error", "param": "input", "code": nil}}},
		{"openai too large", "sk-o", ProviderOpenAI, chatPath, huge, 413,
			obj{"error": obj{"message": fmt.Sprintf("Request body is larger than the %d bytes allowed.", maxBodyBytes), "type": "invalid_request_error", "param": nil, "code": nil}}},
		{"deepseek wrong type is 422", "sk-d", ProviderDeepSeek, chatPath, `{"model":"m","messages":"hi"}`, 422,
			obj{"error": obj{"message": "Invalid type for 'messages': expected an array, but got a string instead.",
				"type": "invalid_request_error", "param": "messages", "code": nil}}},
		{"anthropic missing max_tokens", "sk-a", ProviderAnthropic, "/v1/messages", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, 400,
			obj{"type": "error", "error": obj{"type": "invalid_request_error", "message": "max_tokens: Field required"}}},
		{"anthropic bad role", "sk-a", ProviderAnthropic, "/v1/messages", `{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"}]}`, 400,
			obj{"type": "error", "error": obj{"type": "invalid_request_error", "message": "messages.0.role: Input should be 'user' or 'assistant'"}}},
		{"anthropic without anthropic-version", "sk-a", ProviderAnthropic, "/v1/messages", messagesBody("m", 5), 400,
			obj{"type": "error", "error": obj{"type": "invalid_request_error", "message": "anthropic-version: header is required"}}},
		{"anthropic too large", "sk-a", ProviderAnthropic, "/v1/messages", huge, 413,
			obj{"type": "error", "error": obj{"type": "request_too_large", "message": fmt.Sprintf("Request body is larger than the %d bytes allowed.", maxBodyBytes)}}},
		{"gemini no contents", "sk-g", ProviderGemini, "/v1beta/models/m:generateContent", `{"contents":[]}`, 400,
			obj{"error": obj{"code": int64(400), "status": "INVALID_ARGUMENT", "message": "* GenerateContentRequest.contents: contents is not specified"}}},
		{"gemini part of the wrong type", "sk-g", ProviderGemini, "/v1beta/models/m:generateContent", `{"contents":[{"parts":[3]}]}`, 400,
			obj{"error": obj{"code": int64(400), "status": "INVALID_ARGUMENT", "message": "Invalid JSON payload received. Unknown name or invalid value at 'contents[0].parts[0]'."}}},
		{"gemini too large is a 400", "sk-g", ProviderGemini, "/v1beta/models/m:generateContent", huge, 400,
			obj{"error": obj{"code": int64(400), "status": "INVALID_ARGUMENT", "message": fmt.Sprintf("Request body is larger than the %d bytes allowed.", maxBodyBytes)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, allPersonas())
			hdr := authHeaders(tc.provider, tc.key)
			if strings.Contains(tc.name, "without anthropic-version") {
				hdr.Del("anthropic-version")
			}
			r := h.do(t, http.MethodPost, tc.path, hdr, tc.body)
			if r.status != tc.wantStatus {
				t.Fatalf("%v, want %d", r, tc.wantStatus)
			}
			if diff := cmp.Diff(tc.wantBody, decodeJSON(t, r.body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			var refused int64
			for _, a := range h.sim.Stats().Accounts {
				refused += a.Rejected[ReasonBadRequest]
				for _, p := range a.Pools {
					refused += p.Rejected[ReasonBadRequest]
				}
			}
			if refused != 1 {
				t.Errorf("bad_request refusals counted: %d, want 1", refused)
			}
		})
	}
}

func TestUnlistedModelsAreBounded(t *testing.T) {
	h := newHarness(t, oneAccount(ProviderOpenAI, Limits{}))
	for i := range maxDynamicPools {
		if r := h.call(t, chatPath, chatBody(fmt.Sprintf("model-%d", i), 1)); r.status != 200 {
			t.Fatalf("model %d: %v", i, r)
		}
	}
	r := h.call(t, chatPath, chatBody("one-too-many", 1))
	want := obj{"error": obj{"message": "The model `one-too-many` does not exist or you do not have access to it.", "type": "invalid_request_error", "param": nil, "code": "model_not_found"}}
	if r.status != 404 {
		t.Fatalf("%v, want 404", r)
	}
	if diff := cmp.Diff(want, decodeJSON(t, r.body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	// Known models keep working.
	if r := h.call(t, chatPath, chatBody("model-0", 1)); r.status != 200 {
		t.Errorf("a known model after the cap: %v", r)
	}
}

func TestStatsCountCredentialsAndRoutes(t *testing.T) {
	h := newHarness(t, allPersonas())
	h.do(t, "POST", chatPath, http.Header{"Authorization": {"Bearer wrong"}}, `{}`)
	h.do(t, "POST", chatPath, nil, `{}`)
	h.do(t, "GET", "/nowhere", authHeaders(ProviderOpenAI, "sk-o"), "")
	h.do(t, "POST", chatPath, http.Header{"X-Api-Key": {"sk-o"}}, `{}`) // right key, wrong place
	h.do(t, "POST", "/v1/messages", authHeaders(ProviderOpenAI, "sk-o"), `{}`)
	st := h.sim.Stats()
	if st.Unauthenticated != 2 || st.Unrouted != 1 {
		t.Errorf("unauthenticated %d unrouted %d, want 2 and 1", st.Unauthenticated, st.Unrouted)
	}
	want := map[string]int64{ReasonAuth: 1, ReasonBadRequest: 1}
	if diff := cmp.Diff(want, st.Accounts[0].Rejected); diff != "" || st.Accounts[0].Requests != 2 {
		t.Errorf("account requests %d, rejected (-want +got):\n%s", st.Accounts[0].Requests, diff)
	}
}
