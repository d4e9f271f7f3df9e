package testkit

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// fatalRecorder is a testing.TB whose Fatalf records the message instead of
// stopping the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }

func TestEventually(t *testing.T) {
	tests := []struct {
		name    string
		cond    func(calls int) error
		wantMsg string
	}{
		{name: "true at once", cond: func(int) error { return nil }},
		{name: "true on the third call", cond: func(calls int) error {
			if calls < 3 {
				return errors.New("not yet")
			}
			return nil
		}},
		{
			name:    "never true: the message names what and the last error",
			cond:    func(calls int) error { return fmt.Errorf("call %d failed", calls) },
			wantMsg: "the widget is ready: still not so after 0s: call 1 failed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &fatalRecorder{TB: t}
			calls := 0
			timeout := PollEvery * 10
			if tt.wantMsg != "" {
				timeout = 0
			}
			Eventually(r, timeout, "the widget is ready", func() error {
				calls++
				return tt.cond(calls)
			})
			if tt.wantMsg == "" && r.msg != "" {
				t.Errorf("failed: %s", r.msg)
			}
			if tt.wantMsg != "" && r.msg != tt.wantMsg {
				t.Errorf("message %q, want %q", r.msg, tt.wantMsg)
			}
		})
	}
}

func TestCAServesAndIsTrusted(t *testing.T) {
	ca := MustCA(t, "testkit CA")
	dir := t.TempDir()
	if err := ca.WriteServing(dir, "testkit"); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: host}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
}

func TestSyncBufferKeepsEveryConcurrentWrite(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("x"))
			}
		})
	}
	wg.Wait()
	if n := len(b.String()); n != 800 {
		t.Errorf("%d bytes after 800 one-byte writes", n)
	}
}

func TestLintMetrics(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    prometheus.Collector
		want string // a fragment of the error; "" for none
	}{
		{"conventional", prometheus.NewCounter(prometheus.CounterOpts{Name: "x_requests_total", Help: "Requests."}), ""},
		{"counter without _total", prometheus.NewCounter(prometheus.CounterOpts{Name: "x_requests", Help: "Requests."}), "_total"},
		{"milliseconds", prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_wait_milliseconds", Help: "Wait."}), "base unit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(tc.c)
			if c, ok := tc.c.(prometheus.Counter); ok {
				c.Inc()
			}
			err := LintMetrics(reg)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("LintMetrics: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("LintMetrics = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestMetricNamesIncludesVectorsWithoutSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "b_total", Help: "B."}, []string{"l"}),
		prometheus.NewHistogram(prometheus.HistogramOpts{Name: "a_seconds", Help: "A."}))
	if diff := cmp.Diff([]string{"a_seconds", "b_total"}, MetricNames(reg)); diff != "" {
		t.Errorf("MetricNames (-want +got):\n%s", diff)
	}
}
