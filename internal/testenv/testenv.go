// Package testenv starts the real kube-apiserver and etcd (controller-runtime envtest)
// with the project's CRDs installed, for tests in any package.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/aiquota/aiquota/internal/scheme"
)

// Root is the repository root, found from this file's location so tests work from
// any package directory. A binary built with -trimpath (as the harness builds
// hack/localenv) records module paths instead, so it looks upward from the working
// directory for the go.mod instead.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	if filepath.IsAbs(file) {
		return filepath.Join(filepath.Dir(file), "..", "..")
	}
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// Env is a running API server with the CRDs installed.
type Env struct {
	env    *envtest.Environment
	Config *rest.Config
	Client client.Client
}

// Start starts etcd and kube-apiserver from KUBEBUILDER_ASSETS and installs the CRDs
// from config/crd/bases. Without the assets it fails with the command that builds them:
// a test that needs a real API server must not silently pass without one.
func Start(opts ...func(*envtest.Environment)) (*Env, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, or export KUBEBUILDER_ASSETS=$(make -s envtest)")
	}
	e := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(Root(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme.New(),
	}
	for _, o := range opts {
		o(e)
	}
	cfg, err := e.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest API server from %s: %w", assets, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: e.Scheme})
	if err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("client for envtest API server: %w", err)
	}
	return &Env{env: e, Config: cfg, Client: c}, nil
}

// StartWithInjector starts the API server as Start does, with the pod injector's
// webhook configuration from config/webhook installed, for a manager process to
// serve: envtest points the webhook at a local port instead of the Service (the
// manager's serving certificate covers localhost for it). It returns the
// configuration, whose name the manager's --cert-webhook-config takes.
func StartWithInjector() (*Env, *admissionregistrationv1.MutatingWebhookConfiguration, error) {
	data, err := os.ReadFile(filepath.Join(Root(), "config", "webhook", "pod_injector.yaml"))
	if err != nil {
		return nil, nil, fmt.Errorf("read the webhook configuration: %w", err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := sigsyaml.UnmarshalStrict(data, &mwc); err != nil {
		return nil, nil, fmt.Errorf("parse config/webhook/pod_injector.yaml: %w", err)
	}
	env, err := Start(func(e *envtest.Environment) {
		e.WebhookInstallOptions = envtest.WebhookInstallOptions{
			MutatingWebhooks:             []*admissionregistrationv1.MutatingWebhookConfiguration{&mwc},
			LocalServingHostExternalName: "localhost",
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return env, &mwc, nil
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error { return e.env.Stop() }

// Environment exposes the envtest environment (webhook install options, kubeconfig users).
func (e *Env) Environment() *envtest.Environment { return e.env }

// WriteKubeconfig writes a kubeconfig for the API server (admin credentials) into dir
// and returns its path, for the real kubectl and other real clients.
func (e *Env) WriteKubeconfig(dir string) (string, error) {
	p := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(p, e.env.KubeConfig, 0o600); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	return p, nil
}

// Kubectl is the kubectl built beside kube-apiserver at the same version.
func Kubectl() string { return filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl") }

// Main is the TestMain of a package whose tests all use one API server from the
// start: it starts it into *env, runs the tests, stops it and exits with the tests'
// code. Packages with tests that need none use Lazy instead.
func Main(m *testing.M, env **Env) {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop envtest:", err)
	}
	os.Exit(code)
}
