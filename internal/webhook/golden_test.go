package webhook

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/aiquota/aiquota/internal/injection"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/testkit"
)

// goldenCases are the input pods of testdata/<name>.yaml, each with the manager
// options it is injected under; the output is testdata/<name>.golden.
var goldenCases = []struct {
	name     string
	opts     func(*Options)
	warnings int
}{
	{name: "native-chain"},
	{name: "legacy-container", opts: func(o *Options) { o.NativeSidecar = false }},
	{name: "user-set-env"},
	{name: "user-set-keys"},
	{name: "override-env"},
	{name: "multiple-app-containers"},
	{name: "existing-init-containers"},
	{name: "custom-port"},
	{name: "priority-resources"},
	{name: "direct-quota-two-credentials"},
	{name: "gemini-deepseek-chain"},
	{name: "chain-half-missing", warnings: 1},
}

func goldenOptions(tc struct {
	name     string
	opts     func(*Options)
	warnings int
}) Options {
	o := testOptions()
	if tc.opts != nil {
		tc.opts(&o)
	}
	return o
}

// TestGolden injects every input pod and compares the pod the API server would
// store with its golden file (go test -run TestGolden -update rewrites them).
func TestGolden(t *testing.T) {
	objs := loadObjects(t)
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			inj := newTestInjector(t, goldenOptions(tc), objs...)
			in := yamlFile(t, filepath.Join("testdata", tc.name+".yaml"))
			resp := admit(t, inj, in)
			if !resp.Allowed {
				t.Fatalf("denied: %v", resp.Result)
			}
			if len(resp.Patches) == 0 {
				t.Fatal("no patch: the pod was not injected")
			}
			if len(resp.Warnings) != tc.warnings {
				t.Errorf("warnings = %q, want %d", resp.Warnings, tc.warnings)
			}
			got := toYAML(t, applyPatches(t, in, resp))
			testkit.Golden(t, filepath.Join("testdata", tc.name+".golden"), got)
		})
	}
}

// TestGoldenIdempotent feeds every golden output back in: an injected pod must
// come out byte for byte the same.
func TestGoldenIdempotent(t *testing.T) {
	objs := loadObjects(t)
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			inj := newTestInjector(t, goldenOptions(tc), objs...)
			path := filepath.Join("testdata", tc.name+".golden")
			golden, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			in := yamlFile(t, path)
			resp := admit(t, inj, in)
			if !resp.Allowed {
				t.Fatalf("an injected pod was denied: %v", resp.Result)
			}
			if len(resp.Patches) != 0 {
				t.Errorf("an injected pod was patched again: %v", resp.Patches)
			}
			if got := toYAML(t, applyPatches(t, in, resp)); !bytes.Equal(got, golden) {
				t.Errorf("second pass changed the pod:\n%s", cmp.Diff(string(golden), string(got)))
			}
		})
	}
}

// TestGoldenInvariants checks, on every golden, the properties the issue asks for,
// so a golden rewritten with -update cannot silently drop one.
func TestGoldenInvariants(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			var pod corev1.Pod
			if err := json.Unmarshal(yamlFile(t, filepath.Join("testdata", tc.name+".golden")), &pod); err != nil {
				t.Fatal(err)
			}
			opts := goldenOptions(tc)
			var limiter *corev1.Container
			if opts.NativeSidecar {
				if len(pod.Spec.InitContainers) == 0 || pod.Spec.InitContainers[0].Name != naming.LimiterName {
					t.Fatalf("the limiter is not the first init container")
				}
				limiter = &pod.Spec.InitContainers[0]
				if limiter.RestartPolicy == nil || *limiter.RestartPolicy != corev1.ContainerRestartPolicyAlways {
					t.Error("the native sidecar has no restartPolicy Always")
				}
			} else {
				if pod.Spec.Containers[0].Name != naming.LimiterName {
					t.Fatalf("the limiter is not the first container")
				}
				limiter = &pod.Spec.Containers[0]
				if limiter.RestartPolicy != nil {
					t.Error("a plain container must not set restartPolicy")
				}
			}
			sc := limiter.SecurityContext
			if sc == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
				len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("limiter security context is not locked down: %+v", sc)
			}
			if limiter.ReadinessProbe == nil || limiter.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Error("no readiness probe on /readyz")
			}
			if limiter.Image != testImage {
				t.Errorf("image = %q", limiter.Image)
			}
			args := strings.Join(limiter.Args, " ")
			mustContainAll(t, "args", args, "--config "+naming.ConfigPath(), "--listen 127.0.0.1:")
			if !strings.Contains(args, "--admin-listen :") {
				t.Errorf("args %q: no admin listener", args)
			}

			vols := map[string]corev1.Volume{}
			for _, v := range pod.Spec.Volumes {
				vols[v.Name] = v
			}
			cfg, ok := vols[naming.ConfigVolume]
			if !ok || cfg.ConfigMap == nil || len(cfg.ConfigMap.Items) != 0 {
				t.Errorf("config volume is not the whole ConfigMap: %+v", cfg)
			}
			tok, ok := vols[naming.TokenVolume]
			if !ok || tok.Projected == nil || tok.Projected.Sources[0].ServiceAccountToken.Audience != naming.TokenAudience {
				t.Errorf("token volume: %+v", tok)
			}
			for _, m := range limiter.VolumeMounts {
				if !m.ReadOnly || m.SubPath != "" {
					t.Errorf("mount %s is writable or uses subPath", m.Name)
				}
				v := vols[m.Name]
				if v.Secret != nil && m.MountPath != naming.KeyDir(v.Secret.SecretName) {
					t.Errorf("secret %s mounted at %s, want %s", v.Secret.SecretName, m.MountPath, naming.KeyDir(v.Secret.SecretName))
				}
				if v.Secret != nil && len(v.Secret.Items) == 0 {
					t.Errorf("secret %s mounts every key; want only the credentials' keys", v.Secret.SecretName)
				}
			}
			// Keys reach the limiter only: no app container mounts them or sees them in env.
			for _, c := range pod.Spec.Containers {
				if c.Name == naming.LimiterName {
					continue
				}
				for _, m := range c.VolumeMounts {
					if strings.HasPrefix(m.Name, "aiquota-") {
						t.Errorf("app container %s mounts %s", c.Name, m.Name)
					}
				}
			}
			s, err := injection.ReadSummary(&pod)
			if err != nil || s == nil {
				t.Fatalf("injected annotation: %v, %v", s, err)
			}
			if s.Version != injection.SummaryVersion || s.Image != testImage {
				t.Errorf("summary = %+v", s)
			}
		})
	}
}
