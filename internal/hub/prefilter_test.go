package hub

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/naming"
)

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// jwt assembles a compact JWS from a header and claims as written.
func jwt(header, claims string) string {
	return b64(header) + "." + b64(claims) + "." + b64("signature")
}

// forgedToken is well formed, unexpired and for the control channel's audience,
// but signed by nobody: only a TokenReview can refuse it. nonce makes each one
// distinct.
func forgedToken(now time.Time, nonce string) string {
	return jwt(`{"alg":"RS256","kid":"k"}`, fmt.Sprintf(`{"aud":[%q],"exp":%d,"sub":"system:serviceaccount:ns:sa","jti":%q}`, naming.TokenAudience, now.Add(time.Hour).Unix(), nonce))
}

// TestPrefilter: tokens that cannot pass a TokenReview are told apart unread, and
// well-formed ones keep their expiry and audiences.
func TestPrefilter(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	exp := now.Add(time.Hour).Unix()
	header := `{"alg":"RS256","kid":"abc"}`
	ok := func(claims string) string { return jwt(header, claims) }
	cases := []struct {
		name  string
		token string
		// want is the refusal's text; "" accepts with wantAud.
		want    string
		wantAud []string
	}{
		{"service-account token", ok(fmt.Sprintf(`{"aud":["aiquota.dev/control"],"exp":%d,"iat":1,"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:a:b"}`, exp)), "", []string{naming.TokenAudience}},
		{"aud as a string", ok(fmt.Sprintf(`{"aud":"aiquota.dev/control","exp":%d}`, exp)), "", []string{naming.TokenAudience}},
		{"several audiences", ok(fmt.Sprintf(`{"aud":["x","aiquota.dev/control"],"exp":%d}`, exp)), "", []string{"x", naming.TokenAudience}},
		{"expired", ok(fmt.Sprintf(`{"aud":["aiquota.dev/control"],"exp":%d}`, now.Unix())), "expired", nil},
		{"other audience", ok(fmt.Sprintf(`{"aud":["https://kubernetes.default.svc"],"exp":%d}`, exp)), "not for audience aiquota.dev/control", nil},
		{"no aud", ok(fmt.Sprintf(`{"exp":%d}`, exp)), "no aud claim", nil},
		{"aud a number", ok(fmt.Sprintf(`{"aud":7,"exp":%d}`, exp)), "no aud claim", nil},
		{"aud of numbers", ok(fmt.Sprintf(`{"aud":[7],"exp":%d}`, exp)), "no aud claim", nil},
		{"no exp", ok(`{"aud":["aiquota.dev/control"]}`), "no integer exp", nil},
		{"exp a float", ok(`{"aud":["aiquota.dev/control"],"exp":1.9e9}`), "no integer exp", nil},
		{"exp a string", ok(`{"aud":["aiquota.dev/control"],"exp":"1900003600"}`), "no integer exp", nil},
		{"exp negative", ok(`{"aud":["aiquota.dev/control"],"exp":-5}`), "no integer exp", nil},
		{"claims null", ok(`null`), "claims: not a JSON object", nil},
		{"claims an array", ok(`[]`), "claims: not a JSON object", nil},
		{"claims not JSON", ok(`not json`), "claims: not a JSON object", nil},
		{"alg none", jwt(`{"alg":"none"}`, fmt.Sprintf(`{"aud":["aiquota.dev/control"],"exp":%d}`, exp)), "no signing algorithm", nil},
		{"no alg", jwt(`{"kid":"x"}`, fmt.Sprintf(`{"aud":["aiquota.dev/control"],"exp":%d}`, exp)), "no signing algorithm", nil},
		{"alg a number", jwt(`{"alg":1}`, fmt.Sprintf(`{"aud":["aiquota.dev/control"],"exp":%d}`, exp)), "header: not a JSON object", nil},
		{"garbage", "not-a-token", "three dot-separated parts", nil},
		{"two parts", "a.b", "three dot-separated parts", nil},
		{"four parts", "a.b.c.d", "three dot-separated parts", nil},
		{"empty signature", b64(header) + "." + b64("{}") + ".", "three dot-separated parts", nil},
		{"padded", b64(header) + "=." + b64("{}") + ".c2ln", "header: not base64url", nil},
		{"standard base64", b64(header) + ".ab+/.c2ln", "claims: not base64url", nil},
		{"huge", strings.Repeat("a", maxTokenBytes+1), "bytes", nil},
		{"empty", "", "three dot-separated parts", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := prefilter(c.token, naming.TokenAudience, now)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if d := cmp.Diff(c.wantAud, got.audiences); d != "" || got.exp.Unix() != exp {
					t.Errorf("claims exp %d aud (-want +got):\n%s", got.exp.Unix(), d)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v; want ErrUnauthenticated mentioning %q", err, c.want)
			}
			if strings.Contains(fmt.Sprint(err), c.token) && len(c.token) > 8 {
				t.Error("the refusal quotes the token")
			}
		})
	}
}

// FuzzParseClaims: no input panics the parser, and whatever it accepts is a
// three-part token within the size bound with an expiry in range and an audience.
func FuzzParseClaims(f *testing.F) {
	now := time.Unix(1_900_000_000, 0)
	f.Add(forgedToken(now, "a"))
	f.Add(jwt(`{"alg":"RS256"}`, `{"aud":"x","exp":1}`))
	f.Add(jwt(`{"alg":"none"}`, `{"aud":[],"exp":1900000000}`))
	f.Add(jwt(`null`, `null`))
	f.Add("a.b.c")
	f.Add("..")
	f.Add("x.eyJleHAiOjF9.y")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := parseClaims(token)
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("refusal is not ErrUnauthenticated: %v", err)
			}
			return
		}
		if len(token) > maxTokenBytes || strings.Count(token, ".") != 2 {
			t.Fatalf("accepted %d bytes with %d dots", len(token), strings.Count(token, "."))
		}
		if e := c.exp.Unix(); e <= 0 || e > 1<<40 {
			t.Fatalf("accepted an expiry out of range: %d", e)
		}
		if c.audiences == nil {
			t.Fatal("accepted without an aud claim")
		}
	})
}

// countingReviewer is a TokenReviewer on the real API server whose TokenReview
// creations are counted.
func countingReviewer(t *testing.T, o TokenReviewerOptions) (*TokenReviewer, *atomic.Int32) {
	t.Helper()
	requireEnv(t)
	base, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	calls := &atomic.Int32{}
	c := interceptor.NewClient(base, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*authenticationv1.TokenReview); ok {
				calls.Add(1)
			}
			return c.Create(ctx, obj, opts...)
		},
	})
	return NewTokenReviewer(c, o), calls
}

// TestGarbageNeverReachesTokenReview: malformed, expired and wrong-audience tokens
// are refused without a TokenReview; a real token still gets one.
func TestGarbageNeverReachesTokenReview(t *testing.T) {
	ns := newNamespace(t)
	pod := newPod(t, ns, "app")
	tr, calls := countingReviewer(t, TokenReviewerOptions{})
	now := time.Now()
	garbage := []string{
		"not-a-token", "a.b.c", "..", strings.Repeat("x", 100_000),
		jwt(`{"alg":"none"}`, fmt.Sprintf(`{"aud":["aiquota.dev/control"],"exp":%d}`, now.Add(time.Hour).Unix())),
		jwt(`{"alg":"RS256"}`, fmt.Sprintf(`{"aud":["aiquota.dev/control"],"exp":%d}`, now.Add(-time.Minute).Unix())),
		tokenFor(t, pod, "https://kubernetes.default.svc", pod), // real, for another audience
	}
	for i := range 50 {
		garbage = append(garbage, fmt.Sprintf("garbage-%d", i))
	}
	for _, g := range garbage {
		if _, err := tr.Authenticate(t.Context(), g, "10.0.0.1"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("garbage token: %v, want ErrUnauthenticated", err)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d TokenReviews for %d garbage tokens, want 0", n, len(garbage))
	}
	if _, err := tr.Authenticate(t.Context(), podToken(t, pod), "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d TokenReviews for a real token, want 1", n)
	}
}

// TestOneSourceCannotExhaustReviews: a source sending distinct tokens that pass the
// prefilter gets its burst of reviews and then is told to come back later, while
// another source's token is reviewed at once.
func TestOneSourceCannotExhaustReviews(t *testing.T) {
	ns := newNamespace(t)
	pod := newPod(t, ns, "app")
	clk := newFakeClock(time.Now())
	const burst = 4
	tr, calls := countingReviewer(t, TokenReviewerOptions{ReviewBurstPerSource: burst, ReviewsPerSecondPerSource: 0.5, Now: clk.now})
	var limited int
	for i := range 40 {
		_, err := tr.Authenticate(t.Context(), forgedToken(clk.now(), fmt.Sprint(i)), "10.0.0.66")
		var sl *SourceLimitedError
		switch {
		case errors.As(err, &sl):
			limited++
			if !errors.Is(err, ErrSourceLimited) || sl.RetryAfter <= 0 || sl.RetryAfter > 2*time.Second {
				t.Fatalf("source limit: %v (retry after %s)", err, sl.RetryAfter)
			}
		case !errors.Is(err, ErrUnauthenticated):
			t.Fatalf("forged token %d: %v", i, err)
		}
	}
	if n := calls.Load(); n != burst || limited != 40-burst {
		t.Fatalf("one source: %d TokenReviews, %d limited; want %d, %d", n, limited, burst, 40-burst)
	}
	// Another source is not affected.
	if _, err := tr.Authenticate(t.Context(), podToken(t, pod), "10.0.0.7"); err != nil {
		t.Fatalf("another source's token: %v", err)
	}
	// The first source's bucket refills at its rate.
	clk.advance(2 * time.Second)
	if _, err := tr.Authenticate(t.Context(), forgedToken(clk.now(), "again"), "10.0.0.66"); errors.Is(err, ErrSourceLimited) {
		t.Fatalf("after a refill: %v", err)
	}
	if n := calls.Load(); n != burst+2 {
		t.Fatalf("%d TokenReviews, want %d", n, burst+2)
	}
}

// TestSourceLimitIsA429: the handler turns a source limit into 429 busy with a
// whole-second Retry-After, which the hub client honours.
func TestSourceLimitIsA429(t *testing.T) {
	var sources []string
	status, header, eb := postWithAuth(t, authFunc(func(_ context.Context, _, source string) (Identity, error) {
		sources = append(sources, source)
		return Identity{}, &SourceLimitedError{RetryAfter: 2500 * time.Millisecond}
	}), http.Header{"X-Forwarded-For": {"10.9.9.9"}})
	if status != http.StatusTooManyRequests || eb.Error.Code != hubapi.CodeBusy || header.Get("Retry-After") != "3" {
		t.Errorf("got %d %+v Retry-After %q; want 429 busy 3", status, eb, header.Get("Retry-After"))
	}
	if d := cmp.Diff([]string{"127.0.0.1"}, sources); d != "" {
		t.Errorf("source (-want +got), the TCP peer and never a header:\n%s", d)
	}
}

func TestSourceLimiterForgetsLeastRecent(t *testing.T) {
	now := time.Now()
	l := newSourceLimiter(1, 1, 2)
	for _, s := range []string{"a", "b"} {
		if ok, _ := l.allow(s, now); !ok {
			t.Fatalf("%s: first review refused", s)
		}
	}
	if ok, _ := l.allow("a", now); ok {
		t.Fatal("a: second review within the burst allowed")
	}
	l.allow("c", now) // forgets b, the least recently seen
	if len(l.buckets) != 2 || l.order.Len() != 2 {
		t.Fatalf("%d buckets, want 2", len(l.buckets))
	}
	if _, ok := l.buckets["b"]; ok {
		t.Error("b was kept; a was seen more recently")
	}
}
