package injection

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/aiquota/aiquota/internal/naming"
)

func TestReadSummary(t *testing.T) {
	for _, tc := range []struct {
		name       string
		annotation *string
		want       *Summary
		wantErr    string
	}{
		{name: "not injected"},
		{
			name:       "version 1",
			annotation: ptr(`{"version":1,"mode":"native-sidecar","image":"l:1","fallbackChain":"c","configMap":"aiquota-fc-c","port":8787,"adminPort":8788,"secrets":["s"],"env":["OPENAI_BASE_URL"]}`),
			want: &Summary{Version: 1, Mode: ModeNativeSidecar, Image: "l:1", FallbackChain: "c", ConfigMap: "aiquota-fc-c",
				Port: 8787, AdminPort: 8788, Secrets: []string{"s"}, Env: []string{"OPENAI_BASE_URL"}},
		},
		{name: "a later version is not guessed at", annotation: ptr(`{"version":2}`), wantErr: "version 2"},
		{name: "not JSON", annotation: ptr(`injected`), wantErr: "decode annotation aiquota.dev/injected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{}
			if tc.annotation != nil {
				pod.Annotations = map[string]string{naming.AnnotationInjected: *tc.annotation}
			}
			got, err := ReadSummary(pod)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("summary (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLimiterContainer(t *testing.T) {
	limiter := corev1.Container{Name: naming.LimiterName}
	app := corev1.Container{Name: "app"}
	for _, tc := range []struct {
		name     string
		spec     corev1.PodSpec
		found    bool
		wantInit bool
	}{
		{name: "none", spec: corev1.PodSpec{Containers: []corev1.Container{app}}},
		{name: "native sidecar", spec: corev1.PodSpec{InitContainers: []corev1.Container{limiter}, Containers: []corev1.Container{app}}, found: true, wantInit: true},
		{name: "plain container", spec: corev1.PodSpec{Containers: []corev1.Container{limiter, app}}, found: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: tc.spec}
			c, init := LimiterContainer(pod)
			if (c != nil) != tc.found || init != tc.wantInit {
				t.Fatalf("LimiterContainer = %v, %v; want found %v, init %v", c, init, tc.found, tc.wantInit)
			}
			if c != nil && c.Name != naming.LimiterName {
				t.Errorf("found container %q", c.Name)
			}
		})
	}
}

func ptr(s string) *string { return &s }
