package hub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/naming"
)

// Handler serves the report endpoint: it authenticates the caller's pod-bound
// service-account token, checks that the report is about that pod and its
// namespace and about the configuration the pod was injected for, and folds the
// report into the aggregator.
//
// Only the leader aggregates. Every replica serves the endpoint, and one that does
// not lead answers 503 notLeader with Retry-After and closes the connection, so the
// sidecar's retry opens a new connection, which the Service may route to the leader.
// A report lost this way loses nothing: counters are cumulative.
type Handler struct {
	Aggregator    *Aggregator
	Authenticator Authenticator
	// Injections checks that the pod was injected for the report's configuration.
	Injections *InjectionChecker
	Metrics    *Metrics
	Log        logr.Logger
	// Leading is closed once this replica leads (mgr.Elected()).
	Leading <-chan struct{}
	// Leases answers with account leases; nil answers with none.
	Leases *Leases
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code := h.serve(w, r)
	if h.Metrics == nil {
		return
	}
	if code == "" {
		h.Metrics.reportsAccepted.Inc()
		h.Metrics.ingestDuration.Observe(time.Since(start).Seconds())
	} else {
		h.Metrics.reportsRefused.WithLabelValues(code).Inc()
	}
}

// serve handles one request and returns the refusal code, "" when accepted.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) string {
	if r.URL.Path != hubapi.Path {
		return refuse(w, http.StatusNotFound, hubapi.CodeNotFound, fmt.Sprintf("the control channel serves POST %s only", hubapi.Path))
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return refuse(w, http.StatusMethodNotAllowed, hubapi.CodeMethod, fmt.Sprintf("%s %s: reports are POSTed", r.Method, hubapi.Path))
	}
	select {
	case <-h.Leading:
	default:
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Connection", "close")
		return refuse(w, http.StatusServiceUnavailable, hubapi.CodeNotLeader, "this manager replica does not lead; retry, the next connection may reach the leader")
	}
	token, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="aiquota-control"`)
		return refuse(w, http.StatusUnauthorized, hubapi.CodeUnauthenticated, "no bearer token: send the pod's projected service-account token for audience aiquota.dev/control")
	}
	id, err := h.Authenticator.Authenticate(r.Context(), token, sourceOf(r))
	var limited *SourceLimitedError
	switch {
	case errors.As(err, &limited):
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(limited.RetryAfter.Seconds())))))
		return refuse(w, http.StatusTooManyRequests, hubapi.CodeBusy, "too many tokens to check from this address; retry after the Retry-After delay")
	case errors.Is(err, ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="aiquota-control", error="invalid_token"`)
		return refuse(w, http.StatusUnauthorized, hubapi.CodeUnauthenticated, "the bearer token is not valid for audience aiquota.dev/control (expired, forged, or for another audience)")
	case errors.Is(err, ErrNotPodBound):
		return refuse(w, http.StatusForbidden, hubapi.CodeForbidden, err.Error())
	case errors.Is(err, ErrBusy):
		// Spread the retries of a fleet that arrived together.
		w.Header().Set("Retry-After", strconv.Itoa(2+rand.IntN(9)))
		return refuse(w, http.StatusServiceUnavailable, hubapi.CodeBusy, "the manager is checking many tokens at once; retry after the Retry-After delay")
	case err != nil:
		h.Log.Error(err, "token check failed")
		w.Header().Set("Retry-After", "5")
		return refuse(w, http.StatusServiceUnavailable, hubapi.CodeUnavailable, "the API server could not check the token; retry later")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != hubapi.ContentType {
			return refuse(w, http.StatusUnsupportedMediaType, hubapi.CodeUnsupportedMedia, fmt.Sprintf("Content-Type is %q; reports are %s", truncateText(ct), hubapi.ContentType))
		}
	}
	if r.ContentLength > hubapi.MaxReportBytes {
		return refuse(w, http.StatusRequestEntityTooLarge, hubapi.CodeTooLarge, fmt.Sprintf("the report is %d bytes; at most %d are accepted", r.ContentLength, hubapi.MaxReportBytes))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, hubapi.MaxReportBytes))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return refuse(w, http.StatusRequestEntityTooLarge, hubapi.CodeTooLarge, fmt.Sprintf("the report is more than the %d bytes accepted", hubapi.MaxReportBytes))
	case err != nil:
		// Usually a sidecar that gave up waiting; nobody reads this answer.
		return refuse(w, http.StatusBadRequest, hubapi.CodeReadFailed, "reading the report failed: "+err.Error())
	}
	rep, err := hubapi.Parse(body)
	if err != nil {
		return refuse(w, http.StatusBadRequest, hubapi.CodeMalformed, err.Error())
	}
	if code, msg := authorize(id, rep); code != "" {
		return refuse(w, http.StatusForbidden, code, msg)
	}
	switch err := h.Injections.Check(r.Context(), id, rep.Config); {
	case errors.Is(err, errNotInjected):
		return refuse(w, http.StatusForbidden, hubapi.CodeNotInjected, fmt.Sprintf(
			"%v; a pod may only report about the %s or %s its %s annotation names",
			err, hubapi.KindFallbackChain, hubapi.KindProviderQuota, naming.AnnotationInjected))
	case err != nil:
		h.Log.Error(err, "pod lookup failed", "namespace", id.Namespace, "pod", id.PodName)
		w.Header().Set("Retry-After", "5")
		return refuse(w, http.StatusServiceUnavailable, hubapi.CodeUnavailable, "the API server could not be asked about the pod; retry later")
	}
	if msg := quotaScope(rep); msg != "" {
		return refuse(w, http.StatusForbidden, hubapi.CodeNotInjected, msg)
	}
	if err := h.Aggregator.Ingest(rep); err != nil {
		if errors.Is(err, ErrStale) {
			return refuse(w, http.StatusConflict, hubapi.CodeStale, fmt.Sprintf("report %d of boot %s was already received", rep.Seq, rep.Boot.ID))
		}
		return refuse(w, http.StatusBadRequest, hubapi.CodeMalformed, err.Error())
	}
	resp := hubapi.Response{SchemaVersion: hubapi.SchemaVersion, Seq: rep.Seq, Leases: h.Leases.Answer(rep)}
	if !rep.Final {
		// Left out until the manager knows (its ledger is seeded from the status at
		// the first flush of its term): the sidecar's daily caps stay closed.
		resp.Today, resp.DayKnown = h.Aggregator.PoolsToday(rep)
	}
	writeJSON(w, http.StatusOK, resp)
	return ""
}

// authorize checks that a report is about the token's own pod and namespace.
func authorize(id Identity, r *hubapi.Report) (code, msg string) {
	if r.Pod.Namespace != id.Namespace || r.Pod.Name != id.PodName || r.Pod.UID != id.PodUID {
		return hubapi.CodePodMismatch, fmt.Sprintf("the report claims pod %s/%s (uid %s) but the token is bound to pod %s/%s (uid %s)",
			truncateText(r.Pod.Namespace), truncateText(r.Pod.Name), truncateText(r.Pod.UID), id.Namespace, id.PodName, id.PodUID)
	}
	if r.Config.Namespace != id.Namespace {
		return hubapi.CodeNamespace, fmt.Sprintf("the report is about %s %s/%s; a pod may only report about resources in its own namespace %s",
			r.Config.Kind, truncateText(r.Config.Namespace), truncateText(r.Config.Name), id.Namespace)
	}
	return "", ""
}

// quotaScope refuses a direct-use report that names another ProviderQuota than its
// own: such a sidecar's config has that one provider, so anything else is made up
// to write into another quota's status. A chain's report may name the chain's
// quotas; those are not checked here.
func quotaScope(r *hubapi.Report) string {
	if r.Config.Kind != hubapi.KindProviderQuota {
		return ""
	}
	var providers []string
	for _, e := range r.Chain {
		providers = append(providers, e.Provider)
	}
	for _, a := range r.Accounts {
		providers = append(providers, a.Provider)
	}
	for _, q := range r.Queues {
		providers = append(providers, q.Provider)
	}
	for _, b := range r.Breakers {
		providers = append(providers, b.Provider)
	}
	for _, p := range providers {
		if p != r.Config.Name {
			return fmt.Sprintf("the report is about ProviderQuota %s but names ProviderQuota %s; a sidecar for one quota reports only about it",
				truncateText(r.Config.Name), truncateText(p))
		}
	}
	return ""
}

// sourceOf is the caller's address without the port: the TCP peer, never a
// header the caller could set.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

func refuse(w http.ResponseWriter, status int, code, msg string) string {
	writeJSON(w, status, hubapi.ErrorBody{Error: hubapi.ErrorDetail{Code: code, Message: msg}})
	return code
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", hubapi.ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func truncateText(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Listener serves a Handler over TLS on an address; it is a manager Runnable that
// runs on every replica.
type Listener struct {
	Address string
	Handler http.Handler
	// TLS must provide the serving certificate (GetCertificate or Certificates).
	TLS *tls.Config
	Log logr.Logger
	// Ready, when not nil, receives the bound address once listening (tests use
	// port 0).
	Ready chan<- net.Addr
}

// NeedLeaderElection is false: followers answer notLeader rather than refusing
// connections, so sidecars get a clear answer.
func (l *Listener) NeedLeaderElection() bool { return false }

// Start listens until ctx ends, then shuts down gracefully.
func (l *Listener) Start(ctx context.Context) error {
	cfg := l.TLS.Clone()
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	ln, err := net.Listen("tcp", l.Address)
	if err != nil {
		return fmt.Errorf("control channel: listen on %s: %w", l.Address, err)
	}
	srv := &http.Server{
		Handler:           l.Handler,
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	l.Log.Info("control channel listening", "address", ln.Addr().String(), "path", hubapi.Path)
	if l.Ready != nil {
		l.Ready <- ln.Addr()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("control channel: serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	return nil
}
