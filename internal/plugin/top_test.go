package plugin

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
)

// TestTopOnce prints testdata/cluster.yaml's status once per scope and compares the
// tables with their golden files.
func TestTopOnce(t *testing.T) {
	cl := apiServer(t)
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"top-shop", []string{"top", "--once", "-n", "shop"}},
		{"top-all-namespaces", []string{"top", "--once", "-A"}},
		// Nothing reported yet: dashes, not zeros.
		{"top-unreported", []string{"top", "--once", "--namespace", "lab"}},
		{"top-empty", []string{"top", "--once", "-n", "default"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			got, err := cl.run(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tc.golden, got)
		})
	}
}

func TestTopRejectsAZeroInterval(t *testing.T) {
	cl := apiServer(t)
	_, err := cl.run(t, "top", "--interval", "0s", "-n", "shop")
	if err == nil || !strings.Contains(err.Error(), "--interval") {
		t.Fatalf("err = %v, want one naming --interval", err)
	}
}

// frameWriter hands each frame to onFrame and ends the watch after the last one.
type frameWriter struct {
	frames []string
	n      int
	cancel context.CancelFunc
	// onFrame runs after frame i was written, before the next refresh.
	onFrame func(i int)
}

func (w *frameWriter) Write(p []byte) (int, error) {
	w.frames = append(w.frames, string(p))
	if w.onFrame != nil {
		w.onFrame(len(w.frames) - 1)
	}
	if len(w.frames) == w.n {
		w.cancel()
	}
	return len(p), nil
}

// refreshNamespace creates a namespace holding one quota that has had no report
// yet, for tests that change its status between frames.
func refreshNamespace(t *testing.T, cl *cluster) (string, *quotav1alpha1.ProviderQuota) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "refresh-"}}
	if err := cl.c.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	pq := &quotav1alpha1.ProviderQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "deepseek"},
		Spec: quotav1alpha1.ProviderQuotaSpec{
			Provider:    quotav1alpha1.ProviderDeepSeek,
			Credentials: []quotav1alpha1.SecretKeyRef{{Name: "deepseek-key"}},
			Limits:      quotav1alpha1.QuotaLimits{RequestsPerMinute: 600},
		},
	}
	if err := cl.c.Create(t.Context(), pq); err != nil {
		t.Fatal(err)
	}
	return ns.Name, pq
}

// TestTopRefreshes: piped, each refresh is a fresh table after a blank line, and
// a report the hub writes between two refreshes shows in the second.
func TestTopRefreshes(t *testing.T) {
	cl := apiServer(t)
	ns, pq := refreshNamespace(t, cl)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := &frameWriter{n: 2, cancel: cancel, onFrame: func(i int) {
		if i != 0 {
			return
		}
		pq.Status = quotav1alpha1.ProviderQuotaStatus{
			ActiveSidecars: 2,
			Utilization:    &quotav1alpha1.UtilizationSummary{RequestsPercent: 50},
			Models: []quotav1alpha1.ModelUtilization{{
				Name: "deepseek-chat", RequestsPerMinute: &quotav1alpha1.Usage{Used: 300, Limit: 600, Percent: 50},
			}},
			LastUpdated: &metav1.Time{Time: testNow.Add(-time.Second)},
		}
		if err := cl.c.Status().Update(context.Background(), pq); err != nil {
			t.Errorf("write status: %v", err)
		}
	}}
	o := &topOptions{globals: &globals{now: func() time.Time { return testNow }}, interval: time.Millisecond}
	var errOut strings.Builder
	if err := o.watch(ctx, Streams{Out: w, ErrOut: &errOut}, cl.c, ns); err != nil {
		t.Fatal(err)
	}
	if errOut.Len() > 0 {
		t.Errorf("stderr: %s", errOut.String())
	}
	if len(w.frames) != 2 {
		t.Fatalf("%d frames, want 2", len(w.frames))
	}
	want := []string{
		"QUOTA      PROVIDER   SIDECARS   RPM%   TPM%   CONCURRENCY%   DAILY%   QUEUED   REQUESTS TODAY   TOKENS TODAY   LEARNED LIMITS   UPDATED\n" +
			"deepseek   deepseek   0          -      -      -              -        -        -                -              -                -\n",
		"\n" +
			"QUOTA      PROVIDER   SIDECARS   RPM%   TPM%   CONCURRENCY%   DAILY%   QUEUED   REQUESTS TODAY   TOKENS TODAY   LEARNED LIMITS   UPDATED\n" +
			"deepseek   deepseek   2          50%    0%     -              -        -        -                -              -                1s\n" +
			"\n" +
			"QUOTA      POOL            RPM           TPM   ITPM   OTPM   CONCURRENCY   429/MIN   5XX/MIN\n" +
			"deepseek   deepseek-chat   300/600 50%   -     -      -      -             0         0\n",
	}
	if diff := cmp.Diff(want, w.frames); diff != "" {
		t.Errorf("frames (-want +got):\n%s", diff)
	}
}

// TestTopRedrawsOnATerminal: on a terminal every frame clears the screen and
// starts at the top, in one write, so the view is replaced in place.
func TestTopRedrawsOnATerminal(t *testing.T) {
	cl := apiServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := &frameWriter{n: 3, cancel: cancel}
	o := &topOptions{globals: &globals{now: func() time.Time { return testNow }}, interval: time.Millisecond, tty: true}
	if err := o.watch(ctx, Streams{Out: w, ErrOut: &strings.Builder{}}, cl.c, "shop"); err != nil {
		t.Fatal(err)
	}
	once, err := cl.run(t, "top", "--once", "-n", "shop")
	if err != nil {
		t.Fatal(err)
	}
	want := clearScreen + "Every 1ms: namespace shop   10:00:00\n\n" + once
	for i, f := range w.frames {
		if f != want {
			t.Errorf("frame %d (-want +got):\n%s", i, cmp.Diff(want, f))
		}
	}
}

// TestTopKeepsWatchingThroughErrors: a refresh that fails is reported and the
// watch goes on; --once fails instead.
func TestTopKeepsWatchingThroughErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := &frameWriter{n: 2, cancel: cancel}
	o := &topOptions{globals: &globals{now: func() time.Time { return testNow }}, interval: time.Millisecond, tty: true}
	if err := o.watch(ctx, Streams{Out: w, ErrOut: &strings.Builder{}}, failingReader{}, "shop"); err != nil {
		t.Fatal(err)
	}
	for i, f := range w.frames {
		if !strings.Contains(f, "error: list ProviderQuotas in namespace shop: the API server is away") {
			t.Errorf("frame %d = %q, want the error", i, f)
		}
	}
}

type failingReader struct{ client.Reader }

func (failingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errAway
}

var errAway = errorString("the API server is away")

type errorString string

func (e errorString) Error() string { return string(e) }
