package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/scheme"
	"github.com/aiquota/aiquota/internal/testkit"
)

// testImage is the limiter image in every test.
const testImage = "registry.example/aiquota/limiter:v0.1.0"

func testOptions() Options {
	o := DefaultOptions()
	o.Image = testImage
	return o
}

// splitYAML splits a multi-document YAML file.
func splitYAML(t testing.TB, data []byte) [][]byte {
	t.Helper()
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(d)) == 0 {
			continue
		}
		docs = append(docs, d)
	}
	return docs
}

// loadObjects decodes testdata/objects.yaml: the chains and quotas of namespace shop.
func loadObjects(t testing.TB) []client.Object {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "objects.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := serializer.NewCodecFactory(scheme.New()).UniversalDeserializer()
	var objs []client.Object
	for _, doc := range splitYAML(t, data) {
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := dec.Decode(js, nil, nil)
		if err != nil {
			t.Fatalf("decode objects.yaml: %v", err)
		}
		objs = append(objs, obj.(client.Object))
	}
	return objs
}

// newTestInjector is an injector over a fake API holding objs, without events.
func newTestInjector(t testing.TB, opts Options, objs ...client.Object) *Injector {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).Build()
	inj, err := NewInjector(opts, c, nil, nil, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return inj
}

// admissionRequest builds the admission request the API server sends for a pod creation.
func admissionRequest(t testing.TB, podJSON []byte) admission.Request {
	t.Helper()
	var meta struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(podJSON, &meta); err != nil {
		t.Fatalf("pod JSON: %v", err)
	}
	req := rawRequest(meta.Metadata.Namespace, podJSON)
	req.Name = meta.Metadata.Name
	return req
}

// rawRequest is a pod-creation request in namespace carrying raw as the object.
func rawRequest(namespace string, raw []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       types.UID("req-1"),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

// applyPatches applies a response's JSON patch as the API server does.
func applyPatches(t testing.TB, original []byte, resp admission.Response) []byte {
	t.Helper()
	return testkit.ApplyPatches(t, original, resp.Patches)
}

// yamlFile reads a YAML file as JSON.
func yamlFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return js
}

func toYAML(t testing.TB, js []byte) []byte {
	t.Helper()
	out, err := yaml.JSONToYAML(js)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mustContainAll fails unless s contains every part.
func mustContainAll(t testing.TB, what, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("%s %q does not contain %q", what, s, p)
		}
	}
}

// wantVerdict fails t unless resp admits (want nil) or denies with a message that
// contains every string of want.
func wantVerdict(t testing.TB, resp admission.Response, want []string) {
	t.Helper()
	if want == nil {
		if !resp.Allowed {
			t.Fatalf("denied: %s", resp.Result.Message)
		}
		return
	}
	if resp.Allowed {
		t.Fatalf("admitted (patches %d); want denied", len(resp.Patches))
	}
	mustContainAll(t, "message", resp.Result.Message, want...)
}

func admit(t testing.TB, inj *Injector, podJSON []byte) admission.Response {
	t.Helper()
	return inj.Handle(context.Background(), admissionRequest(t, podJSON))
}

// hasLimiterContainer reports whether any container of the pod has the limiter's name.
func hasLimiterContainer(pod *corev1.Pod) bool {
	has := func(cs []corev1.Container) bool {
		return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == naming.LimiterName })
	}
	return has(pod.Spec.InitContainers) || has(pod.Spec.Containers)
}
