package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// cacheReader answers Gets as controller-runtime's informer cache does: a deep copy
// of the stored object, no serialisation. The fake client's JSON round trips would
// measure the fake, not the handler.
type cacheReader map[cacheKey]client.Object

type cacheKey struct {
	kind string
	key  types.NamespacedName
}

func newCacheReader(objs []client.Object) cacheReader {
	r := cacheReader{}
	for _, o := range objs {
		r[cacheKey{reflect.TypeOf(o).String(), client.ObjectKeyFromObject(o)}] = o
	}
	return r
}

func (r cacheReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	src, ok := r[cacheKey{reflect.TypeOf(obj).String(), key}]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{}, key.Name)
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(src.DeepCopyObject()).Elem())
	return nil
}

func (r cacheReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("not used by the injector")
}

func benchInjector(b *testing.B) *Injector {
	b.Helper()
	inj, err := NewInjector(testOptions(), newCacheReader(loadObjects(b)), nil, nil, logr.Discard())
	if err != nil {
		b.Fatal(err)
	}
	return inj
}

// reviewBody is the AdmissionReview the API server posts for the native-chain pod.
func reviewBody(b *testing.B) []byte {
	b.Helper()
	req := admissionRequest(b, yamlFile(b, filepath.Join("testdata", "native-chain.yaml")))
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	}
	body, err := json.Marshal(review)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// serveReview runs one review through the webhook's HTTP handler, as the webhook
// server does after TLS: decode the review, resolve, inject, encode the patch.
func serveReview(b *testing.B, wh *admission.Webhook, body []byte) {
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	wh.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		b.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil || !out.Response.Allowed || len(out.Response.Patch) == 0 {
		b.Fatalf("not an injection: %v %s", err, rec.Body)
	}
}

// BenchmarkAdmissionLatency paces reviews at 50 pods per second, as a busy rollout
// would send them, and reports the handler's latency percentiles in-process
// (excluding TLS and the network). ns/op is the pacing; read p50-µs and p99-µs.
// Enough samples for a p99: go test -run XXX -bench AdmissionLatency -benchtime 1000x
func BenchmarkAdmissionLatency(b *testing.B) {
	wh := &admission.Webhook{Handler: benchInjector(b)}
	body := reviewBody(b)
	serveReview(b, wh, body) // warm up
	const interval = time.Second / 50
	tick := time.NewTicker(interval)
	defer tick.Stop()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		<-tick.C
		start := time.Now()
		serveReview(b, wh, body)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds())/1e3, "max-µs")
}

// BenchmarkAdmission is the unpaced cost of one review (throughput and allocations).
func BenchmarkAdmission(b *testing.B) {
	wh := &admission.Webhook{Handler: benchInjector(b)}
	body := reviewBody(b)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		serveReview(b, wh, body)
	}
}
