package webhook

import (
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/aiquota/aiquota/internal/injection"
	"github.com/aiquota/aiquota/internal/naming"
)

// pod is a minimal pod in namespace shop with the given annotations.
func pod(t *testing.T, annotations map[string]string, mutate ...func(*corev1.Pod)) []byte {
	t.Helper()
	p := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
	}
	for _, m := range mutate {
		m(&p)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func chainPod(extra map[string]string) map[string]string {
	a := map[string]string{naming.AnnotationInject: "true", naming.AnnotationFallbackChain: "chat-default"}
	for k, v := range extra {
		a[k] = v
	}
	return a
}

// TestDeniedAnnotations: every bad value is refused with a message that names the
// annotation and says what is wanted.
func TestDeniedAnnotations(t *testing.T) {
	inj := newTestInjector(t, testOptions(), loadObjects(t)...)
	tests := []struct {
		name        string
		annotations map[string]string
		want        []string
	}{
		{"inject yes", map[string]string{naming.AnnotationInject: "yes", naming.AnnotationFallbackChain: "chat-default"},
			[]string{naming.AnnotationInject, `"yes"`, `want "true" or "false"`}},
		{"inject True", map[string]string{naming.AnnotationInject: "True", naming.AnnotationFallbackChain: "chat-default"},
			[]string{naming.AnnotationInject, `"True"`}},
		{"priority 0", chainPod(map[string]string{naming.AnnotationPriority: "0"}), []string{naming.AnnotationPriority, `"0"`, "1 (interactive) to 9 (batch)"}},
		{"priority abc", chainPod(map[string]string{naming.AnnotationPriority: "abc"}), []string{naming.AnnotationPriority, `"abc"`}},
		{"priority 10", chainPod(map[string]string{naming.AnnotationPriority: "10"}), []string{naming.AnnotationPriority, `"10"`}},
		{"priority -1", chainPod(map[string]string{naming.AnnotationPriority: "-1"}), []string{naming.AnnotationPriority, `"-1"`}},
		{"access log sample 2", chainPod(map[string]string{naming.AnnotationAccessLogSample: "2"}), []string{naming.AnnotationAccessLogSample, `"2"`, "0 (none) to 1"}},
		{"access log sample NaN", chainPod(map[string]string{naming.AnnotationAccessLogSample: "NaN"}), []string{naming.AnnotationAccessLogSample, `"NaN"`}},
		{"port 70000", chainPod(map[string]string{naming.AnnotationLimiterPort: "70000"}), []string{naming.AnnotationLimiterPort, `"70000"`, "1024 to 65535"}},
		{"port http", chainPod(map[string]string{naming.AnnotationLimiterPort: "http"}), []string{naming.AnnotationLimiterPort, `"http"`}},
		{"port 80", chainPod(map[string]string{naming.AnnotationLimiterPort: "80"}), []string{naming.AnnotationLimiterPort, `"80"`}},
		{"port +9000", chainPod(map[string]string{naming.AnnotationLimiterPort: "+9000"}), []string{naming.AnnotationLimiterPort}},
		{"admin port equals proxy port", chainPod(map[string]string{naming.AnnotationLimiterPort: "9000", naming.AnnotationLimiterAdminPort: "9000"}),
			[]string{naming.AnnotationLimiterPort, naming.AnnotationLimiterAdminPort, "different ports"}},
		{"chain and quota", chainPod(map[string]string{naming.AnnotationProviderQuota: "openai-tier3"}),
			[]string{naming.AnnotationFallbackChain, naming.AnnotationProviderQuota, "exactly one"}},
		{"neither chain nor quota", map[string]string{naming.AnnotationInject: "true"},
			[]string{naming.AnnotationFallbackChain, naming.AnnotationProviderQuota}},
		{"invalid chain name", map[string]string{naming.AnnotationInject: "true", naming.AnnotationFallbackChain: "Chat_Default"},
			[]string{naming.AnnotationFallbackChain, `"Chat_Default"`, "not a valid object name"}},
		{"empty quota name", map[string]string{naming.AnnotationInject: "true", naming.AnnotationProviderQuota: ""},
			[]string{naming.AnnotationProviderQuota, "is empty"}},
		{"override-env maybe", chainPod(map[string]string{naming.AnnotationOverrideEnv: "maybe"}), []string{naming.AnnotationOverrideEnv, `"maybe"`}},
		{"cpu request garbage", chainPod(map[string]string{naming.AnnotationLimiterCPURequest: "lots"}), []string{naming.AnnotationLimiterCPURequest, `"lots"`, `"100m"`}},
		{"memory limit zero", chainPod(map[string]string{naming.AnnotationLimiterMemoryLimit: "0"}), []string{naming.AnnotationLimiterMemoryLimit, "positive"}},
		{"request above default limit", chainPod(map[string]string{naming.AnnotationLimiterMemoryRequest: "1Gi"}),
			[]string{"memory request 1Gi exceeds its limit 128Mi", naming.AnnotationLimiterMemoryRequest}},
		{"every problem at once", map[string]string{naming.AnnotationInject: "yes", naming.AnnotationPriority: "0", naming.AnnotationLimiterPort: "http"},
			[]string{naming.AnnotationInject, naming.AnnotationPriority, naming.AnnotationLimiterPort, naming.AnnotationFallbackChain}},
		{"huge value is cut", chainPod(map[string]string{naming.AnnotationPriority: strings.Repeat("9", 10000)}), []string{naming.AnnotationPriority, `99"...;`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := admit(t, inj, pod(t, tc.annotations))
			wantVerdict(t, resp, tc.want)
			if resp.Result.Code != http.StatusForbidden {
				t.Errorf("code = %d, want 403", resp.Result.Code)
			}
			if len(resp.Result.Message) > 1024 {
				t.Errorf("message is %d bytes", len(resp.Result.Message))
			}
		})
	}
}

// TestMissingReferences: a pod naming a chain or quota that does not exist is
// denied with its name, or admitted untouched with a warning when the manager says so.
func TestMissingReferences(t *testing.T) {
	objs := loadObjects(t)
	tests := []struct {
		name        string
		annotations map[string]string
		want        []string
	}{
		{"missing chain", map[string]string{naming.AnnotationInject: "true", naming.AnnotationFallbackChain: "nope"},
			[]string{`FallbackChain "nope"`, naming.AnnotationFallbackChain, `namespace "shop"`}},
		{"missing quota", map[string]string{naming.AnnotationInject: "true", naming.AnnotationProviderQuota: "openai-tier9"},
			[]string{`ProviderQuota "openai-tier9"`, naming.AnnotationProviderQuota}},
		{"chain of missing quotas", map[string]string{naming.AnnotationInject: "true", naming.AnnotationFallbackChain: "all-missing"},
			[]string{`FallbackChain "all-missing"`, `"ghost-a", "ghost-b"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/deny", func(t *testing.T) {
			wantVerdict(t, admit(t, newTestInjector(t, testOptions(), objs...), pod(t, tc.annotations)), tc.want)
		})
		t.Run(tc.name+"/admit", func(t *testing.T) {
			o := testOptions()
			o.MissingReference = MissingReferenceAdmit
			resp := admit(t, newTestInjector(t, o, objs...), pod(t, tc.annotations))
			if !resp.Allowed || len(resp.Patches) != 0 {
				t.Fatalf("want admitted untouched, got allowed=%v patches=%v", resp.Allowed, resp.Patches)
			}
			if len(resp.Warnings) != 1 {
				t.Fatalf("warnings = %q", resp.Warnings)
			}
			mustContainAll(t, "warning", resp.Warnings[0], append(tc.want, "WITHOUT the aiquota limiter")...)
		})
	}
}

// TestPodsThatCannotTakeTheSidecar are refused with the reason, not left to fail later.
func TestPodsThatCannotTakeTheSidecar(t *testing.T) {
	inj := newTestInjector(t, testOptions(), loadObjects(t)...)
	tests := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []string
	}{
		{"hostNetwork", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, []string{"hostNetwork"}},
		{"reserved volume name", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: naming.ConfigVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}, []string{`"aiquota-config"`, "reserved"}},
		{"app uses the proxy port", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: naming.DefaultPort}}
		}, []string{`container "app"`, "8787", naming.AnnotationLimiterPort}},
		{"init container uses the admin port", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "s:1", Ports: []corev1.ContainerPort{{ContainerPort: naming.AdminPort}}}}
		}, []string{`container "setup"`, "8788", naming.AnnotationLimiterAdminPort}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantVerdict(t, admit(t, inj, pod(t, chainPod(nil), tc.mutate)), tc.want)
		})
	}
}

// TestNotForUs: requests the webhook configuration should never send are let
// through untouched rather than guessed at.
func TestNotForUs(t *testing.T) {
	inj := newTestInjector(t, testOptions(), loadObjects(t)...)
	base := admissionRequest(t, pod(t, chainPod(nil)))
	tests := []struct {
		name   string
		modify func(*admissionv1.AdmissionRequest)
	}{
		{"update", func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update }},
		{"not a pod", func(r *admissionv1.AdmissionRequest) { r.Kind.Kind = "ConfigMap" }},
		{"subresource", func(r *admissionv1.AdmissionRequest) { r.SubResource = "binding" }},
		{"kube-system", func(r *admissionv1.AdmissionRequest) { r.Namespace = "kube-system" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := base
			req.AdmissionRequest = *base.AdmissionRequest.DeepCopy()
			tc.modify(&req.AdmissionRequest)
			resp := inj.Handle(t.Context(), req)
			if !resp.Allowed || len(resp.Patches) != 0 {
				t.Errorf("allowed=%v patches=%v; want allowed untouched", resp.Allowed, resp.Patches)
			}
		})
	}
	t.Run("not opted in", func(t *testing.T) {
		for _, ann := range []map[string]string{nil, {naming.AnnotationInject: "false", naming.AnnotationPriority: "abc"}, {naming.AnnotationFallbackChain: "chat-default"}} {
			resp := admit(t, inj, pod(t, ann))
			if !resp.Allowed || len(resp.Patches) != 0 {
				t.Errorf("annotations %v: allowed=%v patches=%v; want allowed untouched", ann, resp.Allowed, resp.Patches)
			}
		}
	})
	t.Run("namespace not watched", func(t *testing.T) {
		for _, tc := range []struct {
			watch  []string
			inject bool
		}{{[]string{"team-a"}, false}, {[]string{"team-a", base.Namespace}, true}} {
			o := testOptions()
			o.WatchNamespaces = tc.watch
			resp := newTestInjector(t, o, loadObjects(t)...).Handle(t.Context(), base)
			if !resp.Allowed || (len(resp.Patches) > 0) != tc.inject {
				t.Errorf("watching %v, a pod in %s: allowed=%v, %d patches; want injected %v", tc.watch, base.Namespace, resp.Allowed, len(resp.Patches), tc.inject)
			}
		}
	})
	t.Run("undecodable pod", func(t *testing.T) {
		req := admissionRequest(t, []byte(`{"metadata":{"namespace":"shop"}}`))
		req.Object = runtime.RawExtension{Raw: []byte(`{"spec": 7}`)}
		resp := inj.Handle(t.Context(), req)
		if resp.Allowed || resp.Result.Code != http.StatusBadRequest {
			t.Errorf("allowed=%v code=%d; want a 400 error", resp.Allowed, resp.Result.Code)
		}
	})
}

// TestSummaryRecordsKeptEnv: the annotation says which user values were left alone,
// and the event note tells how to change that.
func TestSummaryRecordsKeptEnv(t *testing.T) {
	inj := newTestInjector(t, testOptions(), loadObjects(t)...)
	in := pod(t, chainPod(nil), func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "OPENAI_BASE_URL", Value: "https://proxy.example/v1"}}
	})
	resp := admit(t, inj, in)
	var out corev1.Pod
	if err := json.Unmarshal(applyPatches(t, in, resp), &out); err != nil {
		t.Fatal(err)
	}
	s, err := injection.ReadSummary(&out)
	if err != nil || s == nil {
		t.Fatalf("injected annotation: %v, %v", s, err)
	}
	if diff := cmp.Diff([]string{"app/OPENAI_BASE_URL"}, s.EnvKept); diff != "" {
		t.Errorf("envKept (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ANTHROPIC_BASE_URL"}, s.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	wantEnv := []corev1.EnvVar{
		{Name: "OPENAI_BASE_URL", Value: "https://proxy.example/v1"}, {Name: "ANTHROPIC_BASE_URL", Value: "http://127.0.0.1:8787"},
		{Name: "OPENAI_API_KEY", Value: naming.PlaceholderAPIKey}, {Name: "ANTHROPIC_API_KEY", Value: naming.PlaceholderAPIKey},
	}
	if diff := cmp.Diff(wantEnv, out.Spec.Containers[0].Env); diff != "" {
		t.Errorf("app env (-want +got):\n%s", diff)
	}
	mustContainAll(t, "event note", injectedNote(s), "app/OPENAI_BASE_URL", naming.AnnotationOverrideEnv)
}

// TestOptionsRejected: the manager refuses to start with options that would make
// every injected pod invalid.
func TestOptionsRejected(t *testing.T) {
	for name, mutate := range map[string]func(*Options){
		"no image":     func(o *Options) { o.Image = " " },
		"short token":  func(o *Options) { o.TokenExpirationSeconds = 60 },
		"bad policy":   func(o *Options) { o.MissingReference = "maybe" },
		"negative uid": func(o *Options) { o.RunAsUser = -1 },
		"request over limit": func(o *Options) {
			o.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Mi")}
		},
	} {
		t.Run(name, func(t *testing.T) {
			o := testOptions()
			mutate(&o)
			if _, err := NewInjector(o, nil, nil, nil, logr.Discard()); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// TestFlags: the manager's flags reach the options, and bad values are refused.
func TestFlags(t *testing.T) {
	o := DefaultOptions()
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	o.BindFlags(fs)
	err := fs.Parse([]string{
		"--webhook-port=10443", "--limiter-image=registry.example/limiter:v2", "--limiter-image-pull-policy=Always",
		"--limiter-native-sidecar=false", "--limiter-cpu-limit=500m", "--limiter-memory-limit=", "--limiter-memory-request=48Mi",
		"--limiter-run-as-user=0", "--limiter-token-expiration=1h", "--webhook-missing-reference=admit",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultOptions()
	want.Port, want.Image, want.ImagePullPolicy, want.NativeSidecar = 10443, "registry.example/limiter:v2", corev1.PullAlways, false
	want.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}
	want.Resources.Requests[corev1.ResourceMemory] = resource.MustParse("48Mi")
	want.RunAsUser, want.TokenExpirationSeconds, want.MissingReference = 0, 3600, MissingReferenceAdmit
	if diff := cmp.Diff(want, o); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	if _, err := NewInjector(o, nil, nil, nil, logr.Discard()); err != nil {
		t.Errorf("options from valid flags refused: %v", err)
	}
	for _, bad := range []string{"--limiter-image-pull-policy=Sometimes", "--limiter-cpu-request=lots", "--limiter-token-expiration=soon"} {
		fs := flag.NewFlagSet("manager", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o := DefaultOptions()
		o.BindFlags(fs)
		if err := fs.Parse([]string{bad}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
