package simulator

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxBodyBytes caps a request body; larger ones get the persona's 413.
const maxBodyBytes = 8 << 20

// maxDynamicPools caps the pools an account creates for models its config does not
// name, so a client inventing model names cannot grow the simulator without bound.
// Past it, unknown models get the persona's 404 model-not-found.
const maxDynamicPools = 256

// Server is the simulated provider. It is an http.Handler serving every persona's
// routes plus the admin routes under /sim/.
type Server struct {
	seed     int64
	now      func() time.Time
	accounts []*account
	byKey    map[string]*account

	unauthenticated atomic.Int64
	unrouted        atomic.Int64
}

type account struct {
	index    int
	keyID    string
	provider string
	persona  persona
	limits   Limits
	latency  Latency

	listed   map[string]*pool // every configured model name -> its pool
	pools    []*pool          // configured pools, in config order
	names    []string         // configured model names, in config order
	dynamic  sync.Map         // unlisted model name -> *pool
	dynCount atomic.Int64

	seq      atomic.Uint64
	faults   atomic.Pointer[faultState]
	requests atomic.Int64
	mu       sync.Mutex // guards rejected
	rejected map[string]int64
}

// faultState is an account's faults and the instant their outage windows count from.
type faultState struct {
	Faults
	since time.Time
	codes []string // ErrorRates keys, sorted, so draws map to faults deterministically
}

func newFaultState(f Faults, since time.Time) *faultState {
	fs := &faultState{Faults: f, since: since}
	for k := range f.ErrorRates {
		fs.codes = append(fs.codes, k)
	}
	sort.Strings(fs.codes)
	return fs
}

func (fs *faultState) inOutage(now time.Time) bool {
	el := now.Sub(fs.since)
	for _, o := range fs.Outages {
		if el >= o.Start.D() && el < o.End.D() {
			return true
		}
	}
	return false
}

// drawError maps a uniform draw to an injected fault key, or "".
func (fs *faultState) drawError(u float64) string {
	acc := 0.0
	for _, k := range fs.codes {
		acc += fs.ErrorRates[k]
		if u < acc {
			return k
		}
	}
	return ""
}

// New validates cfg and builds a server whose buckets start full.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{seed: cfg.Seed, now: cfg.Now, byKey: map[string]*account{}}
	if s.now == nil {
		s.now = time.Now
	}
	now := s.now()
	for i, a := range cfg.Accounts {
		sum := sha256.Sum256([]byte(a.Key))
		acct := &account{
			index:    i,
			keyID:    "sha256:" + hex.EncodeToString(sum[:6]),
			provider: a.Provider,
			persona:  personaFor(a.Provider),
			limits:   a.Limits,
			latency:  a.Latency,
			listed:   map[string]*pool{},
		}
		for _, m := range a.Models {
			window := m.ContextWindow
			if window == 0 {
				window = DefaultContextWindow
			}
			p := newPool(m.Names[0], overlay(a.Limits, m.Limits), window, now)
			acct.pools = append(acct.pools, p)
			for _, n := range m.Names {
				acct.listed[n] = p
				acct.names = append(acct.names, n)
			}
		}
		acct.faults.Store(newFaultState(cloneFaults(a.Faults), now))
		s.accounts = append(s.accounts, acct)
		s.byKey[a.Key] = acct
	}
	return s, nil
}

// cloneFaults copies f so that a caller changing its maps or slices later cannot
// race with requests reading them.
func cloneFaults(f Faults) Faults {
	f.ErrorRates = maps.Clone(f.ErrorRates)
	f.Outages = slices.Clone(f.Outages)
	return f
}

// poolFor resolves a model to its pool: the configured pool naming it, or a pool of
// its own with the account's limits. ok is false only past maxDynamicPools.
func (a *account) poolFor(model string, now time.Time) (*pool, bool) {
	if p, ok := a.listed[model]; ok {
		return p, true
	}
	if p, ok := a.dynamic.Load(model); ok {
		return p.(*pool), true
	}
	if a.dynCount.Add(1) > maxDynamicPools {
		a.dynCount.Add(-1)
		return nil, false
	}
	p, loaded := a.dynamic.LoadOrStore(model, newPool(model, a.limits, DefaultContextWindow, now))
	if loaded {
		a.dynCount.Add(-1)
	}
	return p.(*pool), true
}

func (a *account) reject(reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rejected == nil {
		a.rejected = map[string]int64{}
	}
	a.rejected[reason]++
}

// SetFaults replaces the faults of the account whose key is key. Outage windows count
// from now.
func (s *Server) SetFaults(key string, f Faults) error {
	a, ok := s.byKey[key]
	if !ok {
		return errors.New("set faults: no account has that key")
	}
	v := &validator{what: "faults"}
	v.faults("faults", &f)
	if err := v.err(); err != nil {
		return fmt.Errorf("set faults of account %d: %w", a.index, err)
	}
	s.storeFaults(a, f)
	return nil
}

// storeFaults installs validated faults; their outage windows count from now.
func (s *Server) storeFaults(a *account, f Faults) {
	a.faults.Store(newFaultState(cloneFaults(f), s.now()))
}

// Reset refills every bucket, clears daily windows and counters, and restarts each
// account's request sequence, so a run after Reset draws the same randomness as the
// first. Faults stay as they are. Requests in flight still end and free their slots;
// their usage counts toward the new period.
func (s *Server) Reset() {
	now := s.now()
	s.unauthenticated.Store(0)
	s.unrouted.Store(0)
	for _, a := range s.accounts {
		a.seq.Store(0)
		a.requests.Store(0)
		a.mu.Lock()
		a.rejected = nil
		a.mu.Unlock()
		for _, p := range a.allPools() {
			p.reset(now)
		}
	}
}

// allPools lists configured pools, then dynamic ones by name.
func (a *account) allPools() []*pool {
	out := slices.Clone(a.pools)
	var dyn []*pool
	a.dynamic.Range(func(_, v any) bool {
		dyn = append(dyn, v.(*pool))
		return true
	})
	sort.Slice(dyn, func(i, j int) bool { return dyn[i].name < dyn[j].name })
	return append(out, dyn...)
}

// Stats returns the ground-truth counters.
func (s *Server) Stats() Stats {
	st := Stats{Unauthenticated: s.unauthenticated.Load(), Unrouted: s.unrouted.Load()}
	for _, a := range s.accounts {
		as := AccountStats{Index: a.index, KeyID: a.keyID, Provider: a.provider, Requests: a.requests.Load(), Pools: []PoolStats{}}
		a.mu.Lock()
		as.Rejected = maps.Clone(a.rejected)
		a.mu.Unlock()
		for _, p := range a.allPools() {
			as.Pools = append(as.Pools, p.stats())
		}
		st.Accounts = append(st.Accounts, as)
	}
	return st
}

// reqCtx is one request on its way through a route.
type reqCtx struct {
	s    *Server
	w    http.ResponseWriter
	r    *http.Request
	acct *account
	p    persona
	seq  uint64
	now  time.Time
	// For Gemini's model routes: the model and the method from the path.
	model, action string
}

func (c *reqCtx) fail(e *apiError) {
	c.p.writeError(c.w, e)
}

// countTokens answers a token-counting call with the prompt's size under the
// dialect's member name, or with the error found sizing it.
func (c *reqCtx) countTokens(pl *pool, name string, input int64, e *apiError) {
	if e != nil {
		c.failPool(pl, ReasonBadRequest, e)
		return
	}
	pl.countTokensCall()
	writeJSON(c.w, http.StatusOK, map[string]int64{name: input})
}

// failPool refuses a request that named a pool: it counts the refusal there and sends
// the pool's rate-limit headers with the error, as the providers do.
func (c *reqCtx) failPool(pl *pool, reason string, e *apiError) {
	pl.count(reason)
	c.p.setRateHeaders(c.w.Header(), pl.view(c.now), c.now)
	c.fail(e)
}

// failAccount refuses a request before a pool is known.
func (c *reqCtx) failAccount(reason string, e *apiError) {
	c.acct.reject(reason)
	c.fail(e)
}

// pool resolves the request's model, refusing it when the account has too many.
func (c *reqCtx) pool(model string) (*pool, bool) {
	pl, ok := c.acct.poolFor(model, c.now)
	if !ok {
		c.failAccount(ReasonBadRequest, &apiError{kind: kindNotFound, status: http.StatusNotFound, code: "model_not_found",
			message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", clip(model, 200))})
	}
	return pl, ok
}

// readBody reads the request body up to maxBodyBytes.
func (c *reqCtx) readBody() ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxBodyBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		c.failAccount(ReasonBadRequest, &apiError{kind: kindTooLarge, status: http.StatusRequestEntityTooLarge,
			message: fmt.Sprintf("Request body is larger than the %d bytes allowed.", maxBodyBytes)})
		return nil, false
	case err != nil:
		c.failAccount(ReasonBadRequest, &apiError{kind: kindInvalidJSON, status: http.StatusBadRequest, message: "Could not read the request body."})
		return nil, false
	}
	return body, true
}

type route struct {
	personas []string // who serves it; the first one's dialect answers callers without an account
	handle   func(*reqCtx)
}

var (
	openaiOnly   = []string{ProviderOpenAI}
	openaiLike   = []string{ProviderOpenAI, ProviderDeepSeek}
	deepseekOnly = []string{ProviderDeepSeek}
	modelListers = []string{ProviderOpenAI, ProviderDeepSeek, ProviderAnthropic}
	anthropicOne = []string{ProviderAnthropic}
	geminiOnly   = []string{ProviderGemini}
)

var fixedRoutes = map[string]route{
	"POST /v1/chat/completions":      {openaiLike, handleChat},
	"POST /chat/completions":         {deepseekOnly, handleChat},
	"POST /v1/completions":           {openaiOnly, handleCompletions},
	"POST /v1/embeddings":            {openaiOnly, handleEmbeddings},
	"POST /v1/responses":             {openaiOnly, handleResponses},
	"GET /v1/models":                 {modelListers, handleModels},
	"GET /models":                    {deepseekOnly, handleModels},
	"POST /v1/messages":              {anthropicOne, handleMessages},
	"POST /v1/messages/count_tokens": {anthropicOne, handleCountTokens},
	"GET /v1beta/models":             {geminiOnly, handleModels},
}

// match finds the route for a request, and for Gemini's model routes the model and
// method named by the path ("/v1beta/models/{model}:{method}").
func match(method, path string) (rt route, model, action string, ok bool) {
	if rt, ok := fixedRoutes[method+" "+path]; ok {
		return rt, "", "", true
	}
	for _, prefix := range []string{"/v1beta/models/", "/v1/models/"} {
		rest, found := strings.CutPrefix(path, prefix)
		if !found || rest == "" || strings.Contains(rest, "/") {
			continue
		}
		name, act, hasAction := strings.Cut(rest, ":")
		switch {
		case hasAction && method == http.MethodPost && name != "" &&
			(act == "generateContent" || act == "streamGenerateContent" || act == "countTokens"):
			return route{geminiOnly, handleGemini}, name, act, true
		case !hasAction && method == http.MethodGet && prefix == "/v1beta/models/":
			return route{geminiOnly, handleModel}, name, "", true
		case !hasAction && method == http.MethodGet:
			return route{modelListers, handleModel}, name, "", true
		}
	}
	return route{}, "", "", false
}

// ServeHTTP serves the provider routes and /sim/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/sim/") {
		s.serveAdmin(w, r)
		return
	}
	now := s.now()
	rt, model, action, routed := match(r.Method, r.URL.Path)
	acct, method, presented := s.authenticate(r)

	c := &reqCtx{s: s, w: w, r: r, acct: acct, now: now, model: model, action: action}
	switch {
	case acct != nil:
		c.p = acct.persona
	case routed:
		c.p = personaFor(rt.personas[0])
	default:
		c.p = openaiPersona{}
	}
	if !routed {
		s.unrouted.Add(1)
		c.fail(&apiError{kind: kindNotFound, status: http.StatusNotFound, message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, clip(r.URL.Path, 200))})
		return
	}
	if acct == nil {
		s.unauthenticated.Add(1)
		kind := kindAuthInvalid
		if !presented {
			kind = kindAuthMissing
		}
		c.fail(&apiError{kind: kind, status: http.StatusUnauthorized})
		return
	}
	acct.requests.Add(1)
	c.seq = acct.seq.Add(1)
	if !acct.persona.accepts(method) {
		c.failAccount(ReasonAuth, &apiError{kind: kindAuthMissing, status: http.StatusUnauthorized})
		return
	}
	if !slices.Contains(rt.personas, acct.provider) {
		c.failAccount(ReasonBadRequest, &apiError{kind: kindNotFound, status: http.StatusNotFound,
			message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, clip(r.URL.Path, 200))})
		return
	}
	if h := acct.persona.requestIDHeader(); h != "" {
		idr := requestRNG(s.seed, acct.index, c.seq, purposeID)
		w.Header().Set(h, newID(&idr, "req_"))
	}
	rt.handle(c)
}

// authenticate finds the account whose key the request carries, in any of the
// places some persona reads it. presented reports whether any credential was sent.
func (s *Server) authenticate(r *http.Request) (acct *account, method authMethod, presented bool) {
	try := func(key string, m authMethod) bool {
		if key == "" {
			return false
		}
		presented = true
		if a, ok := s.byKey[key]; ok {
			acct, method = a, m
			return true
		}
		return false
	}
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		if try(strings.TrimSpace(auth[7:]), authBearer) {
			return
		}
	}
	if try(r.Header.Get("x-api-key"), authXAPIKey) || try(r.Header.Get("x-goog-api-key"), authGoogHeader) {
		return
	}
	if strings.Contains(r.URL.RawQuery, "key=") {
		try(r.URL.Query().Get("key"), authQuery)
	}
	return
}

// --- admin ---

func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	switch r.Method + " " + r.URL.Path {
	case "GET /sim/stats":
		writeJSON(w, http.StatusOK, s.Stats())
	case "GET /sim/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	case "POST /sim/reset":
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	case "PUT /sim/faults":
		idx, err := strconv.Atoi(r.URL.Query().Get("account"))
		if err != nil || idx < 0 || idx >= len(s.accounts) {
			adminError(w, http.StatusBadRequest, fmt.Sprintf("account must be an index 0..%d", len(s.accounts)-1))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxConfigBytes))
		if err != nil {
			adminError(w, http.StatusRequestEntityTooLarge, "read faults: "+err.Error())
			return
		}
		f, err := ParseFaults(body)
		if err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.storeFaults(s.accounts[idx], f)
		w.WriteHeader(http.StatusNoContent)
	default:
		adminError(w, http.StatusNotFound, "simulator admin routes: GET /sim/stats, PUT /sim/faults?account=<index>, POST /sim/reset, GET /sim/healthz")
	}
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
