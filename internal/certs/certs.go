// Package certs provides the manager's TLS serving certificate: one certificate
// for the sidecar-injection webhook and the control channel that sidecars report
// to, kept in a Secret in the manager's namespace.
//
// Two modes:
//   - self-signed (default): github.com/open-policy-agent/cert-controller generates
//     a CA and the serving certificate into the Secret, patches the CA into the
//     MutatingWebhookConfiguration's caBundle, and renews the certificate before it
//     expires. Nothing else to install.
//   - cert-manager: a cert-manager Certificate fills the Secret and cert-manager's
//     CA injector patches the caBundle (config/certmanager).
//
// In both modes every replica watches the Secret and serves the certificate from
// memory (GetCertificate), so a renewal takes effect without a restart or a volume
// sync delay, and writes it to CertDir (tls.crt, tls.key, ca.crt) for anything
// that wants files. The manager reports ready only when the certificate is loaded
// and the webhook configuration's caBundle trusts it.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Modes.
const (
	ModeSelfSigned  = "self-signed"
	ModeCertManager = "cert-manager"
)

// Keys of the Secret and names of the files in CertDir. cert-manager writes the
// same keys, so both modes share them.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	CAFile   = "ca.crt"
)

// Options configure the certificate manager.
type Options struct {
	// Mode is ModeSelfSigned or ModeCertManager.
	Mode string
	// Namespace is the manager's namespace: the Secret's and the Services'.
	Namespace string
	// SecretName is the Secret holding the CA and the serving certificate.
	SecretName string
	// WebhookServiceName, ControlServiceName and MetricsServiceName are the Services
	// in Namespace that the certificate must be valid for. The metrics endpoint
	// serves this certificate too, so Prometheus can verify it with the CA.
	WebhookServiceName string
	ControlServiceName string
	MetricsServiceName string
	// ExtraDNSNames are further names the certificate covers.
	ExtraDNSNames []string
	// WebhookConfigName is the MutatingWebhookConfiguration whose caBundle is kept
	// (self-signed) or checked (both modes); empty skips both.
	WebhookConfigName string
	// CertDir receives tls.crt, tls.key and ca.crt.
	CertDir string
	// CAValidity and CertValidity are the lifetimes of generated certificates;
	// RenewBefore is how long before expiry a certificate is replaced; CheckInterval
	// is how often that is checked (self-signed mode).
	CAValidity    time.Duration
	CertValidity  time.Duration
	RenewBefore   time.Duration
	CheckInterval time.Duration
}

// DefaultOptions are the manager's defaults; Namespace comes from POD_NAMESPACE.
func DefaultOptions() Options {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "aiquota-system"
	}
	return Options{
		Mode:               ModeSelfSigned,
		Namespace:          ns,
		SecretName:         "aiquota-webhook-server-cert",
		WebhookServiceName: "aiquota-webhook-service",
		ControlServiceName: "aiquota-control",
		MetricsServiceName: "aiquota-metrics-service",
		WebhookConfigName:  "aiquota-pod-injector",
		CertDir:            filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"),
		CAValidity:         10 * 365 * 24 * time.Hour,
		CertValidity:       365 * 24 * time.Hour,
		RenewBefore:        90 * 24 * time.Hour,
		CheckInterval:      time.Hour,
	}
}

// BindFlags registers the certificate flags, all prefixed --cert-, with o's
// current values as defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Mode, "cert-mode", o.Mode, "Who provides the serving certificate: self-signed (generated, injected and rotated by the manager) or cert-manager (config/certmanager).")
	fs.StringVar(&o.Namespace, "cert-namespace", o.Namespace, "Namespace of the certificate Secret and of the webhook and control Services (default: $POD_NAMESPACE).")
	fs.StringVar(&o.SecretName, "cert-secret-name", o.SecretName, "Secret holding the CA and the serving certificate.")
	fs.StringVar(&o.WebhookServiceName, "cert-webhook-service", o.WebhookServiceName, "Service of the injection webhook; the certificate is valid for <service>.<namespace>.svc.")
	fs.StringVar(&o.ControlServiceName, "cert-control-service", o.ControlServiceName, "Service of the control channel; the certificate is valid for it too. Empty for none.")
	fs.StringVar(&o.MetricsServiceName, "cert-metrics-service", o.MetricsServiceName, "Service of the metrics endpoint, which serves the certificate when --metrics-secure; it is valid for it too. Empty for none.")
	fs.Func("cert-extra-dns-names", "Comma-separated further DNS names the certificate covers.", func(s string) error {
		o.ExtraDNSNames = nil
		for _, n := range strings.Split(s, ",") {
			if n = strings.TrimSpace(n); n != "" {
				o.ExtraDNSNames = append(o.ExtraDNSNames, n)
			}
		}
		return nil
	})
	fs.StringVar(&o.WebhookConfigName, "cert-webhook-config", o.WebhookConfigName, "MutatingWebhookConfiguration whose caBundle must trust the certificate (kept up to date in self-signed mode).")
	fs.StringVar(&o.CertDir, "cert-dir", o.CertDir, "Directory the certificate is written to (tls.crt, tls.key, ca.crt), e.g. for the control channel.")
	fs.DurationVar(&o.CertValidity, "cert-validity", o.CertValidity, "Lifetime of a generated serving certificate (self-signed mode).")
	fs.DurationVar(&o.RenewBefore, "cert-renew-before", o.RenewBefore, "Replace a generated certificate this long before it expires (self-signed mode).")
	fs.DurationVar(&o.CheckInterval, "cert-check-interval", o.CheckInterval, "How often expiry is checked (self-signed mode).")
}

// DNSNames are the names the serving certificate must cover, the webhook
// Service's first (it is the name the rotator checks).
func (o *Options) DNSNames() []string {
	var names []string
	add := func(n string) {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, svc := range []string{o.WebhookServiceName, o.ControlServiceName, o.MetricsServiceName} {
		if svc == "" {
			continue
		}
		add(svc + "." + o.Namespace + ".svc")
		add(svc + "." + o.Namespace + ".svc.cluster.local")
	}
	for _, n := range o.ExtraDNSNames {
		add(n)
	}
	return names
}

func (o *Options) validate() error {
	var errs []error
	if o.Mode != ModeSelfSigned && o.Mode != ModeCertManager {
		errs = append(errs, fmt.Errorf("--cert-mode is %q; want %q or %q", o.Mode, ModeSelfSigned, ModeCertManager))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("--cert-namespace is empty (and POD_NAMESPACE is not set)"))
	}
	if o.SecretName == "" {
		errs = append(errs, errors.New("--cert-secret-name is empty"))
	}
	if len(o.DNSNames()) == 0 {
		errs = append(errs, errors.New("the certificate would cover no DNS name: set --cert-webhook-service or --cert-extra-dns-names"))
	}
	if o.CertDir == "" {
		errs = append(errs, errors.New("--cert-dir is empty"))
	}
	if o.Mode == ModeSelfSigned {
		if o.CertValidity <= 0 || o.CAValidity <= 0 || o.CheckInterval <= 0 {
			errs = append(errs, errors.New("certificate validities and --cert-check-interval must be positive"))
		}
		if o.RenewBefore <= 0 || o.RenewBefore >= o.CertValidity {
			errs = append(errs, fmt.Errorf("--cert-renew-before (%s) must be positive and shorter than --cert-validity (%s)", o.RenewBefore, o.CertValidity))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("certificate options: %w", err)
	}
	return nil
}

// bundle is one loaded certificate.
type bundle struct {
	cert  *tls.Certificate
	leaf  *x509.Certificate
	caPEM []byte
}

// Manager serves and tracks the certificate. Create it with New before the
// controller-runtime manager (its TLSOpt goes into the webhook server's options),
// then call SetupWithManager.
type Manager struct {
	opts    Options
	current atomic.Pointer[bundle]

	mu        sync.Mutex
	listeners []func(caPEM []byte)

	// caTrusted caches the webhook configuration check between probes.
	caTrusted trustCache
	// reader reads the webhook configuration; set by SetupWithManager.
	reader client.Reader
}

// New checks the options and returns a Manager with no certificate loaded yet.
func New(opts Options) (*Manager, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Manager{opts: opts}, nil
}

// Options returns the options the Manager runs with.
func (m *Manager) Options() Options { return m.opts }

// GetCertificate serves the current certificate; it fails until one is loaded,
// so TLS handshakes fail (and the API server applies the webhook's failurePolicy)
// rather than being answered with a certificate nobody trusts.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	b := m.current.Load()
	if b == nil {
		return nil, fmt.Errorf("the serving certificate is not loaded yet from Secret %s/%s", m.opts.Namespace, m.opts.SecretName)
	}
	return b.cert, nil
}

// TLSOpt sets GetCertificate on a tls.Config, for the webhook server's and the
// control channel's TLSOpts.
func (m *Manager) TLSOpt() func(*tls.Config) {
	return func(c *tls.Config) {
		c.GetCertificate = m.GetCertificate
		if c.MinVersion < tls.VersionTLS12 {
			c.MinVersion = tls.VersionTLS12
		}
	}
}

// CABundle is the PEM of the CA that signed the serving certificate, for clients
// of the control channel (the rendered ConfigMaps' ca.crt); nil until loaded.
func (m *Manager) CABundle() []byte {
	if b := m.current.Load(); b != nil {
		return slices.Clone(b.caPEM)
	}
	return nil
}

// CertDir is where tls.crt, tls.key and ca.crt are written.
func (m *Manager) CertDir() string { return m.opts.CertDir }

// CAPath is the CA bundle file in CertDir.
func (m *Manager) CAPath() string { return filepath.Join(m.opts.CertDir, CAFile) }

// OnCAChange registers fn to be called with the new CA bundle whenever a loaded
// certificate comes with a different CA (the first load included), e.g. to
// re-render the ca.crt of sidecar configurations. fn must not block for long.
func (m *Manager) OnCAChange(fn func(caPEM []byte)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.listeners = append(m.listeners, fn)
}

// load installs the certificate found in a Secret's data, writes it to CertDir and
// tells the listeners when the CA changed.
func (m *Manager) load(data map[string][]byte) (changed bool, err error) {
	certPEM, keyPEM, caPEM := data[CertFile], data[KeyFile], data[CAFile]
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return false, fmt.Errorf("secret %s/%s has no %s and %s yet", m.opts.Namespace, m.opts.SecretName, CertFile, KeyFile)
	}
	if len(caPEM) == 0 {
		return false, fmt.Errorf("secret %s/%s has no %s: the control channel's clients need the CA", m.opts.Namespace, m.opts.SecretName, CAFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("secret %s/%s: parse the key pair: %w", m.opts.Namespace, m.opts.SecretName, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return false, fmt.Errorf("secret %s/%s: parse %s: %w", m.opts.Namespace, m.opts.SecretName, CertFile, err)
	}
	cert.Leaf = leaf
	old := m.current.Load()
	if old != nil && slices.Equal(old.cert.Certificate[0], cert.Certificate[0]) && slices.Equal(old.caPEM, caPEM) {
		return false, nil
	}
	if err := writeFiles(m.opts.CertDir, map[string][]byte{CertFile: certPEM, KeyFile: keyPEM, CAFile: caPEM}); err != nil {
		return false, err
	}
	m.current.Store(&bundle{cert: &cert, leaf: leaf, caPEM: slices.Clone(caPEM)})
	m.caTrusted.reset()
	if old == nil || !slices.Equal(old.caPEM, caPEM) {
		m.mu.Lock()
		listeners := slices.Clone(m.listeners)
		m.mu.Unlock()
		for _, fn := range listeners {
			fn(slices.Clone(caPEM))
		}
	}
	return true, nil
}

// writeFiles replaces each file atomically (write, then rename), so a reader
// never sees a certificate without its key's new half.
func writeFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create the certificate directory: %w", err)
	}
	for _, name := range []string{KeyFile, CertFile, CAFile} {
		content, ok := files[name]
		if !ok {
			continue
		}
		tmp, err := os.CreateTemp(dir, "."+name+"-*")
		if err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		_, werr := tmp.Write(content)
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o600)); err != nil {
			_ = os.Remove(tmp.Name())
			return fmt.Errorf("write %s: %w", name, err)
		}
		if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
			_ = os.Remove(tmp.Name())
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// covers reports whether the certificate in pemBytes is valid for every name.
func covers(pemBytes []byte, names []string) bool {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return false
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false
	}
	for _, n := range names {
		if c.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

// verifyWith checks that the certificate chains to a CA in bundlePEM and is valid
// for name at now.
func verifyWith(leaf *x509.Certificate, bundlePEM []byte, name string, now time.Time) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundlePEM) {
		return errors.New("the caBundle holds no PEM certificate")
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}
