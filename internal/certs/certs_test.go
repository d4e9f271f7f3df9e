package certs_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/aiquota/aiquota/internal/certs"
	"github.com/aiquota/aiquota/internal/scheme"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// fixture is a namespace with a webhook configuration for one test.
type fixture struct {
	ns, webhookConfig string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "certs-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// A webhook that matches nothing (its object selector), so the test never
	// disturbs the API server, but has a caBundle to keep.
	url := "https://localhost:1/never"
	none := admissionregistrationv1.SideEffectClassNone
	ignore := admissionregistrationv1.Ignore
	wc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "injector-" + ns.Name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.aiquota.dev",
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url},
			SideEffects:             &none,
			FailurePolicy:           &ignore,
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"never": "matches"}},
		}},
	}
	if err := env.Client.Create(ctx, wc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), wc) })
	return fixture{ns: ns.Name, webhookConfig: wc.Name}
}

func (f fixture) options(t *testing.T) certs.Options {
	o := certs.DefaultOptions()
	o.Namespace = f.ns
	o.SecretName = "serving-cert"
	o.WebhookServiceName = "aiquota-webhook-service"
	o.ControlServiceName = "aiquota-control"
	o.WebhookConfigName = f.webhookConfig
	o.CertDir = filepath.Join(t.TempDir(), "certs")
	return o
}

// start runs a controller-runtime manager with the certificate manager until the
// test ends.
func start(t *testing.T, o certs.Options) *certs.Manager {
	t.Helper()
	m, err := certs.New(o)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: scheme.New(), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetupWithManager(t.Context(), mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return m
}

func ready(m *certs.Manager) func() error { return func() error { return m.ReadyCheck()(nil) } }

func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func caBundles(t *testing.T, name string) [][]byte {
	t.Helper()
	var wc admissionregistrationv1.MutatingWebhookConfiguration
	if err := env.Client.Get(t.Context(), types.NamespacedName{Name: name}, &wc); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, w := range wc.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	return out
}

// serve runs a TLS server with the manager's TLSOpt and returns its address.
func serve(t *testing.T, m *certs.Manager) string {
	t.Helper()
	cfg := &tls.Config{}
	m.TLSOpt()(cfg)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// handshake connects as a client that trusts caPEM and expects serverName, and
// returns the certificate the server presented.
func handshake(addr, serverName string, caPEM []byte) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA")
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: serverName})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// TestSelfSigned: from nothing, the manager creates the Secret, a CA and a serving
// certificate for the webhook and control Services, injects the CA into the
// webhook configuration, serves the certificate, writes the files, and only then
// reports ready.
func TestSelfSigned(t *testing.T) {
	f := newFixture(t)
	o := f.options(t)
	m, err := certs.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ReadyCheck()(nil); err == nil || !strings.Contains(err.Error(), "no serving certificate loaded") {
		t.Errorf("ready before start: %v", err)
	}
	m = start(t, o)
	var mu sync.Mutex
	var caChanges [][]byte
	m.OnCAChange(func(ca []byte) { mu.Lock(); caChanges = append(caChanges, ca); mu.Unlock() })
	testkit.Eventually(t, time.Minute, "readiness", ready(m))

	s := getSecret(t, f.ns, o.SecretName)
	for _, k := range []string{"ca.crt", "ca.key", "tls.crt", "tls.key"} {
		if len(s.Data[k]) == 0 {
			t.Errorf("Secret has no %s", k)
		}
	}
	for i, b := range caBundles(t, f.webhookConfig) {
		if !bytes.Equal(b, s.Data["ca.crt"]) {
			t.Errorf("webhook %d caBundle is not the Secret's CA", i)
		}
	}
	if !bytes.Equal(m.CABundle(), s.Data["ca.crt"]) {
		t.Error("CABundle() is not the Secret's CA")
	}
	for file, key := range map[string]string{"tls.crt": "tls.crt", "tls.key": "tls.key", "ca.crt": "ca.crt"} {
		b, err := os.ReadFile(filepath.Join(m.CertDir(), file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, s.Data[key]) {
			t.Errorf("%s in the cert dir differs from the Secret", file)
		}
	}
	if m.CAPath() != filepath.Join(o.CertDir, "ca.crt") {
		t.Errorf("CAPath = %s", m.CAPath())
	}

	addr := serve(t, m)
	for _, name := range []string{
		"aiquota-webhook-service." + f.ns + ".svc", "aiquota-webhook-service." + f.ns + ".svc.cluster.local",
		"aiquota-control." + f.ns + ".svc", "aiquota-control." + f.ns + ".svc.cluster.local",
	} {
		if _, err := handshake(addr, name, m.CABundle()); err != nil {
			t.Errorf("handshake as %s: %v", name, err)
		}
	}
	if _, err := handshake(addr, "elsewhere.example", m.CABundle()); err == nil {
		t.Error("the certificate is valid for a name it should not cover")
	}
	testkit.Eventually(t, time.Minute, "the CA change notification", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(caChanges) == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	mu.Lock()
	if !bytes.Equal(caChanges[len(caChanges)-1], m.CABundle()) {
		t.Error("the notified CA is not the current one")
	}
	mu.Unlock()
}

// TestRenewal: a certificate inside its renewal window is replaced while serving;
// the CA and the webhook's caBundle stay, and clients keep verifying.
func TestRenewal(t *testing.T) {
	f := newFixture(t)
	o := f.options(t)
	o.CertValidity = time.Hour
	// Renew when less than 59m57s remain: three seconds after issue.
	o.RenewBefore = time.Hour - 3*time.Second
	o.CheckInterval = time.Second
	m := start(t, o)
	testkit.Eventually(t, time.Minute, "readiness", ready(m))
	ca := m.CABundle()
	addr := serve(t, m)
	name := "aiquota-control." + f.ns + ".svc"
	first, err := handshake(addr, name, ca)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "a renewed certificate being served", func() error {
		c, err := handshake(addr, name, ca)
		if err != nil {
			return err
		}
		if c.Equal(first) {
			return errors.New("still the first certificate")
		}
		if !c.NotAfter.After(first.NotAfter) {
			return fmt.Errorf("renewed certificate expires at %s, not after %s", c.NotAfter, first.NotAfter)
		}
		return nil
	})
	if !bytes.Equal(m.CABundle(), ca) {
		t.Error("renewing the serving certificate changed the CA")
	}
	for _, b := range caBundles(t, f.webhookConfig) {
		if !bytes.Equal(b, ca) {
			t.Error("the caBundle changed")
		}
	}
	if err := m.ReadyCheck()(nil); err != nil {
		t.Errorf("not ready after renewal: %v", err)
	}
}

// issue makes a CA (named as the manager names its own) and a serving certificate
// for names with cert-controller's generator, valid long enough that only a
// missing name could make the manager replace them.
func issue(t *testing.T, names ...string) map[string][]byte {
	t.Helper()
	ku := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	r := &rotator.CertRotator{CAName: "aiquota-ca", CAOrganization: "aiquota", DNSName: names[0], ExtraDNSNames: names[1:], ExtKeyUsages: &ku}
	now := time.Now()
	ca, err := r.CreateCACert(now.Add(-time.Hour), now.Add(10*365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := r.CreateCertPEM(ca, now.Add(-time.Hour), now.Add(365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{"ca.crt": ca.CertPEM, "ca.key": ca.KeyPEM, "tls.crt": crt, "tls.key": key}
}

// TestAddedNameReissues: a stored certificate that lacks a wanted name (the control
// channel's Service, added in a later release) is replaced at start, under the
// same CA, instead of at its expiry.
func TestAddedNameReissues(t *testing.T) {
	f := newFixture(t)
	o := f.options(t)
	old := issue(t, "aiquota-webhook-service."+f.ns+".svc")
	if err := env.Client.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: o.SecretName}, Data: old}); err != nil {
		t.Fatal(err)
	}
	m := start(t, o)
	testkit.Eventually(t, time.Minute, "readiness", ready(m))
	if !bytes.Equal(m.CABundle(), old["ca.crt"]) {
		t.Error("the CA was replaced; only the serving certificate should be")
	}
	if _, err := handshake(serve(t, m), "aiquota-control."+f.ns+".svc", old["ca.crt"]); err != nil {
		t.Errorf("the control channel's name is not covered: %v", err)
	}
}

// TestCertManagerMode: the manager only reads a Secret someone else fills, never
// writes it or the webhook configuration, and is ready only once the caBundle
// (cert-manager's CA injector's job) trusts the certificate.
func TestCertManagerMode(t *testing.T) {
	f := newFixture(t)
	o := f.options(t)
	o.Mode = certs.ModeCertManager
	names := o.DNSNames()
	data := issue(t, names...)
	delete(data, "ca.key") // cert-manager's Secrets carry ca.crt, tls.crt, tls.key
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: o.SecretName}, Type: corev1.SecretTypeTLS, Data: data}
	if err := env.Client.Create(t.Context(), sec); err != nil {
		t.Fatal(err)
	}
	m := start(t, o)
	testkit.Eventually(t, time.Minute, "the certificate to load", func() error {
		if m.CABundle() == nil {
			return errors.New("not loaded")
		}
		return nil
	})
	err := m.ReadyCheck()(nil)
	if err == nil || !strings.Contains(err.Error(), "does not trust the serving certificate") {
		t.Fatalf("ready with an empty caBundle: %v", err)
	}

	// Play cert-manager's CA injector.
	var wc admissionregistrationv1.MutatingWebhookConfiguration
	if err := env.Client.Get(t.Context(), types.NamespacedName{Name: f.webhookConfig}, &wc); err != nil {
		t.Fatal(err)
	}
	wc.Webhooks[0].ClientConfig.CABundle = data["ca.crt"]
	if err := env.Client.Update(t.Context(), &wc); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "readiness", ready(m))
	if _, err := handshake(serve(t, m), names[0], data["ca.crt"]); err != nil {
		t.Error(err)
	}
	got := getSecret(t, f.ns, o.SecretName)
	if got.ResourceVersion != sec.ResourceVersion {
		t.Error("the manager wrote the cert-manager Secret")
	}
	if diff := cmp.Diff(data, got.Data); diff != "" {
		t.Errorf("Secret data changed (-want +got):\n%s", diff)
	}
}

// TestBadSecretIsNotServed: garbage in the Secret leaves the manager not ready and
// serving nothing, rather than serving something.
func TestBadSecretIsNotServed(t *testing.T) {
	f := newFixture(t)
	o := f.options(t)
	o.Mode = certs.ModeCertManager
	good := issue(t, o.DNSNames()...)
	bad := map[string][]byte{"ca.crt": good["ca.crt"], "tls.crt": good["tls.crt"], "tls.key": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("junk")})}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: o.SecretName}, Data: bad}
	if err := env.Client.Create(t.Context(), sec); err != nil {
		t.Fatal(err)
	}
	m := start(t, o)
	addr := serve(t, m)
	// The watcher has had time to see the broken Secret (it refuses it: see
	// TestLoadRefusesGarbage for every kind of garbage).
	time.Sleep(2 * time.Second)
	if err := m.ReadyCheck()(nil); err == nil {
		t.Error("ready with a broken key")
	}
	if _, err := handshake(addr, o.DNSNames()[0], good["ca.crt"]); err == nil {
		t.Error("a TLS handshake succeeded without a loaded certificate")
	}
	// Fixing the Secret is enough: the watcher picks up the update.
	sec.Data = good
	if err := env.Client.Update(t.Context(), sec); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "the fixed certificate to be served", func() error {
		_, err := handshake(addr, o.DNSNames()[0], good["ca.crt"])
		return err
	})
}

// TestOptions: bad options are refused with the flag's name; DNS names cover the
// webhook, control and metrics Services in both forms.
func TestOptions(t *testing.T) {
	o := certs.DefaultOptions()
	o.Namespace = "ns"
	want := []string{
		"aiquota-webhook-service.ns.svc", "aiquota-webhook-service.ns.svc.cluster.local",
		"aiquota-control.ns.svc", "aiquota-control.ns.svc.cluster.local",
		"aiquota-metrics-service.ns.svc", "aiquota-metrics-service.ns.svc.cluster.local",
	}
	if diff := cmp.Diff(want, o.DNSNames()); diff != "" {
		t.Errorf("DNSNames (-want +got):\n%s", diff)
	}
	for name, tc := range map[string]struct {
		mutate func(*certs.Options)
		flag   string
	}{
		"mode":         {func(o *certs.Options) { o.Mode = "vault" }, "--cert-mode"},
		"namespace":    {func(o *certs.Options) { o.Namespace = "" }, "--cert-namespace"},
		"secret":       {func(o *certs.Options) { o.SecretName = "" }, "--cert-secret-name"},
		"dir":          {func(o *certs.Options) { o.CertDir = "" }, "--cert-dir"},
		"renew window": {func(o *certs.Options) { o.RenewBefore = o.CertValidity }, "--cert-renew-before"},
		"no names": {func(o *certs.Options) {
			o.WebhookServiceName, o.ControlServiceName, o.MetricsServiceName, o.ExtraDNSNames = "", "", "", nil
		}, "--cert-extra-dns-names"},
	} {
		t.Run(name, func(t *testing.T) {
			o := certs.DefaultOptions()
			o.Namespace = "ns"
			tc.mutate(&o)
			_, err := certs.New(o)
			if err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Errorf("error %v does not name %s", err, tc.flag)
			}
		})
	}
	if slices.Contains(o.DNSNames(), "") {
		t.Error("an empty DNS name")
	}
}

// TestFlags: the certificate flags reach the options.
func TestFlags(t *testing.T) {
	o := certs.DefaultOptions()
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse([]string{
		"--cert-mode=cert-manager", "--cert-namespace=ops", "--cert-secret-name=s", "--cert-webhook-service=wh",
		"--cert-control-service=", "--cert-metrics-service=m", "--cert-extra-dns-names= a.example, ,b.example", "--cert-webhook-config=cfg",
		"--cert-dir=/run/certs", "--cert-validity=48h", "--cert-renew-before=24h", "--cert-check-interval=5m",
	}); err != nil {
		t.Fatal(err)
	}
	want := certs.DefaultOptions()
	want.Mode, want.Namespace, want.SecretName, want.WebhookServiceName, want.ControlServiceName = certs.ModeCertManager, "ops", "s", "wh", ""
	want.MetricsServiceName = "m"
	want.ExtraDNSNames, want.WebhookConfigName, want.CertDir = []string{"a.example", "b.example"}, "cfg", "/run/certs"
	want.CertValidity, want.RenewBefore, want.CheckInterval = 48*time.Hour, 24*time.Hour, 5*time.Minute
	if diff := cmp.Diff(want, o); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"wh.ops.svc", "wh.ops.svc.cluster.local", "m.ops.svc", "m.ops.svc.cluster.local", "a.example", "b.example"}, o.DNSNames()); diff != "" {
		t.Errorf("DNSNames (-want +got):\n%s", diff)
	}
}
