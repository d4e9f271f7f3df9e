package controller

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// maxCABundleBytes bounds the file we copy into every rendered ConfigMap.
const maxCABundleBytes = 256 << 10

// caBundle holds the control channel's CA bundle from a file (typically the manager's
// mounted serving-certificate Secret, which a certificate rotator fills after the
// manager started) and tells subscribers when it changes.
type caBundle struct {
	path     string
	interval time.Duration

	mu   sync.RWMutex
	data []byte
	err  error
	subs []chan event.GenericEvent
}

func newCABundle(path string, interval time.Duration) *caBundle {
	if interval <= 0 {
		interval = time.Minute
	}
	c := &caBundle{path: path, interval: interval}
	c.reload()
	return c
}

// current is the bundle, or why there is none usable.
func (c *caBundle) current() ([]byte, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.data, c.err
}

// subscribe returns a channel that receives an event after each change; one pending
// event stands for any number of changes.
func (c *caBundle) subscribe() <-chan event.GenericEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan event.GenericEvent, 1)
	c.subs = append(c.subs, ch)
	return ch
}

// Start polls the file until ctx ends (manager.Runnable). Polling, not inotify: a
// mounted Secret changes by an atomic symlink swap that inotify watchers easily miss,
// and a minute's delay is nothing for a CA.
func (c *caBundle) Start(ctx context.Context) error {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.refresh()
		}
	}
}

// refresh re-reads the file now and tells subscribers if it changed.
func (c *caBundle) refresh() {
	if c.reload() {
		c.notify()
	}
}

func (c *caBundle) reload() (changed bool) {
	data, err := readCABundle(c.path)
	c.mu.Lock()
	defer c.mu.Unlock()
	changed = !bytes.Equal(data, c.data) || errText(err) != errText(c.err)
	c.data, c.err = data, err
	return changed
}

func (c *caBundle) notify() {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, ch := range c.subs {
		select {
		case ch <- event.GenericEvent{Object: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ca-bundle"}}}:
		default: // an event is already pending; it covers this change too
		}
	}
}

// readCABundle reads a PEM file and checks it holds certificates, so that garbage
// is reported on the resources instead of breaking every sidecar's TLS.
func readCABundle(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	if len(data) > maxCABundleBytes {
		return nil, fmt.Errorf("CA bundle %s is %d bytes, more than the %d allowed", path, len(data), maxCABundleBytes)
	}
	if err := checkCertificates(data); err != nil {
		return nil, fmt.Errorf("CA bundle %s: %w", path, err)
	}
	return data, nil
}

func checkCertificates(data []byte) error {
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("holds no PEM certificate")
	}
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
