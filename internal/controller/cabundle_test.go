package controller

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/testkit"
)

// TestCABundleChangeReachesEveryConfig: a broken bundle keeps the last configs and
// says so; a new valid one is copied into every rendered ConfigMap.
func TestCABundleChangeReachesEveryConfig(t *testing.T) {
	ns := newNamespace(t)
	create(t, secret(ns, "k", "api-key"))
	q := providerQuota(ns, "q", "k", 10, "")
	c := fallbackChain(ns, "c", entrySpec{"q", "m", ""})
	create(t, q, c)
	waitReady(t, q)
	waitReady(t, c)
	original, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	cms := []string{naming.QuotaConfigMap("q"), naming.ChainConfigMap("c")}
	hashes := map[string]string{}
	for _, name := range cms {
		cm := getConfigMap(t, ns, name)
		hashes[name] = configHash(cm)
		if cm.Data[naming.CAKey] != string(original) {
			t.Fatalf("%s: ca.crt is not the CA file", name)
		}
	}

	testkit.WriteAtomically(t, caFile, []byte("not a certificate\n"))
	cond := waitCondition(t, q, quotav1alpha1.ConditionConfigRendered, metav1.ConditionFalse, quotav1alpha1.ReasonRenderFailed)
	if !strings.Contains(cond.Message, "holds no PEM certificate") || !strings.Contains(cond.Message, "stale") {
		t.Errorf("ConfigRendered message %q", cond.Message)
	}
	waitCondition(t, c, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonRenderFailed)
	for _, name := range cms {
		if got := getConfigMap(t, ns, name).Data[naming.CAKey]; got != string(original) {
			t.Errorf("%s: the last good CA bundle was not kept", name)
		}
	}

	rotated := newCAPEM("aiquota-test-ca-2")
	testkit.WriteAtomically(t, caFile, rotated)
	for _, name := range cms {
		testkit.Eventually(t, waitTimeout, "rotated CA in "+name, func() error {
			cm := getConfigMap(t, ns, name)
			if cm.Data[naming.CAKey] != string(rotated) {
				return fmt.Errorf("ca.crt not rotated")
			}
			if configHash(cm) != hashes[name] {
				return fmt.Errorf("limiter.json changed with the CA: %s -> %s", hashes[name], configHash(cm))
			}
			return nil
		})
	}
	waitReady(t, q)
	waitReady(t, c)
	waitEvent(t, c, corev1.EventTypeNormal, eventConfigRendered, "CA bundle")
}

func TestReadCABundle(t *testing.T) {
	dir := t.TempDir()
	valid := newCAPEM("ca")
	two := append(append([]byte{}, valid...), newCAPEM("ca-2")...)
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{name: "one certificate", data: valid},
		{name: "a bundle of two", data: two},
		{name: "comments and a key around a certificate", data: append([]byte("# bundle\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), valid...)},
		{name: "empty", data: nil, wantErr: "holds no PEM certificate"},
		{name: "garbage", data: []byte("hello"), wantErr: "holds no PEM certificate"},
		{name: "a broken certificate", data: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), wantErr: "certificate 1"},
		{name: "too large", data: bytes.Repeat(valid, maxCABundleBytes/len(valid)+1), wantErr: "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readCABundle(path)
			if tt.wantErr == "" {
				if err != nil || !bytes.Equal(got, tt.data) {
					t.Fatalf("readCABundle = %d bytes, %v", len(got), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
	if _, err := readCABundle(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file reads without error")
	}
}

func TestCABundleNotifiesOnChangeOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.crt")
	testkit.WriteAtomically(t, path, newCAPEM("one"))
	b := newCABundle(path, 0)
	ch := b.subscribe()
	if b.reload() {
		t.Error("reload of an unchanged file reports a change")
	}
	testkit.WriteAtomically(t, path, newCAPEM("two"))
	if !b.reload() {
		t.Fatal("reload of a changed file reports no change")
	}
	b.notify()
	b.notify() // coalesces with the pending one instead of blocking
	if len(ch) != 1 {
		t.Errorf("%d pending notifications, want 1", len(ch))
	}
	if data, err := b.current(); err != nil || len(data) == 0 {
		t.Errorf("current = %d bytes, %v", len(data), err)
	}
	os.Remove(path)
	if !b.reload() {
		t.Error("losing the file is not a change")
	}
	if _, err := b.current(); err == nil {
		t.Error("no error once the file is gone")
	}
}

// TestCABundleRefreshNotifiesAtOnce: an announced change (the certificate manager's
// OnCAChange calls refresh) reaches subscribers without waiting for the poll.
func TestCABundleRefreshNotifiesAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.crt")
	testkit.WriteAtomically(t, path, newCAPEM("first"))
	c := newCABundle(path, time.Hour)
	events := c.subscribe()
	c.refresh()
	select {
	case <-events:
		t.Fatal("refresh of an unchanged file notified subscribers")
	default:
	}
	second := newCAPEM("second")
	testkit.WriteAtomically(t, path, second)
	c.refresh()
	select {
	case <-events:
	default:
		t.Fatal("refresh after a change did not notify subscribers")
	}
	if got, err := c.current(); err != nil || !bytes.Equal(got, second) {
		t.Errorf("current() = %d bytes, %v; want the new CA", len(got), err)
	}
}
