// Package sidecar is the limiter's HTTP side: a proxy on localhost that speaks the
// providers' own wire formats, puts every request through the limiter engine
// (queueing, retries, circuit breaking, header learning), and serves health,
// readiness, metrics and /state. Configuration is loaded from the rendered file and
// reloaded atomically when it changes.
package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
)

// Defaults for Options fields left zero.
const (
	DefaultMaxBodyBytes = 32 << 20
	// DefaultBodyReadTimeout bounds reading a request body in total: an app on
	// localhost sends even a 32 MiB body in well under a second.
	DefaultBodyReadTimeout = 30 * time.Second
	DefaultPollInterval    = 5 * time.Second
	// debounce lets a burst of file events (a ConfigMap swap is several) settle.
	debounce = 100 * time.Millisecond
)

// Identity is the pod the sidecar runs in (downward API), for logs and /state.
type Identity struct {
	PodName      string `json:"podName,omitempty"`
	PodNamespace string `json:"podNamespace,omitempty"`
	PodUID       string `json:"podUID,omitempty"`
}

// Options configure a Server.
type Options struct {
	// ConfigPath is the rendered limiter config file.
	ConfigPath string
	// DefaultPriority (1..9) applies to requests without a priority header; 0 means
	// the chain's defaultPriority, else 5.
	DefaultPriority int
	// MaxBodyBytes bounds request bodies (413 above it).
	MaxBodyBytes int64
	// BodyReadTimeout bounds the whole read of a request body, however it trickles
	// in (408 and a closed connection after it).
	BodyReadTimeout time.Duration
	// BodyMemoryBytes bounds the bytes request bodies and kept response copies hold
	// across all requests; 0 means BodyMemoryBudget(MaxBodyBytes). MaxBodyBytes is
	// lowered to it when larger, since such a body could never be read.
	BodyMemoryBytes int64
	// BodyMemoryWait is how long a request waits for body memory before a 503.
	BodyMemoryWait time.Duration
	// PollInterval is how often the config's content hash is checked, a backstop for
	// missed file events.
	PollInterval time.Duration
	Logger       *slog.Logger
	// AccessLogSample is the share of requests (0..1) that get an access log line;
	// 0 means none.
	AccessLogSample float64
	Identity        Identity
	// Transport carries upstream calls; nil means a transport tuned for many
	// concurrent calls to few hosts.
	Transport http.RoundTripper
	// Engine options (tests use a short aging step).
	Engine limiter.Options
}

// Server is the sidecar. Create it with New, run Watch, serve ProxyHandler on the
// localhost listener and AdminHandler on the pod-IP listener.
type Server struct {
	opts      Options
	log       *slog.Logger
	engine    *limiter.Engine
	transport http.RoundTripper
	metrics   *metrics
	access    *accessLog
	counters  *counterCache
	learner   *promptLearner
	bytes     *byteBudget

	live     atomic.Pointer[liveConfig]
	draining atomic.Bool
	panics   atomic.Int64 // also a metric; read by tests

	reloadMu  sync.Mutex // one reload at a time
	statusMu  sync.Mutex
	loadedAt  time.Time
	lastErr   string
	lastErrAt time.Time
}

// New builds a server and loads the configuration once. A configuration that fails
// to load is not fatal: the server runs not-ready and reloads when the file changes.
func New(opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.BodyReadTimeout <= 0 {
		opts.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if opts.BodyMemoryBytes <= 0 {
		opts.BodyMemoryBytes = BodyMemoryBudget(opts.MaxBodyBytes)
	}
	if opts.BodyMemoryWait <= 0 {
		opts.BodyMemoryWait = DefaultBodyMemoryWait
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Transport == nil {
		opts.Transport = NewTransport()
	}
	if opts.MaxBodyBytes > opts.BodyMemoryBytes {
		opts.Logger.Warn("the body limit is above the memory bodies may hold; lowering it", "maxBodyBytes", opts.MaxBodyBytes, "bodyMemoryBytes", opts.BodyMemoryBytes)
		opts.MaxBodyBytes = opts.BodyMemoryBytes
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		engine:    limiter.New(opts.Engine),
		transport: opts.Transport,
		counters:  newCounterCache(),
		learner:   newPromptLearner(),
		bytes:     newByteBudget(opts.BodyMemoryBytes),
		access:    newAccessLog(opts.Logger, opts.AccessLogSample),
	}
	s.metrics = newMetrics(s.engine, s.bytes)
	if err := s.Reload(); err != nil {
		s.log.Error("limiter config not loaded; not ready until a valid one appears", "path", opts.ConfigPath, "error", err)
	}
	return s
}

// NewTransport is an upstream transport for a sidecar: many idle connections per
// host (a sidecar talks to one or two providers), HTTP/2 when offered, and no
// overall timeout (per-attempt first-byte and idle timeouts come from the policy).
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Engine is the limiter engine, for the hub client (Snapshot) and the
// lease allocator (Engine.Account(...).SetLimit).
func (s *Server) Engine() *limiter.Engine { return s.engine }

// Config is the configuration in force and the hash of its document (as /state
// and the config_info metric show it), or nil before a valid one has loaded. It is
// how the hub client learns what to report on, so the file has one reader. The
// configuration is immutable: callers only read it.
func (s *Server) Config() (*limiterconfig.Config, string) {
	live := s.live.Load()
	if live == nil {
		return nil, ""
	}
	return live.cfg, live.hash
}

// Ready reports whether a valid configuration with readable keys is in force and
// the server is not draining.
func (s *Server) Ready() bool { return s.live.Load() != nil && !s.draining.Load() }

// Drain marks the server not ready, the first step of a graceful shutdown, and
// ends every wait for capacity within waitsWithin (Engine.EndWaitsWithin).
func (s *Server) Drain(waitsWithin time.Duration) {
	s.draining.Store(true)
	s.metrics.ready.Set(0)
	s.engine.EndWaitsWithin(waitsWithin)
}

// Reload reads the configuration and its key files and, when they changed, swaps
// them in atomically. On error the configuration in force stays, and the error is
// logged, counted and shown in /state.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	src, cfg, err := readSource(s.opts.ConfigPath)
	var live *liveConfig
	if err == nil {
		if cur := s.live.Load(); cur != nil && cur.sourceHash == src.hash {
			s.statusMu.Lock()
			s.lastErr, s.lastErrAt = "", time.Time{}
			s.statusMu.Unlock()
			return nil
		}
		live, err = buildLiveConfig(src, cfg, s.opts.DefaultPriority)
	}
	if err != nil {
		s.metrics.configErrors.Inc()
		s.statusMu.Lock()
		s.lastErr, s.lastErrAt = err.Error(), time.Now().UTC()
		s.statusMu.Unlock()
		return err
	}
	// The engine first: a request that sees the new liveConfig must find its pools.
	s.engine.Apply(live.cfg)
	old := s.live.Swap(live)
	s.metrics.configReloads.Inc()
	s.metrics.configInfo.Reset()
	s.metrics.configInfo.With(live.hash, sourceName(live)).Set(1)
	if !s.draining.Load() {
		s.metrics.ready.Set(1)
	}
	s.statusMu.Lock()
	s.loadedAt = time.Now().UTC()
	s.lastErr, s.lastErrAt = "", time.Time{}
	s.statusMu.Unlock()
	if len(live.unmounted) > 0 {
		s.log.Warn("limiter config names keys whose files are not mounted; their providers are left out until the pod is recreated",
			"path", s.opts.ConfigPath, "unmountedKeys", live.unmounted)
	}
	if old == nil {
		s.log.Info("limiter config loaded", "path", s.opts.ConfigPath, "hash", live.hash, "source", sourceName(live), "providers", len(live.providers))
	} else {
		s.log.Info("limiter config reloaded", "path", s.opts.ConfigPath, "hash", live.hash, "previousHash", old.hash, "source", sourceName(live))
	}
	return nil
}

func sourceName(live *liveConfig) string {
	src := live.cfg.Source
	if src.Kind == "" && src.Name == "" {
		return ""
	}
	return fmt.Sprintf("%s/%s/%s", src.Kind, src.Namespace, src.Name)
}

// Watch starts reloading on change until ctx ends: on fsnotify events in the
// config file's directory (a ConfigMap update swaps the ..data symlink there) and,
// as a backstop that also notices rotated key files elsewhere, on a content-hash
// poll every PollInterval. The watch is in place when Watch returns.
func (s *Server) Watch(ctx context.Context) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(s.opts.ConfigPath)); err == nil {
			events, errs = w.Events, w.Errors
		} else {
			w.Close()
		}
	}
	if err != nil {
		s.log.Warn("config file events unavailable; relying on polling", "error", err, "interval", s.opts.PollInterval)
		w = nil
	}
	go s.watchLoop(ctx, w, events, errs)
}

func (s *Server) watchLoop(ctx context.Context, w *fsnotify.Watcher, events <-chan fsnotify.Event, errs <-chan error) {
	if w != nil {
		defer w.Close()
	}
	poll := time.NewTicker(s.opts.PollInterval)
	defer poll.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	reload := func(why string) {
		if err := s.Reload(); err != nil {
			s.log.Error("limiter config reload failed; keeping the configuration in force", "trigger", why, "path", s.opts.ConfigPath, "error", err)
		}
	}
	// A change between New and now had no watcher to see it.
	reload("watchStart")
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			settle.Reset(debounce)
		case err := <-errs:
			s.log.Warn("config file watch error", "error", err)
		case <-settle.C:
			reload("fileEvent")
		case <-poll.C:
			reload("poll")
		}
	}
}

// AdminHandler serves /healthz, /readyz and /metrics, and nothing else: it listens
// on the pod IP for the kubelet and Prometheus.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", s.metrics.reg)
	return mux
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	switch {
	case s.draining.Load():
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("draining\n"))
	case s.live.Load() == nil:
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("no valid limiter configuration loaded\n"))
	default:
		_, _ = w.Write([]byte("ok\n"))
	}
}

// ProxyHandler serves the provider routes and /state; it belongs on the localhost
// listener only.
func (s *Server) ProxyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/state":
			if r.Method == http.MethodGet {
				s.serveState(w)
				return
			}
		case "/healthz":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte("ok\n"))
			return
		case "/readyz":
			s.serveReady(w, r)
			return
		}
		s.serveProxy(w, r)
	})
}

// State is what /state serves.
type State struct {
	Identity Identity         `json:"identity"`
	Ready    bool             `json:"ready"`
	Draining bool             `json:"draining"`
	Config   ConfigState      `json:"config"`
	Engine   limiter.Snapshot `json:"engine"`
}

// ConfigState describes the configuration in force and the last failed load.
type ConfigState struct {
	Path            string    `json:"path"`
	Hash            string    `json:"hash,omitempty"`
	Source          string    `json:"source,omitempty"`
	Generation      int64     `json:"generation,omitempty"`
	LoadedAt        time.Time `json:"loadedAt,omitzero"`
	LastReloadError string    `json:"lastReloadError,omitempty"`
	LastErrorAt     time.Time `json:"lastReloadErrorAt,omitzero"`
}

// State captures the sidecar's state.
func (s *Server) State() State {
	st := State{Identity: s.opts.Identity, Ready: s.Ready(), Draining: s.draining.Load(), Engine: s.engine.Snapshot()}
	st.Config.Path = s.opts.ConfigPath
	if live := s.live.Load(); live != nil {
		st.Config.Hash = live.hash
		st.Config.Source = sourceName(live)
		st.Config.Generation = live.cfg.Source.Generation
	}
	s.statusMu.Lock()
	st.Config.LoadedAt, st.Config.LastReloadError, st.Config.LastErrorAt = s.loadedAt, s.lastErr, s.lastErrAt
	s.statusMu.Unlock()
	return st
}

func (s *Server) serveState(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s.State()); err != nil {
		s.log.Debug("writing /state", "error", err)
	}
}

// errNotReady is the local answer while no configuration is loaded.
var errNotReady = errors.New("the aiquota limiter has no valid configuration loaded yet; see its logs or /state")

// writeNotReady answers 503 in the caller's dialect.
func writeNotReady(w http.ResponseWriter, d provider.Dialect) {
	provider.WriteError(w, d, &provider.Error{Status: http.StatusServiceUnavailable, Code: "not_ready", Message: errNotReady.Error(), RetryAfter: time.Second})
}
