package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/aiquota/aiquota/internal/testenv"
)

// TestHelmGrafanaDashboard: the dashboard ConfigMap renders only when asked for,
// carries the sidecar's label, annotations and namespace from the values, and holds
// the repository's dashboard JSON byte for byte. Its queries are checked against the
// exported metrics by internal/sidecar's TestDashboardQueriesNameExportedMetrics.
func TestHelmGrafanaDashboard(t *testing.T) {
	root := testenv.Root()
	for _, u := range helmTemplate(t, root).objects {
		if u.GetKind() == "ConfigMap" && strings.HasSuffix(u.GetName(), "-dashboard") {
			t.Errorf("the default render has the dashboard ConfigMap %s; it is off by default", u.GetName())
		}
	}
	want, err := os.ReadFile(filepath.Join(root, "charts", "aiquota", "dashboards", "aiquota.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		set       []string
		namespace string
		labels    map[string]string
		ann       map[string]string
	}{
		{name: "defaults", namespace: "aiquota-system", labels: map[string]string{"grafana_dashboard": "1"}},
		{name: "own label, folder and namespace",
			set:       []string{"metrics.grafanaDashboard.labels.grafana_dashboard=null", "metrics.grafanaDashboard.labels.dashboards=aiquota", "metrics.grafanaDashboard.annotations.grafana_folder=AI quota", "metrics.grafanaDashboard.namespace=monitoring"},
			namespace: "monitoring", labels: map[string]string{"dashboards": "aiquota"}, ann: map[string]string{"grafana_folder": "AI quota"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cm := helmTemplate(t, root, append([]string{"metrics.grafanaDashboard.enabled=true"}, tc.set...)...).oneNamed(t, "ConfigMap", "-dashboard")
			if cm.GetNamespace() != tc.namespace {
				t.Errorf("namespace %q, want %q", cm.GetNamespace(), tc.namespace)
			}
			got := map[string]string{}
			for k, v := range cm.GetLabels() {
				if !strings.Contains(k, "kubernetes.io/") && !strings.HasPrefix(k, "helm.sh/") {
					got[k] = v
				}
			}
			if diff := cmp.Diff(tc.labels, got); diff != "" {
				t.Errorf("labels besides the chart's (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.ann, cm.GetAnnotations()); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			data, _, _ := unstructured.NestedString(cm.Object, "data", "aiquota.json")
			if data != strings.TrimSuffix(string(want), "\n") {
				t.Error("the ConfigMap's aiquota.json is not the repository's dashboard")
			}
		})
	}
	if _, err := helmRun(t, root, "template", "x", filepath.Join(root, "charts", "aiquota"), "--kube-version", "1.37.0",
		"--set", "metrics.grafanaDashboard.enable=true"); err == nil || !strings.Contains(err.Error(), "enable") {
		t.Errorf("a typo in the dashboard's values: want an error naming it, got %v", err)
	}
}

// TestHelmServiceMonitorHonoursTheResourcesNamespace: the manager's series name the
// namespace of the resource they describe, which the alerts and the dashboard group
// by; Prometheus keeps it only with honorLabels.
func TestHelmServiceMonitorHonoursTheResourcesNamespace(t *testing.T) {
	sm := helmTemplate(t, testenv.Root(), "metrics.serviceMonitor.enabled=true").one(t, "ServiceMonitor")
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	for _, ep := range endpoints {
		if v, _, _ := unstructured.NestedBool(ep.(map[string]any), "honorLabels"); !v {
			t.Errorf("endpoint %v does not honour the series' labels", ep)
		}
	}
}
