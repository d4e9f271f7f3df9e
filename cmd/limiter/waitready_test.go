package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestWaitReady(t *testing.T) {
	var calls atomic.Int32
	readyAfter := int32(3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) <= readyAfter {
			http.Error(w, "config not loaded", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "config not loaded", http.StatusServiceUnavailable)
	}))
	defer notReady.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + ln.Addr().String() + "/readyz"
	_ = ln.Close()

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ready after a few attempts", []string{"--url", srv.URL + "/readyz", "--interval", "10ms"}, 0, ""},
		{"never ready", []string{"--url", notReady.URL + "/readyz", "--interval", "10ms", "--timeout", "200ms"}, 1, "503 Service Unavailable: config not loaded"},
		{"nothing listening", []string{"--url", closedURL, "--interval", "10ms", "--timeout", "200ms"}, 1, "connection refused"},
		{"malformed URL", []string{"--url", "http://[::1", "--timeout", "100ms"}, 2, "is not an http(s) URL"},
		{"URL without a host", []string{"--url", "/readyz"}, 2, "is not an http(s) URL"},
		{"zero timeout", []string{"--timeout", "0s"}, 2, "must be positive"},
		{"stray argument", []string{"now"}, 2, "unexpected arguments"},
		{"unknown flag", []string{"--port", "8788"}, 2, "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			code := run(append([]string{"wait-ready"}, tc.args...), &out)
			if code != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Errorf("wait-ready %v = %d, %q; want %d and %q", tc.args, code, out.String(), tc.code, tc.want)
			}
		})
	}
	if got := calls.Load(); got != readyAfter+1 {
		t.Errorf("the ready server saw %d probes, want %d (three refusals, then ready)", got, readyAfter+1)
	}
}
