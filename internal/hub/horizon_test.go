package hub

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/testkit"
)

// TestGrantHorizonLetsAFreshLeaderGrantAtOnce: the grant horizon on record (a Lease
// on the real API server) tells a leader whether an earlier term's leases can still
// be in force. The first leader ever finds none and grants a newcomer at once; the
// next term, starting while the first one's horizon is recent, learns for a TTL
// before it grants.
func TestGrantHorizonLetsAFreshLeaderGrantAtOnce(t *testing.T) {
	ns := newNamespace(t)
	clock := time.Now()
	now := func() time.Time { return clock }
	const ttl = 30 * time.Second
	record := &HorizonRecord{Client: env.Client, Reader: env.Client, Namespace: ns, Holder: "manager-0"}
	term := func() (*Leases, context.CancelFunc) {
		l := &Leases{Enabled: true, TTL: ttl, Reserve: DefaultLeaseReserve, Now: now, Record: record, Log: logr.Discard()}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := l.Start(ctx); err != nil {
				t.Errorf("Start: %v", err)
			}
		}()
		stop := func() { cancel(); <-done }
		t.Cleanup(stop)
		testkit.Eventually(t, 20*time.Second, "the horizon on record", testkit.True(func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.recorded
		}))
		return l, stop
	}
	granted := func(l *Leases, pod string) float64 {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pod, UID: types.UID("uid-" + pod)}}
		r := podReport(p, hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: "openai"}, 1, "boot", clock, 0, 0)
		r.Accounts[0].Demand = &hubapi.Demand{RequestsPerMinute: 100}
		leases := l.Answer(r)
		if len(leases) != 1 {
			t.Fatalf("%d leases, want 1", len(leases))
		}
		return leases[0].Grants[hubapi.LimitRequestsPerMinute]
	}

	first, stop := term()
	if g := granted(first, "a"); g <= 0 {
		t.Fatalf("the first leader ever granted %v requests per minute, want some at once", g)
	}
	horizon, err := record.Load(context.Background())
	if err != nil || !horizon.After(clock) {
		t.Fatalf("recorded horizon %v (%v), want after now %v", horizon, err, clock)
	}
	stop()

	clock = clock.Add(time.Second)
	second, _ := term()
	if g := granted(second, "b"); g != 0 {
		t.Fatalf("a leader starting under a recent horizon granted a newcomer %v, want nothing while it learns", g)
	}
	clock = clock.Add(ttl) // every lease the first term offered has ended
	if g := granted(second, "c"); g <= 0 {
		t.Fatalf("a TTL into the second term: granted %v, want some", g)
	}
}
