package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
	"github.com/aiquota/aiquota/test/harness"
)

// golden compares got with testdata/<name>.golden (rewriting it with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	testkit.Golden(t, filepath.Join("testdata", name+".golden"), []byte(got))
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
		{"watch-namespace-not-a-name", []string{"watchNamespaces={Team_A}"}},
		{"watch-namespaces-not-a-list", []string{"watchNamespaces=team-a"}},
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

// TestHelmServiceMonitorVerifiesTheManager: the ServiceMonitor verifies the
// manager's certificate with the CA of the certificate Secret under the metrics
// Service's name (which the certificate covers), and authenticates with a token
// Secret of a ServiceAccount bound to metrics-reader; nothing skips verification or
// uses the deprecated bearerTokenFile.
func TestHelmServiceMonitorVerifiesTheManager(t *testing.T) {
	root := testenv.Root()
	for _, tc := range []struct {
		name        string
		set         []string
		tokenSecret string // "" when the chart creates the scraper
	}{
		{"self-signed", nil, ""},
		{"cert-manager", []string{"certificates.mode=cert-manager"}, ""},
		{"own token", []string{"metrics.serviceMonitor.tokenSecret=prometheus-token"}, "prometheus-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := helmTemplate(t, root, append([]string{"metrics.serviceMonitor.enabled=true"}, tc.set...)...)
			sm := inst.one(t, "ServiceMonitor")
			endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
			if len(endpoints) != 1 {
				t.Fatalf("ServiceMonitor endpoints: %v", endpoints)
			}
			ep := endpoints[0].(map[string]any)
			for _, banned := range []string{"bearerTokenFile", "bearerTokenSecret"} {
				if _, ok := ep[banned]; ok {
					t.Errorf("the endpoint uses %s", banned)
				}
			}
			if v, _, _ := unstructured.NestedBool(ep, "tlsConfig", "insecureSkipVerify"); v {
				t.Error("the endpoint skips TLS verification")
			}
			str := func(fields ...string) string {
				v, _, _ := unstructured.NestedString(ep, fields...)
				return v
			}
			if got := str("scheme"); got != "https" {
				t.Errorf("scheme %q, want https", got)
			}

			// The CA is the certificate Secret's, and the name verified is one the
			// certificate covers: the metrics Service's, named to the manager.
			certSecret := ""
			for _, a := range deploymentArgs(t, inst) {
				if v, ok := strings.CutPrefix(a, "--cert-secret-name="); ok {
					certSecret = v
				}
			}
			if got := str("tlsConfig", "ca", "secret", "name"); got != certSecret || str("tlsConfig", "ca", "secret", "key") != "ca.crt" {
				t.Errorf("tlsConfig.ca.secret is %s/%s, want the certificate Secret %s/ca.crt", got, str("tlsConfig", "ca", "secret", "key"), certSecret)
			}
			metricsSvc := inst.oneNamed(t, "Service", "metrics")
			wantName := metricsSvc.GetName() + ".aiquota-system.svc"
			if got := str("tlsConfig", "serverName"); got != wantName {
				t.Errorf("tlsConfig.serverName %q, want %q", got, wantName)
			}
			if !slices.Contains(deploymentArgs(t, inst), "--cert-metrics-service="+metricsSvc.GetName()) {
				t.Errorf("the manager's certificate does not cover %s: args %v", metricsSvc.GetName(), deploymentArgs(t, inst))
			}
			if tc.name == "cert-manager" {
				names, _, _ := unstructured.NestedStringSlice(inst.one(t, "Certificate").Object, "spec", "dnsNames")
				if !slices.Contains(names, wantName) {
					t.Errorf("the Certificate's dnsNames %v lack %s", names, wantName)
				}
			}

			// The token: a Secret of a ServiceAccount that may read /metrics.
			if str("authorization", "type") != "Bearer" || str("authorization", "credentials", "key") != "token" {
				t.Errorf("authorization %v, want a Bearer token from key token", ep["authorization"])
			}
			tokenSecret := str("authorization", "credentials", "name")
			if tc.tokenSecret != "" {
				if tokenSecret != tc.tokenSecret {
					t.Errorf("credentials from %q, want the Secret set, %q", tokenSecret, tc.tokenSecret)
				}
				for _, u := range inst.objects {
					if u.GetKind() == "ServiceAccount" && strings.Contains(u.GetName(), "scraper") {
						t.Errorf("a token Secret was given, yet the chart creates ServiceAccount %s", u.GetName())
					}
				}
				return
			}
			sec := inst.oneNamed(t, "Secret", tokenSecret)
			sa := sec.GetAnnotations()["kubernetes.io/service-account.name"]
			if sec.Object["type"] != "kubernetes.io/service-account-token" || sa == "" {
				t.Fatalf("token Secret %s is not a ServiceAccount token: %v", tokenSecret, sec.Object)
			}
			inst.oneNamed(t, "ServiceAccount", sa)
			bound := false
			for _, u := range inst.objects {
				if u.GetKind() != "ClusterRoleBinding" {
					continue
				}
				role, _, _ := unstructured.NestedString(u.Object, "roleRef", "name")
				subjects, _, _ := unstructured.NestedSlice(u.Object, "subjects")
				for _, s := range subjects {
					if s.(map[string]any)["name"] == sa && strings.HasSuffix(role, "-metrics-reader") {
						bound = true
					}
				}
			}
			if !bound {
				t.Errorf("ServiceAccount %s is not bound to the metrics-reader ClusterRole", sa)
			}
		})
	}
}

func deploymentArgs(t *testing.T, inst installation) []string {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(inst.one(t, "Deployment").Object, "spec", "template", "spec", "containers")
	a, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	return a
}

// TestInstallationsAreLevel: config/default and the chart both ship a
// PodDisruptionBudget and a metrics Service for the manager, and spread its
// replicas over nodes, each selecting exactly the manager's pods.
func TestInstallationsAreLevel(t *testing.T) {
	root := testenv.Root()
	for name, inst := range map[string]installation{"config/default": kustomize(t, root), "helm": helmTemplate(t, root)} {
		t.Run(name, func(t *testing.T) {
			var dep appsv1.Deployment
			fromUnstructured(t, inst.one(t, "Deployment"), &dep)
			podLabels := labels.Set(dep.Spec.Template.Labels)
			selects := func(what string, sel *metav1.LabelSelector) {
				t.Helper()
				s, err := metav1.LabelSelectorAsSelector(sel)
				if err != nil || s.Empty() || !s.Matches(podLabels) {
					t.Errorf("%s selects %v, not the manager's pods %v (%v)", what, sel, podLabels, err)
				}
			}

			var pdb policyv1.PodDisruptionBudget
			fromUnstructured(t, inst.one(t, "PodDisruptionBudget"), &pdb)
			selects("the PodDisruptionBudget", pdb.Spec.Selector)
			if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
				t.Errorf("PodDisruptionBudget minAvailable %v, want 1", pdb.Spec.MinAvailable)
			}

			var svc corev1.Service
			fromUnstructured(t, inst.oneNamed(t, "Service", "metrics"), &svc)
			selects("the metrics Service", metav1.SetAsLabelSelector(svc.Spec.Selector))
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
				t.Errorf("metrics Service ports %v, want one to the container's metrics port", svc.Spec.Ports)
			}
			if !slices.ContainsFunc(dep.Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" }) {
				t.Error("the manager container has no port named metrics")
			}
			if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--cert-metrics-service="+svc.Name) {
				t.Errorf("the certificate does not cover metrics Service %s: args %v", svc.Name, dep.Spec.Template.Spec.Containers[0].Args)
			}

			keys := map[string]bool{}
			for _, c := range dep.Spec.Template.Spec.TopologySpreadConstraints {
				keys[c.TopologyKey] = true
				selects("topology spread on "+c.TopologyKey, c.LabelSelector)
				if c.WhenUnsatisfiable != corev1.ScheduleAnyway {
					t.Errorf("topology spread on %s is %s; a default must not leave replicas pending on a one-node cluster", c.TopologyKey, c.WhenUnsatisfiable)
				}
			}
			if !keys["kubernetes.io/hostname"] || !keys["topology.kubernetes.io/zone"] {
				t.Errorf("the manager spreads over %v, want nodes and zones", keys)
			}
		})
	}
}

// TestHelmNetworkPolicyAdmitsOnlySidecarsToTheControlPort evaluates the chart's
// and config/default's NetworkPolicy as an enforcing CNI would, for the manager's ports and a few
// sources: an injected sidecar (labelled as the webhook labels it), an ordinary
// pod, and Prometheus.
func TestHelmNetworkPolicyAdmitsOnlySidecarsToTheControlPort(t *testing.T) {
	root := testenv.Root()
	type source struct {
		name           string
		pod, namespace labels.Set
	}
	sidecar := source{name: "sidecar", pod: labels.Set{naming.LabelLimiter: naming.LimiterInjected}, namespace: labels.Set{"kubernetes.io/metadata.name": "shop"}}
	plain := source{name: "plain pod", pod: labels.Set{"app": "shop"}, namespace: labels.Set{"kubernetes.io/metadata.name": "shop"}}
	prometheus := source{name: "prometheus", pod: labels.Set{"app.kubernetes.io/name": "prometheus"}, namespace: labels.Set{"kubernetes.io/metadata.name": "monitoring"}}

	for _, tc := range []struct {
		name      string
		kustomize bool // config/default instead of the chart
		set       []string
		want      map[string]map[string]bool // port -> source -> admitted
	}{
		{"config/default", true, nil, map[string]map[string]bool{
			"control": {"sidecar": true, "plain pod": false, "prometheus": false},
			"webhook": {"sidecar": true, "plain pod": true, "prometheus": true},
			"probes":  {"sidecar": true, "plain pod": true, "prometheus": true},
			"metrics": {"sidecar": true, "plain pod": true, "prometheus": true},
		}},
		{"default", false, nil, map[string]map[string]bool{
			"control": {"sidecar": true, "plain pod": false, "prometheus": false},
			"webhook": {"sidecar": true, "plain pod": true, "prometheus": true},
			"probes":  {"sidecar": true, "plain pod": true, "prometheus": true},
			"metrics": {"sidecar": true, "plain pod": true, "prometheus": true},
		}},
		{"metrics from prometheus", false, []string{
			"networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
			"networkPolicy.metricsFrom[0].podSelector.matchLabels.app\\.kubernetes\\.io/name=prometheus",
		}, map[string]map[string]bool{
			"control": {"sidecar": true, "plain pod": false, "prometheus": false},
			"metrics": {"sidecar": false, "plain pod": false, "prometheus": true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var inst installation
			if tc.kustomize {
				inst = kustomize(t, root)
			} else {
				inst = helmTemplate(t, root, tc.set...)
			}
			var np networkingv1.NetworkPolicy
			fromUnstructured(t, inst.one(t, "NetworkPolicy"), &np)
			var dep appsv1.Deployment
			fromUnstructured(t, inst.one(t, "Deployment"), &dep)
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
				t.Fatalf("the NetworkPolicy selects %v, not the manager's pods (%v)", np.Spec.PodSelector, err)
			}
			if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
				t.Errorf("policyTypes %v; the manager's egress (API server, TokenReviews) must stay open", np.Spec.PolicyTypes)
			}
			// Every port the manager listens on is named by a rule, or an enforcing
			// CNI would cut it off.
			for _, p := range dep.Spec.Template.Spec.Containers[0].Ports {
				if _, ok := ruleFor(np, p.Name); !ok {
					t.Errorf("no ingress rule names the manager's port %s", p.Name)
				}
			}
			for port, bySource := range tc.want {
				for _, src := range []source{sidecar, plain, prometheus} {
					want, ok := bySource[src.name]
					if !ok {
						continue
					}
					if got := admits(t, np, port, src.pod, src.namespace); got != want {
						t.Errorf("port %s from %s: admitted %t, want %t", port, src.name, got, want)
					}
				}
			}
		})
	}
	off := helmTemplate(t, root, "networkPolicy.enabled=false")
	for _, u := range off.objects {
		if u.GetKind() == "NetworkPolicy" {
			t.Error("networkPolicy.enabled=false still renders a NetworkPolicy")
		}
	}
}

// ruleFor returns the ingress rules that name port.
func ruleFor(np networkingv1.NetworkPolicy, port string) ([]networkingv1.NetworkPolicyIngressRule, bool) {
	var rules []networkingv1.NetworkPolicyIngressRule
	for _, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			if p.Port != nil && p.Port.String() == port {
				rules = append(rules, r)
			}
		}
	}
	return rules, len(rules) > 0
}

// admits: does any rule naming port let a pod with these labels, in a namespace
// with these labels, in? (An empty from admits every source.)
func admits(t *testing.T, np networkingv1.NetworkPolicy, port string, pod, ns labels.Set) bool {
	t.Helper()
	rules, _ := ruleFor(np, port)
	for _, r := range rules {
		if len(r.From) == 0 {
			return true
		}
		for _, peer := range r.From {
			if peer.IPBlock != nil {
				continue
			}
			match := func(s *metav1.LabelSelector, l labels.Set) bool {
				sel, err := metav1.LabelSelectorAsSelector(s)
				if err != nil {
					t.Fatal(err)
				}
				return sel.Matches(l)
			}
			// A peer without namespaceSelector means the policy's own namespace.
			nsOK := peer.NamespaceSelector != nil && match(peer.NamespaceSelector, ns) ||
				peer.NamespaceSelector == nil && ns["kubernetes.io/metadata.name"] == np.Namespace
			podOK := peer.PodSelector == nil || match(peer.PodSelector, pod)
			if nsOK && podOK {
				return true
			}
		}
	}
	return false
}

// TestHelmChartTemplatesTheCRDs: the chart's CRDs are templates (so helm upgrade
// upgrades them) equal to config/crd/bases apart from the chart's labels, kept on
// uninstall under crds.keep, and left out with crds.enabled=false.
func TestHelmChartTemplatesTheCRDs(t *testing.T) {
	root := testenv.Root()
	if _, err := os.Stat(filepath.Join(root, "charts", "aiquota", "crds")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the chart has a crds/ directory (%v); Helm would install those CRDs and never upgrade them", err)
	}
	want := map[string]*unstructured.Unstructured{}
	files, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("config/crd/bases: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range decodeObjects(t, data).objects {
			want[u.GetName()] = u
		}
	}
	crds := func(inst installation) map[string]*unstructured.Unstructured {
		m := map[string]*unstructured.Unstructured{}
		for _, u := range inst.objects {
			if u.GetKind() == "CustomResourceDefinition" {
				m[u.GetName()] = u
			}
		}
		return m
	}

	def := crds(helmTemplate(t, root))
	if len(def) != len(want) {
		t.Fatalf("the chart renders %d CRDs, config/crd/bases has %d", len(def), len(want))
	}
	for name, w := range want {
		got, ok := def[name]
		if !ok {
			t.Errorf("the chart lacks CRD %s", name)
			continue
		}
		if got.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s is not kept on uninstall by default: annotations %v", name, got.GetAnnotations())
		}
		if got.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("CRD %s lacks the chart's labels: %v", name, got.GetLabels())
		}
		got = got.DeepCopy()
		got.SetLabels(nil)
		a := got.GetAnnotations()
		delete(a, "helm.sh/resource-policy")
		got.SetAnnotations(a)
		if diff := cmp.Diff(w.Object, got.Object); diff != "" {
			t.Errorf("CRD %s differs from config/crd/bases (-config +chart):\n%s", name, diff)
		}
	}
	for name, u := range crds(helmTemplate(t, root, "crds.keep=false")) {
		if _, ok := u.GetAnnotations()["helm.sh/resource-policy"]; ok {
			t.Errorf("crds.keep=false: CRD %s still has a resource policy", name)
		}
	}
	if n := len(crds(helmTemplate(t, root, "crds.enabled=false"))); n != 0 {
		t.Errorf("crds.enabled=false renders %d CRDs", n)
	}
}

// TestHelmUpgradeUpgradesTheCRDs installs the chart on a real API server with no
// CRDs, then upgrades it to a copy whose CircuitPolicy CRD has a new field (made
// the way `make manifests` makes the chart's CRDs, by hack/chartsync), and checks
// that the API server keeps the field only after the upgrade; uninstalling leaves
// the CRDs.
func TestHelmUpgradeUpgradesTheCRDs(t *testing.T) {
	root := testenv.Root()
	env, kc := startAPIServerAt(t, t.TempDir(), withoutCRDs)
	chart := filepath.Join(root, "charts", "aiquota")
	if out, err := helmRun(t, root, "install", "aiquota", chart, "--kubeconfig", kc, "--namespace", "aiquota-system", "--create-namespace"); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}

	// The next chart version: the same chart, its CircuitPolicy CRD with a new
	// spec field, regenerated by chartsync from a changed config/crd/bases.
	next := t.TempDir()
	if err := os.CopyFS(filepath.Join(next, "charts", "aiquota"), os.DirFS(chart)); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"config/crd/bases", "config/rbac"} {
		if err := os.CopyFS(filepath.Join(next, dir), os.DirFS(filepath.Join(root, dir))); err != nil {
			t.Fatal(err)
		}
	}
	crdFile := filepath.Join(next, "config", "crd", "bases", "quota.aiquota.dev_circuitpolicies.yaml")
	data, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	spec.Properties["upgradeProbe"] = apiextensionsv1.JSONSchemaProps{Type: "string", Description: "Added by the upgrade test."}
	crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"] = spec
	if data, err = yaml.Marshal(&crd); err != nil {
		t.Fatal(err)
	}
	// chartsync wants controller-gen's metadata block first, as it writes it.
	data = append([]byte("---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  annotations:\n    controller-gen.kubebuilder.io/version: test\n  name: "+crd.Name+"\n"),
		stripHead(t, data)...)
	if err := os.WriteFile(crdFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	bins, err := harness.Build(t.Context(), root, t.TempDir(), "./hack/chartsync")
	if err != nil {
		t.Fatal(err)
	}
	sync := exec.CommandContext(t.Context(), bins["chartsync"], "-out", filepath.Join(next, "charts", "aiquota"))
	sync.Dir = next
	if out, err := sync.CombinedOutput(); err != nil {
		t.Fatalf("chartsync: %v\n%s", err, out)
	}

	// Before the upgrade the API server prunes the unknown field; after it, keeps it.
	probe := func(name string) (string, bool) {
		t.Helper()
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "quota.aiquota.dev/v1alpha1", "kind": "CircuitPolicy",
			"metadata": map[string]any{"name": name, "namespace": "default"},
			"spec":     map[string]any{"upgradeProbe": "kept"},
		}}
		// The client's CRD discovery must not be stale: ask the API server directly.
		c, err := client.New(env.Config, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var got *unstructured.Unstructured
		testkit.Eventually(t, time.Minute, "a CircuitPolicy to be created", func() error {
			if err := c.Create(t.Context(), u.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			got = &unstructured.Unstructured{}
			got.SetGroupVersionKind(u.GroupVersionKind())
			return c.Get(t.Context(), client.ObjectKeyFromObject(u), got)
		})
		v, ok, _ := unstructured.NestedString(got.Object, "spec", "upgradeProbe")
		return v, ok
	}
	if v, ok := probe("before"); ok {
		t.Fatalf("before the upgrade the API server kept spec.upgradeProbe=%q; the test cannot tell an upgrade", v)
	}
	if out, err := helmRun(t, root, "upgrade", "aiquota", filepath.Join(next, "charts", "aiquota"), "--kubeconfig", kc, "--namespace", "aiquota-system"); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	axScheme := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(axScheme); err != nil {
		t.Fatal(err)
	}
	ax, err := client.New(env.Config, client.Options{Scheme: axScheme})
	if err != nil {
		t.Fatal(err)
	}
	var served apiextensionsv1.CustomResourceDefinition
	if err := ax.Get(t.Context(), client.ObjectKey{Name: crd.Name}, &served); err != nil {
		t.Fatal(err)
	}
	if _, ok := served.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["upgradeProbe"]; !ok {
		t.Fatal("after helm upgrade the CRD has no spec.upgradeProbe")
	}
	testkit.Eventually(t, time.Minute, "the upgraded CRD's new field to be served", func() error {
		name := fmt.Sprintf("after-%d", time.Now().UnixNano())
		if v, ok := probe(name); !ok || v != "kept" {
			return fmt.Errorf("spec.upgradeProbe = %q, %t", v, ok)
		}
		return nil
	})

	if out, err := helmRun(t, root, "uninstall", "aiquota", "--kubeconfig", kc, "--namespace", "aiquota-system"); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	var list apiextensionsv1.CustomResourceDefinitionList
	if err := ax.List(t.Context(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 3 {
		t.Errorf("after helm uninstall %d CRDs are left, want the 3 kept", len(list.Items))
	}
}

// stripHead drops the apiVersion, kind and metadata that sigs.k8s.io/yaml wrote.
func stripHead(t *testing.T, data []byte) []byte {
	t.Helper()
	var out []string
	skip := false
	for _, line := range strings.SplitAfter(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "apiVersion:"), strings.HasPrefix(line, "kind:"):
			continue
		case strings.HasPrefix(line, "metadata:"):
			skip = true
			continue
		case skip && strings.HasPrefix(line, " "):
			continue
		}
		skip = false
		out = append(out, line)
	}
	return []byte(strings.Join(out, ""))
}
