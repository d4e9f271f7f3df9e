package hub

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/aiquota/aiquota/internal/naming"
)

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create

// Extra keys the API server puts on a pod-bound service-account token's user.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
	saPrefix     = "system:serviceaccount:"
)

// Identity is who a verified token belongs to: a service account and the pod the
// token is bound to.
type Identity struct {
	Namespace      string
	ServiceAccount string
	PodName        string
	PodUID         string
}

// Authenticator turns a bearer token into the pod identity it proves.
type Authenticator interface {
	// Authenticate returns ErrUnauthenticated (wrapped) for a token that proves
	// nothing, ErrNotPodBound for a valid token of no pod, a *SourceLimitedError
	// when source (the caller's address) has used up its checks for now, and any
	// other error when the token could not be checked (the caller should retry).
	Authenticate(ctx context.Context, token, source string) (Identity, error)
}

// Authentication failures.
var (
	ErrUnauthenticated = errors.New("the token is not valid for the control channel")
	ErrNotPodBound     = errors.New("the token is not a service-account token bound to a pod")
	// ErrBusy: too many tokens are being reviewed already; the caller should come
	// back later rather than wait (a fleet reconnecting to a new leader).
	ErrBusy = errors.New("too many token reviews in progress")
	// ErrSourceLimited: the caller's address has used up its token reviews for now
	// (errors.Is matches a *SourceLimitedError).
	ErrSourceLimited = errors.New("too many token reviews for this source address")
)

// SourceLimitedError is ErrSourceLimited with the time until the source may have
// a token reviewed again.
type SourceLimitedError struct{ RetryAfter time.Duration }

func (e *SourceLimitedError) Error() string {
	return fmt.Sprintf("%v; retry in %s", ErrSourceLimited, e.RetryAfter.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrSourceLimited) true.
func (e *SourceLimitedError) Is(target error) bool { return target == ErrSourceLimited }

// DefaultTokenCacheTTL is how long a reviewed token is trusted by default.
const DefaultTokenCacheTTL = 2 * time.Minute

// TokenReviewer checks tokens with the API server's TokenReview, for the control
// channel's audience, and caches what it learns.
//
// A token is first read without verification (prefilter): one that is not a
// well-formed JWT, has expired or is not for the audience is refused without a
// review, so garbage costs the API server nothing. Each source address has a
// token bucket of reviews (a small LRU of them), so one source sending tokens that
// look right cannot use up the reviews other sidecars need.
//
// The cache is keyed by the SHA-256 of the token, never the token; it is bounded
// (least recently used entries go first) and an entry lives at most TTL and never
// past the token's own expiry, so a revoked or deleted pod's token is refused again
// within TTL. Each entry's lifetime is jittered, so a fleet that was reviewed
// together (after a leader change) is not reviewed again all at once. Refusals are
// cached for a few seconds, so a caller retrying a bad token does not turn into a
// TokenReview per request. Concurrent checks of one token share one review; at most
// MaxInFlight reviews run at once, and a check that cannot start one within
// MaxWait gets ErrBusy, so a fleet reconnecting together is paced instead of
// flooding the API server or timing out.
type TokenReviewer struct {
	client      client.Client
	audience    string
	ttl         time.Duration
	negativeTTL time.Duration
	maxWait     time.Duration
	now         func() time.Time
	sem         chan struct{}
	onReview    func(result string)
	sources     *sourceLimiter

	mu       sync.Mutex
	cache    *lru[[32]byte, reviewed]
	inflight map[[32]byte]*pendingReview
}

// reviewed is a token review's result.
type reviewed struct {
	id  Identity
	err error
}

type pendingReview struct {
	done chan struct{}
	id   Identity
	err  error
}

// TokenReviewerOptions configure a TokenReviewer; zero values take the defaults.
type TokenReviewerOptions struct {
	// Audience defaults to naming.TokenAudience.
	Audience string
	// TTL of a successful review, default two minutes (tokens live at least ten);
	// each entry lives a random 80-100% of it.
	TTL time.Duration
	// NegativeTTL of a refusal, default five seconds.
	NegativeTTL time.Duration
	// MaxEntries bounds the cache, default 20000.
	MaxEntries int
	// MaxInFlight bounds concurrent TokenReviews, default 16.
	MaxInFlight int
	// MaxWait bounds the wait for a review slot, default two seconds.
	MaxWait time.Duration
	// Now is the clock, default time.Now.
	Now func() time.Time
	// OnReview is told the result of each TokenReview call ("authenticated",
	// "refused", "error") and of each check that made none ("busy", "prefiltered"
	// for a prefilter refusal, "sourceLimited"), for metrics.
	OnReview func(result string)
	// ReviewsPerSecondPerSource and ReviewBurstPerSource size each source
	// address's token bucket of reviews, ReviewSources how many are remembered;
	// defaults DefaultReviewsPerSecondPerSource, DefaultReviewBurstPerSource and
	// DefaultReviewSources.
	ReviewsPerSecondPerSource float64
	ReviewBurstPerSource      int
	ReviewSources             int
}

// NewTokenReviewer returns a reviewer that creates TokenReviews with c.
func NewTokenReviewer(c client.Client, o TokenReviewerOptions) *TokenReviewer {
	if o.Audience == "" {
		o.Audience = naming.TokenAudience
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTokenCacheTTL
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 2 * time.Second
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = 5 * time.Second
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 20000
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 16
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OnReview == nil {
		o.OnReview = func(string) {}
	}
	if o.ReviewsPerSecondPerSource <= 0 {
		o.ReviewsPerSecondPerSource = DefaultReviewsPerSecondPerSource
	}
	if o.ReviewBurstPerSource <= 0 {
		o.ReviewBurstPerSource = DefaultReviewBurstPerSource
	}
	if o.ReviewSources <= 0 {
		o.ReviewSources = DefaultReviewSources
	}
	return &TokenReviewer{
		client: c, audience: o.Audience, ttl: o.TTL, negativeTTL: o.NegativeTTL, maxWait: o.MaxWait, now: o.Now,
		sem: make(chan struct{}, o.MaxInFlight), onReview: o.OnReview,
		sources:  newSourceLimiter(o.ReviewsPerSecondPerSource, o.ReviewBurstPerSource, o.ReviewSources),
		cache:    newLRU[[32]byte, reviewed](o.MaxEntries),
		inflight: map[[32]byte]*pendingReview{},
	}
}

// Authenticate implements Authenticator.
func (t *TokenReviewer) Authenticate(ctx context.Context, token, source string) (Identity, error) {
	now := t.now()
	c, err := prefilter(token, t.audience, now)
	if err != nil {
		t.onReview("prefiltered")
		return Identity{}, err
	}
	key := sha256.Sum256([]byte(token))
	t.mu.Lock()
	if r, ok := t.cache.get(key, now); ok {
		t.mu.Unlock()
		return r.id, r.err
	}
	if p, ok := t.inflight[key]; ok {
		t.mu.Unlock()
		select {
		case <-p.done:
			return p.id, p.err
		case <-ctx.Done():
			return Identity{}, fmt.Errorf("wait for the token review: %w", ctx.Err())
		}
	}
	if ok, wait := t.sources.allow(source, now); !ok {
		t.mu.Unlock()
		t.onReview("sourceLimited")
		return Identity{}, &SourceLimitedError{RetryAfter: wait}
	}
	p := &pendingReview{done: make(chan struct{})}
	t.inflight[key] = p
	t.mu.Unlock()

	p.id, p.err = t.review(ctx, token)

	t.mu.Lock()
	delete(t.inflight, key)
	if ttl := t.ttlFor(c.exp, p.err, now); ttl > 0 {
		t.cache.put(key, reviewed{p.id, p.err}, now.Add(ttl))
	}
	t.mu.Unlock()
	close(p.done)
	return p.id, p.err
}

// ttlFor is how long a result may be cached: a refusal briefly, an identity until
// TTL or shortly before the token expires (exp, read by the prefilter and now
// verified), and a failed check not at all.
func (t *TokenReviewer) ttlFor(exp time.Time, err error, now time.Time) time.Duration {
	switch {
	case errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrNotPodBound):
		return t.negativeTTL
	case err != nil:
		return 0
	}
	ttl := time.Duration(float64(t.ttl) * (0.8 + 0.2*rand.Float64()))
	// Stop trusting the token a little before it expires.
	return min(ttl, exp.Sub(now)-5*time.Second)
}

// Len is the number of cached results.
func (t *TokenReviewer) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cache.len()
}

func (t *TokenReviewer) review(ctx context.Context, token string) (Identity, error) {
	wait := time.NewTimer(t.maxWait)
	defer wait.Stop()
	select {
	case t.sem <- struct{}{}:
		defer func() { <-t.sem }()
	case <-wait.C:
		t.onReview("busy")
		return Identity{}, ErrBusy
	case <-ctx.Done():
		return Identity{}, fmt.Errorf("wait to review the token: %w", ctx.Err())
	}
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{t.audience}}}
	if err := t.client.Create(ctx, tr); err != nil {
		t.onReview("error")
		// The error names the API call, never the token.
		return Identity{}, fmt.Errorf("create TokenReview: %w", err)
	}
	id, err := identityOf(tr.Status, t.audience)
	if err != nil {
		t.onReview("refused")
	} else {
		t.onReview("authenticated")
	}
	return id, err
}

// identityOf reads a TokenReview's verdict: authenticated for our audience, a
// service account, bound to a pod.
func identityOf(st authenticationv1.TokenReviewStatus, audience string) (Identity, error) {
	if !st.Authenticated {
		if st.Error != "" {
			return Identity{}, fmt.Errorf("%w: %s", ErrUnauthenticated, st.Error)
		}
		return Identity{}, ErrUnauthenticated
	}
	audOK := false
	for _, a := range st.Audiences {
		if a == audience {
			audOK = true
		}
	}
	if !audOK {
		return Identity{}, fmt.Errorf("%w: the token is not for audience %s", ErrUnauthenticated, audience)
	}
	rest, ok := strings.CutPrefix(st.User.Username, saPrefix)
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || sa == "" {
		return Identity{}, fmt.Errorf("%w: it belongs to %q", ErrNotPodBound, st.User.Username)
	}
	name, uid := st.User.Extra[extraPodName], st.User.Extra[extraPodUID]
	if len(name) != 1 || len(uid) != 1 || name[0] == "" || uid[0] == "" {
		return Identity{}, fmt.Errorf("%w: service account %s/%s, no pod", ErrNotPodBound, ns, sa)
	}
	return Identity{Namespace: ns, ServiceAccount: sa, PodName: name[0], PodUID: uid[0]}, nil
}
