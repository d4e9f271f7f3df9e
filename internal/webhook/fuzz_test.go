package webhook

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/aiquota/aiquota/internal/naming"
)

// FuzzParseAnnotations: any annotation values either parse into a request that
// keeps every invariant, or fail with a message naming an annotation; never a panic.
func FuzzParseAnnotations(f *testing.F) {
	f.Add(uint16(0xffff), "true", "chat-default", "", "3", "8787", "8788", "false", "100m", "256Mi")
	f.Add(uint16(0b11), "true", "chat-default", "", "", "", "", "", "", "")
	f.Add(uint16(0b101), "true", "", "openai-tier3", "", "", "", "", "", "")
	f.Add(uint16(0xffff), "yes", "Chat_Default", "q", "0", "70000", "http", "maybe", "-1", "abc")
	f.Add(uint16(0xffff), "true", "a", "b", "10", "9000", "9000", "true", "1e3", "0")
	f.Add(uint16(0b1001), "true", "x", "", "01", "", "", "", "", "")
	f.Add(uint16(0b110001), "true", "x", "", "", "065535", "", "", "", "")
	f.Add(uint16(0b1000000011), "true", "x", "", "", "", "", "", "", "1Gi")
	f.Fuzz(func(t *testing.T, present uint16, inject, chain, quota, priority, port, adminPort, override, cpuRequest, memoryLimit string) {
		keys := []string{
			naming.AnnotationInject, naming.AnnotationFallbackChain, naming.AnnotationProviderQuota, naming.AnnotationPriority,
			naming.AnnotationLimiterPort, naming.AnnotationLimiterAdminPort, naming.AnnotationOverrideEnv,
			naming.AnnotationLimiterCPURequest, naming.AnnotationLimiterMemoryLimit,
		}
		values := []string{inject, chain, quota, priority, port, adminPort, override, cpuRequest, memoryLimit}
		ann := map[string]string{}
		for i, k := range keys {
			if present&(1<<i) != 0 {
				ann[k] = values[i]
			}
		}
		defaults := DefaultOptions().Resources
		req, opted, err := parseAnnotations(ann, defaults)
		if !opted {
			if err != nil {
				t.Fatalf("not opted in but an error: %v", err)
			}
			if v, ok := ann[naming.AnnotationInject]; ok && v != "false" {
				t.Fatalf("inject=%q treated as not opted in", v)
			}
			return
		}
		if err != nil {
			if !strings.Contains(err.Error(), "aiquota.dev/") && !strings.Contains(err.Error(), "the limiter's") {
				t.Fatalf("error names no annotation: %v", err)
			}
			if len(err.Error()) > 4096 {
				t.Fatalf("error is %d bytes", len(err.Error()))
			}
			return
		}
		if ann[naming.AnnotationInject] != "true" {
			t.Fatalf("accepted inject=%q", ann[naming.AnnotationInject])
		}
		if (req.chain == "") == (req.quota == "") {
			t.Fatalf("want exactly one of chain %q and quota %q", req.chain, req.quota)
		}
		if name := req.chain + req.quota; len(validation.IsDNS1123Subdomain(name)) > 0 {
			t.Fatalf("accepted object name %q", name)
		}
		if req.priority < 0 || req.priority > 9 {
			t.Fatalf("priority %d", req.priority)
		}
		for _, p := range []int32{req.port, req.adminPort} {
			if p < minLimiterPort || p > 65535 {
				t.Fatalf("port %d", p)
			}
		}
		if req.port == req.adminPort {
			t.Fatalf("proxy and admin ports are both %d", req.port)
		}
		for name, r := range req.resources.Requests {
			if l, ok := req.resources.Limits[name]; ok && r.Cmp(l) > 0 {
				t.Fatalf("%s request %s over limit %s", name, r.String(), l.String())
			}
			if r.Sign() <= 0 {
				t.Fatalf("%s request %s", name, r.String())
			}
		}
	})
}

// FuzzHandle: any pod the API server could send is answered without a panic; an
// injected pod's patch applies, yields the limiter, and injecting again changes
// nothing.
func FuzzHandle(f *testing.F) {
	for _, name := range []string{"native-chain", "user-set-env", "existing-init-containers", "direct-quota-two-credentials", "multiple-app-containers"} {
		f.Add(yamlFile(f, "testdata/"+name+".yaml"))
	}
	f.Add([]byte(`{"metadata":{"namespace":"shop","annotations":{"aiquota.dev/inject":"true","aiquota.dev/fallback-chain":"chat-default"}},"spec":{"containers":null}}`))
	f.Add([]byte(`{"metadata":{"namespace":"shop","annotations":{"aiquota.dev/inject":"true","aiquota.dev/provider-quota":"openai-tier3"}},"spec":{"containers":[{"name":"a","env":[{"name":"OPENAI_BASE_URL"},{"name":"OPENAI_BASE_URL","value":"x"}]}]}}`))
	f.Add([]byte(`{"metadata":{"namespace":"shop","annotations":{"aiquota.dev/inject":"true","aiquota.dev/fallback-chain":"chat-default","aiquota.dev/override-env":"true"}},"spec":{"containers":[{"name":"a","env":[{"name":"OPENAI_BASE_URL"},{"name":"OPENAI_BASE_URL","value":"x"}]}]}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"metadata":{"annotations":{"aiquota.dev/inject":"true"}}}`))
	inj := newTestInjector(f, testOptions(), loadObjects(f)...)
	f.Fuzz(func(t *testing.T, raw []byte) {
		inj.Handle(t.Context(), rawRequest("shop", raw))
		// The API server sends a pod as it encodes it, with the canonical keys the
		// patch's paths name; Go's decoder also takes "METADATA" for "metadata".
		var decoded corev1.Pod
		if json.Unmarshal(raw, &decoded) != nil {
			return
		}
		raw, err := json.Marshal(&decoded)
		if err != nil {
			t.Fatal(err)
		}
		resp := inj.Handle(t.Context(), rawRequest("shop", raw))
		if !resp.Allowed || len(resp.Patches) == 0 {
			return
		}
		out := applyPatches(t, raw, resp)
		var injectedPod corev1.Pod
		if err := json.Unmarshal(out, &injectedPod); err != nil {
			t.Fatalf("patched pod does not decode: %v\n%s", err, out)
		}
		if !hasLimiterContainer(&injectedPod) {
			t.Fatalf("patched pod has no limiter:\n%s", out)
		}
		again := inj.Handle(t.Context(), rawRequest("shop", out))
		if !again.Allowed || len(again.Patches) != 0 {
			t.Fatalf("second pass: allowed=%v patches=%v", again.Allowed, again.Patches)
		}
	})
}
