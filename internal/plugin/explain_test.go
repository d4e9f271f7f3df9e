package plugin

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/testkit"
	"github.com/aiquota/aiquota/internal/webhook"
)

// admitted returns pod as the webhook's mutation leaves it, reading the chains and
// quotas from the cluster as the manager's injector does.
func admitted(t *testing.T, cl *cluster, native bool, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	opts := webhook.DefaultOptions()
	opts.Image = "registry.example/aiquota/limiter:v0.1.0"
	opts.NativeSidecar = native
	inj, err := webhook.NewInjector(opts, cl.c, nil, nil, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	resp := inj.Handle(t.Context(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "req-1", Name: pod.Name, Namespace: pod.Namespace, Operation: admissionv1.Create,
		Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Object: runtime.RawExtension{Raw: raw},
	}})
	if !resp.Allowed || len(resp.Patches) == 0 {
		t.Fatalf("the webhook did not inject %s: %+v", pod.Name, resp.Result)
	}
	out := testkit.ApplyPatches(t, raw, resp.Patches)
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func appPod(name string, annotations map[string]string, env ...corev1.EnvVar) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", Env: env}}},
	}
}

// TestExplainPod creates pods as the webhook leaves them (and two it did not
// touch) on the API server, and compares explain-pod's account of each with its
// golden file.
func TestExplainPod(t *testing.T) {
	cl := apiServer(t)
	// What the FallbackChain reconciler renders; no manager runs here.
	// The webhook mounts it only if the chain controls it.
	var fc quotav1alpha1.FallbackChain
	if err := cl.c.Get(t.Context(), client.ObjectKey{Namespace: "shop", Name: "chat-default"}, &fc); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Namespace: "shop", Name: naming.ChainConfigMap("chat-default"),
		Annotations: map[string]string{naming.AnnotationConfigHash: "9f2c41d07a3e"},
	}}
	if err := controllerutil.SetControllerReference(&fc, cm, cl.c.Scheme()); err != nil {
		t.Fatal(err)
	}
	if err := cl.c.Create(t.Context(), cm); err != nil {
		t.Fatal(err)
	}
	chain := map[string]string{naming.AnnotationInject: "true", naming.AnnotationFallbackChain: "chat-default", naming.AnnotationPriority: "2"}
	quota := map[string]string{naming.AnnotationInject: "true", naming.AnnotationProviderQuota: "openai-tier3"}
	pods := []struct {
		golden string
		pod    *corev1.Pod
	}{
		{"explain-chain-native", admitted(t, cl, true, appPod("chat", chain, corev1.EnvVar{Name: "OPENAI_BASE_URL", Value: "https://gateway.example/v1"}))},
		// The quota's ConfigMap was never rendered: explain-pod says so.
		{"explain-quota-container", admitted(t, cl, false, appPod("batch", quota))},
		{"explain-not-asked", appPod("plain", nil)},
		{"explain-asked-not-injected", appPod("missed", chain)},
	}
	for _, tc := range pods {
		t.Run(tc.golden, func(t *testing.T) {
			if err := cl.c.Create(t.Context(), tc.pod); err != nil {
				t.Fatalf("the API server refuses the pod: %v", err)
			}
			got, err := cl.run(t, "explain-pod", tc.pod.Name, "-n", "shop")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tc.golden, got)
		})
	}
}

func TestExplainPodNotFound(t *testing.T) {
	cl := apiServer(t)
	_, err := cl.run(t, "explain-pod", "pod/nothing-here", "-n", "shop")
	if err == nil || !strings.Contains(err.Error(), `get pod shop/nothing-here`) || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("err = %v, want one naming the pod and not found", err)
	}
}
