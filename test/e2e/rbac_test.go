package e2e

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/aiquota/aiquota/internal/testenv"
)

// grant is one permission a rule expands to: scope ("cluster"; "namespace" for
// the manager's own namespace; "namespace <name>" for a watched namespace of a
// namespace-scoped install), API group, resource, verb and resource name ("*" for
// any).
type grant struct{ scope, group, resource, verb, name string }

// allowedGrants lists every permission the manager may have, each for something
// the code does (see the +kubebuilder:rbac markers beside it, and config/rbac,
// config/webhook for the namespaced ones). With watched namespaces, the rules on
// namespaced resources are granted in each of them instead of cluster-wide.
func allowedGrants(watched ...string) []grant {
	var g []grant
	add := func(scope, group string, resources, verbs []string, name string) {
		for _, r := range resources {
			for _, v := range verbs {
				g = append(g, grant{scope, group, r, v, name})
			}
		}
	}
	watchedScopes := []string{"cluster"}
	if len(watched) > 0 {
		watchedScopes = nil
		for _, ns := range watched {
			watchedScopes = append(watchedScopes, "namespace "+ns)
		}
	}
	for _, scope := range watchedScopes {
		// Rendered ConfigMaps: created, merge-patched, cached by label (list, watch).
		add(scope, "", []string{"configmaps"}, []string{"create", "get", "list", "patch", "watch"}, "*")
		// A credential check reads a Secret's metadata by name; the hub looks up the
		// reporting pod; the webhook resolves a pod's ReplicaSet for events.
		add(scope, "", []string{"pods", "secrets"}, []string{"get"}, "*")
		add(scope, "apps", []string{"replicasets"}, []string{"get"}, "*")
		add(scope, "events.k8s.io", []string{"events"}, []string{"create", "patch"}, "*")
		add(scope, "quota.aiquota.dev", []string{"circuitpolicies", "fallbackchains", "providerquotas"}, []string{"get", "list", "watch"}, "*")
		add(scope, "quota.aiquota.dev", []string{"circuitpolicies/status", "fallbackchains/status", "providerquotas/status"}, []string{"get", "patch"}, "*")
		// Owner references with blockOwnerDeletion on rendered ConfigMaps.
		add(scope, "quota.aiquota.dev", []string{"fallbackchains/finalizers", "providerquotas/finalizers"}, []string{"update"}, "*")
	}
	// The certificate rotator's cache lists and watches webhook configurations;
	// it writes the caBundle of its own only.
	add("cluster", "admissionregistration.k8s.io", []string{"mutatingwebhookconfigurations"}, []string{"list", "watch"}, "*")
	add("cluster", "admissionregistration.k8s.io", []string{"mutatingwebhookconfigurations"}, []string{"get", "update"}, "aiquota-pod-injector")
	// Sidecars' tokens (control channel) and scrapers' (metrics) are reviewed.
	add("cluster", "authentication.k8s.io", []string{"tokenreviews"}, []string{"create"}, "*")
	add("cluster", "authorization.k8s.io", []string{"subjectaccessreviews"}, []string{"create"}, "*")

	// In the manager's namespace: the leader's pod label, leader election, and the
	// certificate Secret (the rotator caches the namespace's Secrets).
	add("namespace", "", []string{"pods"}, []string{"list", "patch"}, "*")
	add("namespace", "coordination.k8s.io", []string{"leases"}, []string{"create"}, "*")
	add("namespace", "coordination.k8s.io", []string{"leases"}, []string{"get", "update"}, "aiquota-manager.quota.aiquota.dev")
	add("namespace", "coordination.k8s.io", []string{"leases"}, []string{"get", "update"}, "aiquota-account-leases.quota.aiquota.dev")
	add("namespace", "", []string{"events"}, []string{"create", "patch"}, "*")
	add("namespace", "", []string{"secrets"}, []string{"create", "get", "list", "update", "watch"}, "*")
	return g
}

// TestRBACAllowList renders config/default and the chart and expands every rule
// that reaches the manager's ServiceAccount (through ClusterRoleBindings and
// RoleBindings) into single permissions: each installation must grant exactly the
// allow-list, no more (a wider rule fails) and no less (a rule the code needs).
// The chart's namespace-scoped install (watchNamespaces) keeps only the rules on
// cluster-scoped resources cluster-wide.
func TestRBACAllowList(t *testing.T) {
	root := testenv.Root()
	cases := []struct {
		name    string
		inst    installation
		watched []string
	}{
		{"config/default", kustomize(t, root), nil},
		{"helm", helmTemplate(t, root), nil},
		{"helm watchNamespaces", helmTemplate(t, root, "watchNamespaces={team-a,team-b}"), []string{"team-a", "team-b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := sortedGrants(allowedGrants(c.watched...))
			got := sortedGrants(managerGrants(t, c.inst))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("the manager's permissions differ from the allow-list (-allowed +granted):\n%s", diff)
			}
		})
	}
}

// managerGrants expands the rules bound to the manager's ServiceAccount.
func managerGrants(t *testing.T, inst installation) []grant {
	t.Helper()
	var dep appsv1.Deployment
	fromUnstructured(t, inst.one(t, "Deployment"), &dep)
	sa, ns := dep.Spec.Template.Spec.ServiceAccountName, dep.Namespace
	isManager := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == ns
		})
	}
	rulesOf := func(kind, name, namespace string) []rbacv1.PolicyRule {
		for _, u := range inst.objects {
			if u.GetKind() == kind && u.GetName() == name && (kind == "ClusterRole" || u.GetNamespace() == namespace) {
				var r rbacv1.ClusterRole // Role and ClusterRole share the rules' shape
				fromUnstructured(t, u, &r)
				return r.Rules
			}
		}
		t.Fatalf("a binding names %s %s, which the installation does not have", kind, name)
		return nil
	}
	var grants []grant
	expand := func(scope string, rules []rbacv1.PolicyRule) {
		for _, r := range rules {
			if len(r.NonResourceURLs) > 0 {
				t.Errorf("the manager is granted non-resource URLs %v", r.NonResourceURLs)
			}
			names := r.ResourceNames
			if len(names) == 0 {
				names = []string{"*"}
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						for _, n := range names {
							grants = append(grants, grant{scope, g, res, v, n})
						}
					}
				}
			}
		}
	}
	for _, u := range inst.objects {
		switch u.GetKind() {
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			fromUnstructured(t, u, &b)
			if isManager(b.Subjects) {
				expand("cluster", rulesOf(b.RoleRef.Kind, b.RoleRef.Name, ""))
			}
		case "RoleBinding":
			var b rbacv1.RoleBinding
			fromUnstructured(t, u, &b)
			if isManager(b.Subjects) {
				scope := "namespace"
				if b.Namespace != ns {
					scope += " " + b.Namespace
				}
				expand(scope, rulesOf(b.RoleRef.Kind, b.RoleRef.Name, b.Namespace))
			}
		}
	}
	return grants
}

func sortedGrants(g []grant) []string {
	var out []string
	for _, x := range g {
		s := fmt.Sprintf("%s %s/%s %s %s", x.scope, x.group, x.resource, x.verb, x.name)
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}
