package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/testenv"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/<name>.golden (rewriting it with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got):\n%s", path, diff)
	}
}

// TestHelmChartRefusesBadValues: values.schema.json refuses a value of the wrong
// type, outside its enum or range, or under a misspelt key, and helm's message
// names the value. Each case's error text is a golden file.
func TestHelmChartRefusesBadValues(t *testing.T) {
	root := testenv.Root()
	chart := filepath.Join(root, "charts", "aiquota")
	for _, tc := range []struct {
		name string
		set  []string
	}{
		{"replica-count-not-integer", []string{"replicaCount=two"}},
		{"replica-count-zero", []string{"replicaCount=0"}},
		{"failure-policy-unknown", []string{"webhook.failurePolicy=Sometimes"}},
		{"limiter-native-sidecar-typo", []string{"limiter.nativeSidcar=true"}},
		{"top-level-typo", []string{"replicas=3"}},
		{"certificate-mode-unknown", []string{"certificates.mode=vault"}},
		{"missing-reference-unknown", []string{"webhook.missingReference=warn"}},
		{"webhook-timeout-too-long", []string{"webhook.timeoutSeconds=60"}},
		{"token-expiration-not-duration", []string{"limiter.tokenExpiration=ten minutes"}},
		{"limiter-memory-not-quantity", []string{"limiter.resources.memoryLimit=lots"}},
		{"leader-election-not-boolean", []string{"leaderElection=yes"}},
		{"metrics-port-out-of-range", []string{"metrics.port=70000"}},
		{"utilisation-threshold-above-one", []string{"metrics.prometheusRule.utilisation.warning=70"}},
		{"image-pull-policy-unknown", []string{"image.pullPolicy=Sometimes"}},
		{"pdb-min-available-typo", []string{"podDisruptionBudget.minAvailabel=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "aiquota", chart, "--namespace", "aiquota-system", "--kube-version", "1.37.0"}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			_, err := helmRun(t, root, args...)
			if err == nil {
				t.Fatalf("helm template --set %v rendered; want it refused", tc.set)
			}
			// helmRun prefixes the exit status; the golden file holds helm's own words.
			msg := err.Error()
			if i := strings.Index(msg, "Error: "); i >= 0 {
				msg = msg[i:]
			}
			golden(t, filepath.Join("chart-values", tc.name), msg+"\n")
		})
	}
}

// TestHelmValuesSchemaIsClosed: every object of values.schema.json that lists its
// properties refuses others, so no level lets a typo through. Only the objects that
// pass a Kubernetes type through unchanged (securityContext, affinity, ...) list no
// properties.
func TestHelmValuesSchemaIsClosed(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.Root(), "charts", "aiquota", "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	var walk func(path string, node any)
	walk = func(path string, node any) {
		switch n := node.(type) {
		case map[string]any:
			if _, ok := n["properties"]; ok {
				if ap, ok := n["additionalProperties"]; !ok || ap != false {
					t.Errorf("%s lists properties but does not set additionalProperties: false", path)
				}
			}
			for k, v := range n {
				walk(path+"/"+k, v)
			}
		case []any:
			for i, v := range n {
				walk(fmt.Sprintf("%s/%d", path, i), v)
			}
		}
	}
	walk("", schema)
}
