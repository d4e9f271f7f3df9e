package webhook

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/injection"
	"github.com/aiquota/aiquota/internal/naming"
)

// goldenPod is testdata/native-chain.golden, an injected pod, decoded for editing.
func goldenPod(t *testing.T) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := json.Unmarshal(yamlFile(t, filepath.Join("testdata", "native-chain.golden")), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func encodePod(t *testing.T, p *corev1.Pod) []byte {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// limiterOf is the injected limiter of a golden pod of native-sidecar mode.
func limiterOf(p *corev1.Pod) *corev1.Container { return &p.Spec.InitContainers[0] }

// TestAlreadyInjectedIsTheWebhooksOwnRecord: a pod passes as already injected only
// with the webhook's record and a limiter container of the injector's shape; a
// container that merely has the limiter's name is refused, never taken for the
// limiter (the app would run unprotected), and a stale record alone is replaced
// by a fresh injection.
func TestAlreadyInjectedIsTheWebhooksOwnRecord(t *testing.T) {
	inj := newTestInjector(t, testOptions(), loadObjects(t)...)
	impostor := corev1.Container{Name: naming.LimiterName, Image: "registry.example/my-own-proxy:1"}
	tests := []struct {
		name string
		pod  func(t *testing.T) *corev1.Pod
		// want are parts of the denial; nil means admitted.
		want []string
		// patched: admitted with an injection (else admitted untouched).
		patched bool
	}{
		{"app container named like the limiter", func(t *testing.T) *corev1.Pod {
			var p corev1.Pod
			_ = json.Unmarshal(pod(t, chainPod(nil), func(p *corev1.Pod) { p.Spec.Containers = append(p.Spec.Containers, impostor) }), &p)
			return &p
		}, []string{`container named "aiquota-limiter"`, "no " + naming.AnnotationInjected, "unprotected", "rename the container"}, false},
		{"init container named like the limiter", func(t *testing.T) *corev1.Pod {
			var p corev1.Pod
			_ = json.Unmarshal(pod(t, chainPod(nil), func(p *corev1.Pod) { p.Spec.InitContainers = []corev1.Container{impostor} }), &p)
			return &p
		}, []string{`container named "aiquota-limiter"`, "no " + naming.AnnotationInjected}, false},
		{"golden as injected", func(t *testing.T) *corev1.Pod { return goldenPod(t) }, nil, false},
		{"record kept, limiter replaced by another image", func(t *testing.T) *corev1.Pod {
			p := goldenPod(t)
			limiterOf(p).Image = impostor.Image
			return p
		}, []string{"is not the limiter this webhook injects", `its image is "registry.example/my-own-proxy:1"`}, false},
		{"limiter listening on every address", func(t *testing.T) *corev1.Pod {
			p := goldenPod(t)
			l := limiterOf(p)
			l.Args[slices.Index(l.Args, "127.0.0.1:8787")] = "0.0.0.0:8787"
			return p
		}, []string{"its args differ"}, false},
		{"limiter with another port", func(t *testing.T) *corev1.Pod {
			p := goldenPod(t)
			limiterOf(p).Ports = append(limiterOf(p).Ports, corev1.ContainerPort{ContainerPort: 9999})
			return p
		}, []string{"its ports differ"}, false},
		{"limiter without its key mount", func(t *testing.T) *corev1.Pod {
			p := goldenPod(t)
			limiterOf(p).VolumeMounts = limiterOf(p).VolumeMounts[:2]
			return p
		}, []string{"its volume mounts differ"}, false},
		{"limiter with the API token the ServiceAccount plugin mounts", func(t *testing.T) *corev1.Pod {
			p := goldenPod(t)
			limiterOf(p).VolumeMounts = append(limiterOf(p).VolumeMounts, corev1.VolumeMount{Name: "kube-api-access-x1y2z", MountPath: serviceAccountDir, ReadOnly: true})
			return p
		}, nil, false},
		{"limiter with a file mounted over its config", func(t *testing.T) *corev1.Pod {
			p := goldenPod(t)
			limiterOf(p).VolumeMounts = append(limiterOf(p).VolumeMounts, corev1.VolumeMount{Name: "mine", MountPath: naming.ConfigPath(), SubPath: naming.ConfigKey, ReadOnly: true})
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "mine", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "mine"}}}})
			return p
		}, []string{"its volume mounts differ"}, false},
		{"config volume from another ConfigMap", func(t *testing.T) *corev1.Pod {
			p := goldenPod(t)
			p.Spec.Volumes[0].ConfigMap.Name = "my-config"
			return p
		}, []string{`volume "aiquota-config" is missing or has another source`}, false},
		{"record for another chain", func(t *testing.T) *corev1.Pod {
			p := goldenPod(t)
			p.Annotations[naming.AnnotationFallbackChain] = "cheap"
			return p
		}, []string{`the record is for FallbackChain "chat-default" but the pod's annotations name FallbackChain "cheap"`}, false},
		{"record of another mode", func(t *testing.T) *corev1.Pod {
			p := goldenPod(t)
			p.Annotations[naming.AnnotationInjected] = strings.Replace(p.Annotations[naming.AnnotationInjected], injection.ModeNativeSidecar, injection.ModeContainer, 1)
			return p
		}, []string{"injected as a container", "is in initContainers"}, false},
		{"record that is not ours", func(t *testing.T) *corev1.Pod {
			p := goldenPod(t)
			p.Annotations[naming.AnnotationInjected] = "yes"
			return p
		}, []string{`annotation is "yes", not a record this webhook writes`}, false},
		{"two limiters", func(t *testing.T) *corev1.Pod {
			p := goldenPod(t)
			p.Spec.Containers = append(p.Spec.Containers, impostor)
			return p
		}, []string{`2 containers named "aiquota-limiter"`}, false},
		{"stale record without a limiter is injected afresh", func(t *testing.T) *corev1.Pod {
			var p corev1.Pod
			_ = json.Unmarshal(pod(t, chainPod(map[string]string{naming.AnnotationInjected: `{"version":1}`})), &p)
			return &p
		}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := encodePod(t, tc.pod(t))
			resp := admit(t, inj, in)
			wantVerdict(t, resp, tc.want)
			if tc.want != nil {
				return
			}
			if got := len(resp.Patches) > 0; got != tc.patched {
				t.Fatalf("patched = %v, want %v", got, tc.patched)
			}
			if tc.patched {
				var out corev1.Pod
				if err := json.Unmarshal(applyPatches(t, in, resp), &out); err != nil {
					t.Fatal(err)
				}
				var s injection.Summary
				if err := json.Unmarshal([]byte(out.Annotations[naming.AnnotationInjected]), &s); err != nil || s.FallbackChain != "chat-default" {
					t.Errorf("record after injection = %q (%v)", out.Annotations[naming.AnnotationInjected], err)
				}
			}
		})
	}
}

// TestKeysStayWithTheLimiter: pods whose app could read the limiter's keys, through
// a shared process namespace or by mounting its credential volumes by their
// predictable names, are refused, whether or not they were injected before.
func TestKeysStayWithTheLimiter(t *testing.T) {
	inj := newTestInjector(t, testOptions(), loadObjects(t)...)
	yes, no := true, false
	keyVolume := naming.KeyVolume("openai-keys")
	fresh := func(mutate func(*corev1.Pod)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return pod(t, chainPod(nil), mutate) }
	}
	injected := func(mutate func(*corev1.Pod)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			p := goldenPod(t)
			mutate(p)
			return encodePod(t, p)
		}
	}
	tests := []struct {
		name string
		pod  func(t *testing.T) []byte
		want []string // nil: admitted
	}{
		{"shareProcessNamespace", fresh(func(p *corev1.Pod) { p.Spec.ShareProcessNamespace = &yes }),
			[]string{"shareProcessNamespace: true", "/proc", "API keys"}},
		{"shareProcessNamespace false", fresh(func(p *corev1.Pod) { p.Spec.ShareProcessNamespace = &no }), nil},
		{"hostPID", fresh(func(p *corev1.Pod) { p.Spec.HostPID = true }), []string{"hostPID: true", "/proc"}},
		{"app mounts a key volume by its name", fresh(func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: keyVolume, MountPath: "/stolen"}}
		}), []string{`container "app" mounts volume "` + keyVolume + `"`, "only the limiter may mount them"}},
		{"init container mounts the token", fresh(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "s:1", VolumeMounts: []corev1.VolumeMount{{Name: naming.TokenVolume, MountPath: "/t"}}}}
		}), []string{`container "setup" mounts volume "aiquota-token"`}},
		{"app mounts a key volume of a Secret the chain does not use", fresh(func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: naming.KeyVolumePrefix + "0000", MountPath: "/k"}}
			p.Spec.Volumes = []corev1.Volume{{Name: naming.KeyVolumePrefix + "0000", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}), []string{`container "app" mounts volume "aiquota-key-0000"`}},
		{"app mounts the config", fresh(func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: naming.ConfigVolume, MountPath: "/c"}}
		}), nil},
		{"injected, then the app mounts the keys", injected(func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: keyVolume, MountPath: "/stolen"}}
		}), []string{`container "app" mounts volume "` + keyVolume + `"`}},
		{"injected, then shareProcessNamespace", injected(func(p *corev1.Pod) { p.Spec.ShareProcessNamespace = &yes }),
			[]string{"shareProcessNamespace: true"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantVerdict(t, admit(t, inj, tc.pod(t)), tc.want)
		})
	}
}

// TestConfigMapMustBeTheOwners: the ConfigMap the limiter would load is mounted
// only if the chain or quota the pod names controls it (or it does not exist yet,
// when only that owner's reconcile can create it).
func TestConfigMapMustBeTheOwners(t *testing.T) {
	objs := loadObjects(t)
	uids := map[string]types.UID{}
	for _, o := range objs {
		uid := types.UID("uid-" + o.GetName())
		o.SetUID(uid)
		uids[o.GetName()] = uid
	}
	yes := true
	ref := func(kind, name string, uid types.UID, controller bool) []metav1.OwnerReference {
		r := metav1.OwnerReference{APIVersion: quotav1alpha1.GroupVersion.String(), Kind: kind, Name: name, UID: uid}
		if controller {
			r.Controller = &yes
		}
		return []metav1.OwnerReference{r}
	}
	chainCM := naming.ChainConfigMap("chat-default")
	quotaCM := naming.QuotaConfigMap("openai-tier3")
	tests := []struct {
		name        string
		cm          string
		owners      []metav1.OwnerReference
		annotations map[string]string
		want        []string // nil: injected
	}{
		{"controlled by the chain", chainCM, ref("FallbackChain", "chat-default", uids["chat-default"], true), chainPod(nil), nil},
		{"controlled by the quota", quotaCM, ref("ProviderQuota", "openai-tier3", uids["openai-tier3"], true),
			map[string]string{naming.AnnotationInject: "true", naming.AnnotationProviderQuota: "openai-tier3"}, nil},
		{"planted, no owner", chainCM, nil, chainPod(nil),
			[]string{`ConfigMap "aiquota-fc-chat-default" in namespace "shop" is not owned by FallbackChain "chat-default"`, "it has no controller", naming.AnnotationFallbackChain}},
		{"owner reference that is not the controller", chainCM, ref("FallbackChain", "chat-default", uids["chat-default"], false), chainPod(nil),
			[]string{"is not owned by", "it has no controller"}},
		{"controlled by an earlier chain of the name", chainCM, ref("FallbackChain", "chat-default", "uid-deleted", true), chainPod(nil),
			[]string{"an earlier FallbackChain of that name"}},
		{"controlled by another chain", chainCM, ref("FallbackChain", "cheap", uids["cheap"], true), chainPod(nil),
			[]string{`its controller is FallbackChain "cheap"`}},
		{"quota's name, controlled by a chain", quotaCM, ref("FallbackChain", "openai-tier3", "uid-x", true),
			map[string]string{naming.AnnotationInject: "true", naming.AnnotationProviderQuota: "openai-tier3"},
			[]string{`not owned by ProviderQuota "openai-tier3"`, naming.AnnotationProviderQuota}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: tc.cm, OwnerReferences: tc.owners}}
			inj := newTestInjector(t, testOptions(), append(slices.Clone(objs), client.Object(cm))...)
			inputs := [][]byte{pod(t, tc.annotations)}
			if tc.annotations[naming.AnnotationFallbackChain] == "chat-default" {
				// A pod injected before: the ConfigMap is checked again.
				inputs = append(inputs, encodePod(t, goldenPod(t)))
			}
			for _, in := range inputs {
				wantVerdict(t, admit(t, inj, in), tc.want)
			}
		})
	}
}
