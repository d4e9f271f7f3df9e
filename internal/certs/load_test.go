package certs

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
)

func keyPair(t *testing.T, name string) map[string][]byte {
	t.Helper()
	ku := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	r := &rotator.CertRotator{CAName: "ca", DNSName: name, ExtKeyUsages: &ku}
	now := time.Now()
	ca, err := r.CreateCACert(now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := r.CreateCertPEM(ca, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{CAFile: ca.CertPEM, CertFile: crt, KeyFile: key}
}

// TestLoadRefusesGarbage: a Secret that does not hold a usable certificate leaves
// the one in force (or none) in place and writes no files; a good one is served and
// written, and a change of CA is announced once.
func TestLoadRefusesGarbage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	m := &Manager{opts: Options{Namespace: "ns", SecretName: "s", CertDir: dir}}
	var announced [][]byte
	m.OnCAChange(func(ca []byte) { announced = append(announced, ca) })
	good, other := keyPair(t, "a.example"), keyPair(t, "b.example")
	bad := map[string]map[string][]byte{
		"empty":      {},
		"no key":     {CAFile: good[CAFile], CertFile: good[CertFile]},
		"no CA":      {CertFile: good[CertFile], KeyFile: good[KeyFile]},
		"junk key":   {CAFile: good[CAFile], CertFile: good[CertFile], KeyFile: []byte("-----BEGIN RSA PRIVATE KEY-----\nanVuaw==\n-----END RSA PRIVATE KEY-----\n")},
		"mismatched": {CAFile: good[CAFile], CertFile: good[CertFile], KeyFile: other[KeyFile]},
		"not PEM":    {CAFile: good[CAFile], CertFile: []byte("certificate"), KeyFile: good[KeyFile]},
	}
	for name, data := range bad {
		if _, err := m.load(data); err == nil {
			t.Errorf("%s: loaded", name)
		} else if !strings.Contains(err.Error(), "ns/s") {
			t.Errorf("%s: error does not name the Secret: %v", name, err)
		}
	}
	if m.current.Load() != nil || len(announced) != 0 {
		t.Fatal("garbage was installed")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("files written for garbage: %v", err)
	}

	if changed, err := m.load(good); err != nil || !changed {
		t.Fatalf("good certificate: changed=%v err=%v", changed, err)
	}
	if changed, err := m.load(good); err != nil || changed {
		t.Fatalf("same certificate again: changed=%v err=%v", changed, err)
	}
	for name, data := range bad {
		if _, err := m.load(data); err == nil {
			t.Errorf("%s: loaded over a good certificate", name)
		}
	}
	if b := m.current.Load(); b == nil || !bytes.Equal(b.caPEM, good[CAFile]) {
		t.Fatal("a refused Secret replaced the certificate in force")
	}
	for file, want := range good {
		got, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v", file, err)
		}
		if fi, err := os.Stat(filepath.Join(dir, file)); err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", file, fi.Mode().Perm())
		}
	}
	if _, err := m.load(other); err != nil {
		t.Fatal(err)
	}
	if len(announced) != 2 || !bytes.Equal(announced[0], good[CAFile]) || !bytes.Equal(announced[1], other[CAFile]) {
		t.Errorf("CA announcements: %d", len(announced))
	}
}
