package provider

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestApplyAuth(t *testing.T) {
	appSent := func() http.Header {
		return hdr(
			"Authorization", "Bearer sk-app",
			"X-Api-Key", "sk-ant-app",
			"X-Goog-Api-Key", "AIza-app",
			"Api-Key", "azure-app",
			"Proxy-Authorization", "Basic x",
			"Openai-Organization", "org-app",
			"Openai-Project", "proj-app",
			"Content-Type", "application/json",
			"Anthropic-Beta", "tools-2024",
		)
	}
	kept := func(extra ...string) http.Header {
		h := hdr("Content-Type", "application/json", "Anthropic-Beta", "tools-2024")
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}
	tests := []struct {
		name      string
		provider  string
		key       string
		h         http.Header
		query     url.Values
		wantH     http.Header
		wantQuery url.Values
	}{
		{"openai bearer", "openai", "sk-real", appSent(), url.Values{"key": {"AIza-app"}, "alt": {"sse"}},
			kept("Authorization", "Bearer sk-real"), url.Values{"alt": {"sse"}}},
		{"deepseek bearer", "deepseek", "sk-ds", appSent(), nil, kept("Authorization", "Bearer sk-ds"), nil},
		{"compatible bearer, key trimmed of its file's newline", "openai-compatible", " sk-c\n", appSent(), nil, kept("Authorization", "Bearer sk-c"), nil},
		{"anthropic x-api-key and default version", "anthropic", "sk-ant-real", appSent(), nil,
			kept("X-Api-Key", "sk-ant-real", "Anthropic-Version", "2023-06-01"), nil},
		{"anthropic keeps the app's version", "anthropic", "k", hdr("Anthropic-Version", "2024-01-01", "Authorization", "Bearer sdk-key"), nil,
			hdr("X-Api-Key", "k", "Anthropic-Version", "2024-01-01"), nil},
		{"gemini header, key query removed", "gemini", "AIza-real", appSent(), url.Values{"key": {"AIza-app", "again"}, "alt": {"sse"}},
			kept("X-Goog-Api-Key", "AIza-real"), url.Values{"alt": {"sse"}}},
		{"empty key only removes", "openai", "  ", appSent(), nil, kept(), nil},
		{"unknown provider gets a bearer", "azure", "k", http.Header{}, nil, hdr("Authorization", "Bearer k"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ApplyAuth(tt.h, tt.query, tt.provider, tt.key)
			if diff := cmp.Diff(tt.wantH, tt.h); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantQuery, tt.query); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
		})
	}
}

// TestApplyAuthOverHTTP sends a request the way the limiter forwards one and
// checks what the provider receives.
func TestApplyAuthOverHTTP(t *testing.T) {
	type seen struct {
		Auth, APIKey, GoogKey, Version, Query string
	}
	got := make(chan seen, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"), r.Header.Get("X-Goog-Api-Key"), r.Header.Get("Anthropic-Version"), r.URL.RawQuery}
	}))
	defer upstream.Close()
	for _, tt := range []struct {
		provider string
		want     seen
	}{
		{"openai", seen{Auth: "Bearer sk-real", Query: "alt=sse"}},
		{"anthropic", seen{APIKey: "sk-real", Version: "2023-06-01", Query: "alt=sse"}},
		{"gemini", seen{GoogKey: "sk-real", Query: "alt=sse"}},
	} {
		req, err := http.NewRequest(http.MethodPost, upstream.URL+"/v1/x?key=app-key&alt=sse", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer app-key")
		req.Header.Set("X-Api-Key", "app-key")
		q := req.URL.Query()
		ApplyAuth(req.Header, q, tt.provider, "sk-real\n")
		req.URL.RawQuery = q.Encode()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if diff := cmp.Diff(tt.want, <-got); diff != "" {
			t.Errorf("%s: upstream saw (-want +got):\n%s", tt.provider, diff)
		}
	}
}
