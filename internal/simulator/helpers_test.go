package simulator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is the simulator's Now in tests: time moves only when a test says so.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testStart is a fixed instant, mid-day UTC, so daily windows do not roll by accident.
var testStart = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

type harness struct {
	sim   *Server
	http  *httptest.Server
	clock *fakeClock
}

// newHarness serves cfg over real HTTP with a fake clock.
func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	clock := newFakeClock(testStart)
	cfg.Now = clock.Now
	sim, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return &harness{sim: sim, http: srv, clock: clock}
}

// oneAccount is a config with one account of the persona, key "sk-test-<provider>".
func oneAccount(provider string, l Limits) Config {
	return Config{Seed: 7, Accounts: []Account{{Key: "sk-test-" + provider, Provider: provider, Limits: l}}}
}

// authHeaders are the persona's usual credentials for key.
func authHeaders(provider, key string) http.Header {
	h := http.Header{}
	switch provider {
	case ProviderAnthropic:
		h.Set("x-api-key", key)
		h.Set("anthropic-version", "2023-06-01")
	case ProviderGemini:
		h.Set("x-goog-api-key", key)
	default:
		h.Set("Authorization", "Bearer "+key)
	}
	h.Set("Content-Type", "application/json")
	return h
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string {
	return fmt.Sprintf("%d %s", r.status, clip(string(r.body), 400))
}

func (h *harness) do(t *testing.T, method, path string, hdr http.Header, body string) response {
	t.Helper()
	return h.doCtx(t, context.Background(), method, path, hdr, body)
}

func (h *harness) doCtx(t *testing.T, ctx context.Context, method, path string, hdr http.Header, body string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, h.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// call sends body to path as the harness's only account.
func (h *harness) call(t *testing.T, path, body string) response {
	t.Helper()
	a := h.sim.accounts[0]
	key := ""
	for k, acct := range h.sim.byKey {
		if acct == a {
			key = k
		}
	}
	return h.do(t, http.MethodPost, path, authHeaders(a.provider, key), body)
}

// pool is the named pool of the first account; zero before its first request.
func (h *harness) pool(t *testing.T, name string) PoolStats {
	t.Helper()
	p, _ := h.sim.Stats().Accounts[0].Pool(name)
	return p
}

// sseEvent is one dispatched server-sent event, or a comment line.
type sseEvent struct {
	Event   string
	Data    string
	Comment string
}

// parseSSE reads a stream the way the SSE spec says: lines end in LF, CRLF or CR;
// "event:" and "data:" fields accumulate until a blank line dispatches; lines
// starting with ":" are comments (kept, so tests can see keep-alives).
func parseSSE(t *testing.T, body []byte) (events []sseEvent, complete bool) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	sc.Split(scanLinesAnyEOL)
	var cur sseEvent
	var data []string
	pending := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if pending {
				cur.Data = strings.Join(data, "\n")
				events = append(events, cur)
			}
			cur, data, pending = sseEvent{}, nil, false
		case strings.HasPrefix(line, ":"):
			events = append(events, sseEvent{Comment: strings.TrimSpace(line[1:])})
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				cur.Event, pending = value, true
			case "data":
				data, pending = append(data, value), true
			default:
				t.Fatalf("unexpected SSE line %q", line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scan SSE: %v", err)
	}
	return events, !pending
}

func scanLinesAnyEOL(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		switch b {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if atEOF {
				return i + 1, data[:i], nil
			}
			return 0, nil, nil // need the next byte to tell CR from CRLF
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// dataEvents are the data payloads, without comments.
func dataEvents(events []sseEvent) []sseEvent {
	var out []sseEvent
	for _, e := range events {
		if e.Comment == "" {
			out = append(out, e)
		}
	}
	return out
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode JSON %s: %v", clip(string(b), 300), err)
	}
	return normalize("", v)
}

// normalize replaces what is random by design with placeholders that keep what
// matters: ids become "<id>", generated text "<text:N>" with N its word count (one
// word per output token), embeddings "<vector:N>". Numbers become int64.
func normalize(key string, v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(k, e)
		}
		return x
	case []any:
		if key == "embedding" {
			return fmt.Sprintf("<vector:%d>", len(x))
		}
		for i, e := range x {
			x[i] = normalize(key, e)
		}
		return x
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		return x.String()
	case string:
		switch key {
		case "id", "item_id", "responseId":
			return "<id>"
		case "text", "content", "delta":
			return fmt.Sprintf("<text:%d>", len(strings.Fields(x)))
		case "embedding":
			return fmt.Sprintf("<base64:%d>", len(x))
		}
	}
	return v
}

// headerSubset picks the named headers (lower-case names) that are present.
func headerSubset(h http.Header, names ...string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		if v := h.Get(n); v != "" {
			out[n] = v
		}
	}
	return out
}
