// Package hubclient is the sidecar's side of the control channel: every report
// interval it builds a report (internal/hubapi) from the limiter engine's snapshot
// and the configuration in force, and POSTs it to the manager over TLS with the
// pod's projected service-account token.
//
// It never touches the proxy's hot path: it runs in its own goroutine, takes one
// engine snapshot per report, and a slow or absent manager only delays reports.
// The token is read fresh for every report (the kubelet rotates it) and the CA
// bundle is re-read when its content changes. Failures back off exponentially and
// are logged at a bounded rate. Counters in reports are cumulative, so a lost
// report loses nothing.
package hubclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// Defaults.
const (
	// DefaultIdlePoll is how often the configuration is checked for a control
	// section while it has none.
	DefaultIdlePoll = 10 * time.Second
	// maxBackoff caps the delay between failed reports.
	maxBackoff = 2 * time.Minute
	// logEvery bounds failure logs to one per period (plus the first of a streak).
	logEvery = time.Minute
	// maxTokenBytes and maxCABytes bound the files read for each report.
	maxTokenBytes = 64 << 10
	maxCABytes    = 1 << 20
)

// Options configure a Client.
type Options struct {
	// Config returns the limiter configuration in force and the hash of its
	// document (sidecar.Server.Config), or nil before one has loaded: the client
	// reports on what the proxy enforces and never reads the file itself. Its
	// control section says where and how often to report, its source what the
	// report is about. The client only reads it.
	Config func() (*limiterconfig.Config, string)
	// Snapshot captures the engine's state (limiter.Engine.Snapshot).
	Snapshot func() limiter.Snapshot
	// Pod is this pod, from the downward API.
	Pod hubapi.Pod
	// Logger receives failures (rate-limited) and recoveries.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// IdlePoll replaces DefaultIdlePoll.
	IdlePoll time.Duration
	// Leases, when set, receives the manager's account leases (the limiter
	// engine); reports then carry each account's demand.
	Leases LeaseEngine
}

// demandRefresh is how soon the next report goes out while requests wait: a
// sidecar that needs more of its account asks again within a second, an idle one
// every report interval.
const demandRefresh = time.Second

// Client sends reports until stopped.
type Client struct {
	opts Options
	log  *slog.Logger
	boot hubapi.Boot

	mu       sync.Mutex // one report at a time
	seq      uint64
	caPEM    []byte
	caFile   string
	client   *http.Client
	failures int
	lastLog  time.Time
	quiet    int // failures not logged since lastLog

	leases *leases
	// Of the last report, for lapsed leases' fallback shares and demand refresh.
	limits    map[acctKey]hubapi.Limits
	margins   map[acctKey]float64
	wantsMore bool
}

// New returns a client for one process run: its boot ID is fresh.
func New(opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.IdlePoll <= 0 {
		opts.IdlePoll = DefaultIdlePoll
	}
	if opts.Config == nil {
		opts.Config = func() (*limiterconfig.Config, string) { return nil, "" }
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	c := &Client{
		opts: opts,
		log:  opts.Logger.With("component", "hubclient"),
		boot: hubapi.Boot{ID: hex.EncodeToString(id[:]), StartedAt: opts.Now().UTC()},
	}
	if opts.Leases != nil {
		c.leases = newLeases(opts.Leases)
	}
	return c
}

// BootID is this process's boot ID.
func (r *Client) BootID() string { return r.boot.ID }

// Run reports until ctx ends, and lets leases the manager did not renew lapse.
func (r *Client) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	lapse := time.NewTimer(time.Hour)
	lapse.Stop()
	defer lapse.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			timer.Reset(r.cycle(ctx))
		case <-lapse.C:
		}
		if next := r.lapseLeases(); !next.IsZero() {
			lapse.Reset(max(0, next.Sub(r.opts.Now())))
		}
	}
}

// lapseLeases applies the fallback share to leases past their expiry and returns
// when the next one expires.
func (r *Client) lapseLeases() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leases == nil {
		return time.Time{}
	}
	return r.leases.lapse(r.opts.Now(), r.limits, r.margins)
}

// cycle sends one report when the config has a control section and returns the
// delay until the next.
func (r *Client) cycle(ctx context.Context) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, hash := r.opts.Config()
	if cfg == nil || cfg.Control == nil {
		return r.opts.IdlePoll
	}
	ctl := cfg.Control
	interval := intervalOf(ctl)
	err := r.sendLocked(ctx, cfg, hash, false)
	if err == nil {
		if r.failures > 0 {
			r.log.Info("control channel reports resumed", "url", ctl.URL, "failedReports", r.failures)
		}
		r.failures, r.quiet = 0, 0
		if r.wantsMore && r.leases != nil {
			return min(interval, demandRefresh)
		}
		return interval
	}
	if ctx.Err() != nil {
		return interval
	}
	r.failures++
	r.logFailureLocked(ctl.URL, err)
	return r.backoff(interval, err)
}

// SendFinal sends one last report, marked final, so the manager forgets this
// sidecar at once. It gives up when ctx ends; call it with a short deadline.
func (r *Client) SendFinal(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, hash := r.opts.Config()
	if cfg == nil || cfg.Control == nil {
		return nil
	}
	return r.sendLocked(ctx, cfg, hash, true)
}

// intervalOf is the configured report interval, at least hubapi.MinReportInterval.
func intervalOf(ctl *limiterconfig.Control) time.Duration {
	return max(ctl.ReportInterval.D(), hubapi.MinReportInterval)
}

// backoff is the delay after a failure: exponential from the report interval, or
// from a second when the manager asked for a retry (a follower, or a leader busy
// checking a reconnecting fleet's tokens); never less than the manager's
// Retry-After; capped; with jitter so a fleet spreads out.
func (r *Client) backoff(interval time.Duration, err error) time.Duration {
	base := interval
	var se *statusError
	if errors.As(err, &se) && (se.code == hubapi.CodeNotLeader || se.code == hubapi.CodeBusy || se.code == hubapi.CodeUnavailable) {
		base = time.Second
	}
	d := base
	for i := 1; i < r.failures && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	if errors.As(err, &se) && se.retryAfter > d {
		d = se.retryAfter
	}
	return time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
}

func (r *Client) logFailureLocked(url string, err error) {
	now := r.opts.Now()
	if r.failures > 1 && now.Sub(r.lastLog) < logEvery {
		r.quiet++
		return
	}
	r.log.Warn("control channel report failed; retrying with backoff", "url", url, "error", err,
		"consecutiveFailures", r.failures, "unloggedFailures", r.quiet)
	r.lastLog, r.quiet = now, 0
}

// statusError is a refusal by the manager.
type statusError struct {
	status     int
	code       string
	message    string
	retryAfter time.Duration
}

func (e *statusError) Error() string {
	if e.code == "" {
		return fmt.Sprintf("manager answered %d", e.status)
	}
	return fmt.Sprintf("manager answered %d %s: %s", e.status, e.code, e.message)
}

func (r *Client) sendLocked(ctx context.Context, cfg *limiterconfig.Config, hash string, final bool) error {
	ctl := cfg.Control
	token, err := readBounded(ctl.TokenFile, maxTokenBytes)
	if err != nil {
		return fmt.Errorf("read the service-account token: %w", err)
	}
	tok := strings.TrimSpace(string(token))
	if tok == "" {
		return fmt.Errorf("the service-account token file %s is empty", ctl.TokenFile)
	}
	client, err := r.clientLocked(ctl)
	if err != nil {
		return err
	}
	r.seq++
	sentAt := r.opts.Now()
	snap := r.opts.Snapshot()
	rep := build(buildInput{
		cfg: cfg, hash: hash, snap: snap, pod: r.opts.Pod, boot: r.boot,
		seq: r.seq, sentAt: sentAt, interval: intervalOf(ctl), final: final,
	})
	if r.leases != nil {
		r.leases.annotate(rep, snap, sentAt)
		r.limits, r.margins = map[acctKey]hubapi.Limits{}, map[acctKey]float64{}
		for _, a := range rep.Accounts {
			k := acctKey{a.Provider, a.Pool, a.Key}
			r.limits[k], r.margins[k] = a.Limits, float64(a.SafetyMarginPercent)/100
		}
		r.wantsMore = wantsMore(rep)
	}
	body, err := hubapi.Marshal(rep)
	if err != nil {
		return fmt.Errorf("build the report: %w", err)
	}
	timeout := min(max(intervalOf(ctl), 2*time.Second), 10*time.Second)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ctl.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build the report request: %w", err)
	}
	req.Header.Set("Content-Type", hubapi.ContentType)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		var uae x509.UnknownAuthorityError
		if errors.As(err, &uae) {
			r.caPEM = nil // look at the CA file afresh next time
		}
		return fmt.Errorf("post the report: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return refusal(resp)
	}
	ack, err := hubapi.ReadResponse(resp.Body)
	if err != nil {
		return err
	}
	if ack.Seq != rep.Seq {
		return fmt.Errorf("the manager acknowledged report %d, not %d", ack.Seq, rep.Seq)
	}
	if r.leases != nil && !final {
		r.leases.apply(rep, ack, sentAt)
	}
	return nil
}

func refusal(resp *http.Response) error {
	se := &statusError{status: resp.StatusCode}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			se.retryAfter = min(time.Duration(n)*time.Second, maxBackoff)
		}
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb hubapi.ErrorBody
	if json.Unmarshal(b, &eb) == nil {
		se.code, se.message = eb.Error.Code, eb.Error.Message
	}
	return se
}

// clientLocked returns an HTTP client that trusts the control section's CA file,
// rebuilt when the file's content or name changed.
func (r *Client) clientLocked(ctl *limiterconfig.Control) (*http.Client, error) {
	var pem []byte
	if ctl.CAFile != "" {
		var err error
		if pem, err = readBounded(ctl.CAFile, maxCABytes); err != nil {
			return nil, fmt.Errorf("read the control channel's CA bundle: %w", err)
		}
	}
	if r.client != nil && r.caFile == ctl.CAFile && bytes.Equal(pem, r.caPEM) {
		return r.client, nil
	}
	// Resumed sessions make the handshake of each report cheap for the manager.
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	if ctl.CAFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the control channel's CA bundle %s holds no PEM certificate", ctl.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	if r.client != nil {
		r.client.CloseIdleConnections()
	}
	// No connection is kept between reports: a few seconds apart, an idle TLS
	// connection per sidecar would cost the manager far more memory (thousands of
	// them) than a resumed handshake per report costs it CPU.
	r.client = &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 5 * time.Second,
		DisableKeepAlives:   true,
	}}
	r.caPEM, r.caFile = pem, ctl.CAFile
	return r.client, nil
}

// readBounded reads a whole file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
