package adversarial

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/simulator"
)

// Users pressing "stop" are not an outage: six streams left in the middle (the
// default policy opens the breaker after five failures) leave it closed.
func TestStreamsLeftInTheMiddleLeaveTheBreakerClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const leavers = 6
	acct := simulator.Account{Key: simKey, Provider: "openai", Limits: simulator.Limits{RequestsPerMinute: 100000},
		Latency: simulator.Latency{OutputTokens: 2000, TokensPerSecond: 50}}
	s := startStack(t, acct, nil, nil)
	body := `{"model":"gpt-4o","stream":true,"max_tokens":2000,"messages":[{"role":"user","content":"Tell a long story"}]}`
	for range leavers {
		func() {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.proxy+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				t.Fatalf("no first event: %v", err)
			}
		}()
	}
	eventually(t, "every request to end", func() bool {
		return s.labelled("aiquota_limiter_requests_total") == leavers
	})
	if got := s.labelled("aiquota_limiter_requests_total", `outcome="canceled"`); got != leavers {
		t.Errorf("%v requests ended canceled, want %d", got, leavers)
	}
	for _, b := range s.state().Engine.Breakers {
		if b.State != limiter.BreakerClosed {
			t.Errorf("breaker %s/%s is %s after apps left their streams", b.Provider, b.Model, b.State)
		}
	}
}

// A body that trickles in a byte at a time is cut off at the read deadline with a
// 408, and the connection is closed.
func TestATricklingBodyIsCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	acct := simulator.Account{Key: simKey, Provider: "openai", Limits: simulator.Limits{RequestsPerMinute: 100000}}
	s := startStack(t, acct, nil, []string{"--body-read-timeout", "500ms"})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.proxy, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var trickle sync.WaitGroup
	trickle.Go(func() {
		for range 500 {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	})
	defer func() { close(stop); trickle.Wait() }()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a trickling body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("status %d (close %v) %s, want 408 and a closed connection", resp.StatusCode, resp.Close, b)
	}
}

// A model name that is a dot segment never becomes an upstream path.
func TestDotSegmentModelNamesAreRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	acct := simulator.Account{Key: simKey, Provider: "openai", Limits: simulator.Limits{RequestsPerMinute: 100000}}
	s := startStack(t, acct, nil, nil)
	for _, path := range []string{"/v1beta/models/..", "/v1/models/..", "/v1beta/models/."} {
		resp, err := http.Get(s.proxy + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, resp.StatusCode)
		}
	}
	if n := s.labelled("aiquota_limiter_requests_total", `outcome="not_found"`); n != 3 {
		t.Errorf("%v requests refused as not found, want 3", n)
	}
}
