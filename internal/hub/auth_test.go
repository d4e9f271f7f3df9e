package hub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/aiquota/aiquota/internal/hubapi"
)

func TestTokenReviewerCache(t *testing.T) {
	ns := newNamespace(t)
	pods := []string{"a", "b", "c"}
	var tokens []string
	var want []Identity
	for _, name := range pods {
		p := newPod(t, ns, name)
		tokens = append(tokens, podToken(t, p))
		want = append(want, Identity{Namespace: ns, ServiceAccount: "sa-" + name, PodName: name, PodUID: string(p.UID)})
	}
	clk := newFakeClock(time.Now())
	var mu sync.Mutex
	reviews := map[string]int{}
	tr := NewTokenReviewer(env.Client, TokenReviewerOptions{
		TTL: time.Minute, NegativeTTL: 5 * time.Second, MaxEntries: 2, Now: clk.now,
		OnReview: func(r string) { mu.Lock(); reviews[r]++; mu.Unlock() },
	})
	count := func(r string) int { mu.Lock(); defer mu.Unlock(); return reviews[r] }
	ctx := context.Background()
	auth := func(i int) {
		t.Helper()
		id, err := tr.Authenticate(ctx, tokens[i], "10.0.0.1")
		if err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		if d := cmp.Diff(want[i], id); d != "" {
			t.Fatalf("identity (-want +got):\n%s", d)
		}
	}

	// Twenty concurrent checks of one token share one review.
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); auth(0) }()
	}
	wg.Wait()
	if n := count("authenticated"); n != 1 {
		t.Fatalf("%d reviews for one token checked 20 times at once, want 1", n)
	}
	// Within the TTL: cached.
	clk.advance(30 * time.Second)
	auth(0)
	if n := count("authenticated"); n != 1 {
		t.Fatalf("%d reviews within the TTL, want 1", n)
	}
	// Past the TTL: reviewed again.
	clk.advance(31 * time.Second)
	auth(0)
	if n := count("authenticated"); n != 2 {
		t.Fatalf("%d reviews after the TTL, want 2", n)
	}
	// The cache holds two: a third token evicts the least recently used.
	auth(1)
	auth(2) // evicts 0
	auth(1)
	if n := count("authenticated"); n != 4 || tr.Len() != 2 {
		t.Fatalf("%d reviews, %d cached; want 4, 2", n, tr.Len())
	}
	auth(0)
	if n := count("authenticated"); n != 5 {
		t.Fatalf("%d reviews after an eviction, want 5", n)
	}

	// Refusals are cached briefly, then reviewed again.
	forged := forgedToken(clk.now(), "a")
	for range 3 {
		if _, err := tr.Authenticate(ctx, forged, "10.0.0.1"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("forged token: %v", err)
		}
	}
	if n := count("refused"); n != 1 {
		t.Fatalf("%d reviews of a refused token within the negative TTL, want 1", n)
	}
	clk.advance(6 * time.Second)
	if _, err := tr.Authenticate(ctx, forged, "10.0.0.1"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("forged token: %v", err)
	}
	if n := count("refused"); n != 2 {
		t.Fatalf("%d reviews after the negative TTL, want 2", n)
	}
}

func TestTokenReviewerNeverTrustsPastExpiry(t *testing.T) {
	ns := newNamespace(t)
	p := newPod(t, ns, "a")
	token := podToken(t, p)
	c, err := parseClaims(token)
	if err != nil {
		t.Fatalf("a TokenRequest token: %v", err)
	}
	exp := c.exp
	clk := newFakeClock(time.Now())
	reviews := atomic.Int32{}
	tr := NewTokenReviewer(env.Client, TokenReviewerOptions{TTL: 24 * time.Hour, Now: clk.now, OnReview: func(string) { reviews.Add(1) }})
	if _, err := tr.Authenticate(context.Background(), token, "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	// Just before expiry, past the cache's early cut-off: the token is reviewed
	// again, however long the configured TTL.
	clk.t = exp.Add(-2 * time.Second)
	_, _ = tr.Authenticate(context.Background(), token, "10.0.0.1")
	if n := reviews.Load(); n != 2 {
		t.Errorf("%d reviews, want 2: a cached token outlived its expiry", n)
	}
}

func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc ", "Basic abc", "Bearer", "Bearer ", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, ok := bearer(h)
		if ok && tok == "" {
			t.Fatal("accepted an empty token")
		}
	})
}

// TestFollowerAnswersNotLeader: a replica that does not lead refuses before
// looking at the token, with a retry hint, and closes the connection so the
// retry may reach another replica.
func TestFollowerAnswersNotLeader(t *testing.T) {
	reviews := atomic.Int32{}
	h := &Handler{
		Aggregator:    NewAggregator(nil, 3),
		Authenticator: authFunc(func(context.Context, string, string) (Identity, error) { reviews.Add(1); return Identity{}, nil }),
		Leading:       make(chan struct{}), // never closed: a follower
		Log:           (&logBuffer{}).logger(),
	}
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL+hubapi.Path, hubapi.ContentType, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	eb := readError(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || eb.Error.Code != hubapi.CodeNotLeader ||
		resp.Header.Get("Retry-After") != "1" || !resp.Close || reviews.Load() != 0 {
		t.Errorf("follower answered %d %+v, Retry-After %q, close %v, %d reviews",
			resp.StatusCode, eb, resp.Header.Get("Retry-After"), resp.Close, reviews.Load())
	}
}

// TestTokenCheckOutageIsRetryable: when the API server cannot check a token the
// sidecar is told to retry, not that its token is bad.
func TestTokenCheckOutageIsRetryable(t *testing.T) {
	expectRetryable(t, errors.New("connection refused"), hubapi.CodeUnavailable)
}

// expectRetryable checks that a report whose token check fails with authErr gets a
// 503 with the given code and a Retry-After.
func expectRetryable(t *testing.T, authErr error, code string) {
	t.Helper()
	status, header, eb := postWithAuth(t, authFunc(func(context.Context, string, string) (Identity, error) { return Identity{}, authErr }), nil)
	if status != http.StatusServiceUnavailable || eb.Error.Code != code || header.Get("Retry-After") == "" {
		t.Errorf("token check failing with %v: got %d %+v, Retry-After %q; want 503 %s with Retry-After",
			authErr, status, eb, header.Get("Retry-After"), code)
	}
}

// postWithAuth posts an empty report with a bearer token, and the extra headers,
// to a leading Handler whose authenticator is auth, and returns the answer's
// status, headers and error body.
func postWithAuth(t *testing.T, auth Authenticator, header http.Header) (int, http.Header, hubapi.ErrorBody) {
	t.Helper()
	leading := make(chan struct{})
	close(leading)
	h := &Handler{Aggregator: NewAggregator(nil, 3), Authenticator: auth, Leading: leading, Log: (&logBuffer{}).logger()}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+hubapi.Path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer x")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header, readError(t, resp)
}

type authFunc func(ctx context.Context, token, source string) (Identity, error)

func (f authFunc) Authenticate(ctx context.Context, token, source string) (Identity, error) {
	return f(ctx, token, source)
}

func readError(t *testing.T, resp *http.Response) hubapi.ErrorBody {
	t.Helper()
	var eb hubapi.ErrorBody
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &eb); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	return eb
}

// TestBusyReviewerSheds: when every review slot stays taken beyond MaxWait, a new
// token gets ErrBusy at once instead of waiting, and the handler turns that into
// a 503 with a Retry-After.
func TestBusyReviewerSheds(t *testing.T) {
	ns := newNamespace(t)
	a, b := newPod(t, ns, "a"), newPod(t, ns, "b")
	ta, tb := podToken(t, a), podToken(t, b)
	release, entered := make(chan struct{}), make(chan struct{})
	base, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	blocking := interceptor.NewClient(base, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if tr, ok := obj.(*authenticationv1.TokenReview); ok && tr.Spec.Token == ta {
				close(entered)
				<-release
			}
			return c.Create(ctx, obj, opts...)
		},
	})
	tr := NewTokenReviewer(blocking, TokenReviewerOptions{MaxInFlight: 1, MaxWait: 100 * time.Millisecond})
	done := make(chan error, 1)
	go func() { _, err := tr.Authenticate(context.Background(), ta, "10.0.0.1"); done <- err }()
	<-entered // the first review holds the only slot
	if _, err = tr.Authenticate(context.Background(), tb, "10.0.0.2"); !errors.Is(err, ErrBusy) {
		t.Fatalf("second token while the only slot is taken: %v, want ErrBusy", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("first token: %v", err)
	}
	if _, err := tr.Authenticate(context.Background(), tb, "10.0.0.2"); err != nil {
		t.Fatalf("second token once the slot is free: %v", err)
	}

	expectRetryable(t, ErrBusy, hubapi.CodeBusy)
}

// TestTruncatedBodyIsAReadFailure: a sender that goes away mid-body is counted as
// such, not as a malformed report, and nothing is folded in.
func TestTruncatedBodyIsAReadFailure(t *testing.T) {
	leading := make(chan struct{})
	close(leading)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	agg := NewAggregator(nil, 3)
	h := &Handler{
		Aggregator: agg,
		Authenticator: authFunc(func(context.Context, string, string) (Identity, error) {
			return Identity{Namespace: "ns", PodName: "p", PodUID: "u"}, nil
		}),
		Leading: leading, Metrics: m, Log: (&logBuffer{}).logger(),
	}
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"schemaVersion\":", hubapi.Path)
	conn.Close()
	eventuallyCount := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "aiquota_manager_control_reports_refused_total" {
				for _, mm := range mf.GetMetric() {
					if mm.GetLabel()[0].GetValue() == hubapi.CodeReadFailed {
						return mm.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	deadline := time.Now().Add(30 * time.Second)
	for eventuallyCount() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("a truncated body was not counted as readFailed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if agg.ActiveSidecars() != 0 {
		t.Error("a truncated report was folded in")
	}
}
