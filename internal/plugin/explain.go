package plugin

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/injection"
	"github.com/aiquota/aiquota/internal/naming"
)

func newExplainPodCommand(g *globals, s Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "explain-pod (POD | pod/POD) [-n NAMESPACE]",
		Short: "Show what the aiquota webhook injected into a pod, and which config and keys it uses",
		Long: `Reads the pod and shows what the webhook did to it: the limiter container and how
it runs, the ConfigMap its limiter config comes from, the credential keys mounted
into it (and which ProviderQuota each belongs to), the base-URL variables set on
the app containers, and the annotations and label the webhook added. For a pod that
asked for the limiter but has none, it says so and why that happens.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := g.connect()
			if err != nil {
				return err
			}
			// kubectl's own spelling of a pod, pod/NAME, works too.
			name := args[0]
			for _, prefix := range []string{"pod/", "pods/", "po/"} {
				name = strings.TrimPrefix(name, prefix)
			}
			out, err := explainPod(cmd.Context(), c, ns, name)
			if err != nil {
				return err
			}
			_, err = s.Out.Write(out)
			return err
		},
	}
}

// explainPod renders what the webhook did to one pod. Only the pod must be
// readable: the chain, quotas and ConfigMap add detail when they can be read.
func explainPod(ctx context.Context, c client.Reader, ns, name string) ([]byte, error) {
	var pod corev1.Pod
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pod); err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", ns, name, err)
	}
	var b bytes.Buffer
	rows := [][]string{{"Pod:", pod.Namespace + "/" + pod.Name}}
	limiter, native := injection.LimiterContainer(&pod)
	sum, sumErr := injection.ReadSummary(&pod)
	asked := pod.Annotations[naming.AnnotationInject] == "true"
	switch {
	case limiter == nil && !asked:
		rows = append(rows, []string{"Injected:", fmt.Sprintf("no: the pod does not ask for the limiter (annotation %s: \"true\")", naming.AnnotationInject)})
		return writeDescribe(&b, rows, nil)
	case limiter == nil:
		rows = append(rows, []string{"Injected:", "no: the pod asks for the limiter but has none. The webhook did not inject it: the pod predates the webhook, " +
			"its namespace is excluded (kube-system, the manager's, or labelled " + naming.LabelInjection + "=" + naming.InjectionDisabled + "), " +
			"or the manager runs with --webhook-missing-reference=admit and a reference was missing (see the workload's " +
			"SidecarInjectionSkipped events)"})
		return writeDescribe(&b, rows, nil)
	}
	how := "as a plain container (postStart waits for it to be ready)"
	if native {
		how = "as a native sidecar (init container with restartPolicy Always)"
	}
	rows = append(rows, []string{"Injected:", "yes, " + how + ", container " + naming.LimiterName})
	switch {
	case sumErr != nil:
		rows = append(rows, []string{"Summary:", "unreadable: " + sumErr.Error()})
	case sum == nil:
		rows = append(rows, []string{"Summary:", "missing: annotation " + naming.AnnotationInjected + " was removed"})
	}
	var quotas []string
	switch chain, quota := pod.Annotations[naming.AnnotationFallbackChain], pod.Annotations[naming.AnnotationProviderQuota]; {
	case quota != "":
		rows = append(rows, []string{"Uses:", "ProviderQuota " + quota + " (" + readiness(ctx, c, &quotav1alpha1.ProviderQuota{}, ns, quota) + ")"})
		quotas = []string{quota}
	case chain != "":
		var fc quotav1alpha1.FallbackChain
		rows = append(rows, []string{"Uses:", "FallbackChain " + chain + " (" + readiness(ctx, c, &fc, ns, chain) + ")"})
		for i, e := range fc.Spec.Entries {
			rows = append(rows, []string{"  entry " + strconv.Itoa(i) + ":", e.ProviderQuotaRef.Name + "/" + e.Model})
			if !slices.Contains(quotas, e.ProviderQuotaRef.Name) {
				quotas = append(quotas, e.ProviderQuotaRef.Name)
			}
		}
	}
	rows = append(rows,
		[]string{"Image:", limiter.Image},
		[]string{"Proxy:", flagValue(limiter.Args, "--listen") + " (the app's base URLs point here)"},
		[]string{"Admin:", flagValue(limiter.Args, "--admin-listen") + " (/healthz, /readyz, /metrics)"},
	)
	if p := flagValue(limiter.Args, "--default-priority"); p != "-" {
		rows = append(rows, []string{"Priority:", p})
	}
	rows = append(rows, []string{"Resources:", resources(limiter.Resources)})

	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	if v, ok := vols[naming.ConfigVolume]; ok && v.ConfigMap != nil {
		rows = append(rows, []string{"Config:", "ConfigMap " + v.ConfigMap.Name + ", " + naming.ConfigPath() + " (" + configHash(ctx, c, ns, v.ConfigMap.Name) + ")"})
	}
	if v, ok := vols[naming.TokenVolume]; ok && v.Projected != nil && len(v.Projected.Sources) > 0 && v.Projected.Sources[0].ServiceAccountToken != nil {
		t := v.Projected.Sources[0].ServiceAccountToken
		expiry := ""
		if t.ExpirationSeconds != nil {
			expiry = ", rotated within " + strconv.FormatInt(*t.ExpirationSeconds, 10) + "s"
		}
		rows = append(rows, []string{"Control token:", naming.TokenPath() + " (service account " + pod.Spec.ServiceAccountName + ", audience " + t.Audience + expiry + ")"})
	}

	keys := keysOf(ctx, c, ns, quotas)
	keyRows := [][]string{{"  KEY ID", "FILE", "QUOTAS"}}
	for _, m := range limiter.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok || v.Secret == nil || m.Name != naming.KeyVolume(v.Secret.SecretName) {
			continue
		}
		for _, item := range v.Secret.Items {
			id := naming.KeyID(v.Secret.SecretName, item.Key)
			keyRows = append(keyRows, []string{"  " + id, naming.KeyFile(v.Secret.SecretName, item.Path), orDash(strings.Join(keys[id], ","))})
		}
	}

	envRows := appEnvRows(&pod, sum)

	var ours [][]string
	for _, k := range sortedKeys(pod.Annotations) {
		if strings.HasPrefix(k, "aiquota.dev/") && k != naming.AnnotationInjected {
			ours = append(ours, []string{"  " + k + ":", pod.Annotations[k]})
		}
	}
	added := [][]string{{"  annotation " + naming.AnnotationInjected, "(records the injection as JSON)"}}
	if pod.Labels[naming.LabelLimiter] != "" {
		added = append(added, []string{"  label " + naming.LabelLimiter + "=" + pod.Labels[naming.LabelLimiter]})
	}

	sections := []section{{"Keys:", keyRows}, {"App environment (set by the webhook):", envRows}, {"Pod annotations:", ours}, {"Added by the webhook:", added}}
	return writeDescribe(&b, rows, sections)
}

// appEnvRows lists the base-URL variables the webhook set on each app container
// and the ones it kept because the pod set them already.
func appEnvRows(pod *corev1.Pod, sum *injection.Summary) [][]string {
	if sum == nil {
		return nil
	}
	var envRows [][]string
	for _, ct := range pod.Spec.Containers {
		if ct.Name == naming.LimiterName {
			continue
		}
		var set []string
		for _, e := range ct.Env {
			if slices.Contains(sum.Env, e.Name) && !slices.Contains(sum.EnvKept, ct.Name+"/"+e.Name) {
				set = append(set, e.Name+"="+e.Value)
			}
		}
		if len(set) > 0 {
			envRows = append(envRows, []string{"  " + ct.Name + ":", strings.Join(set, " ")})
		}
	}
	if len(sum.EnvKept) > 0 {
		envRows = append(envRows, []string{"  kept:", strings.Join(sum.EnvKept, " ") + " (the pod's own values; " + naming.AnnotationOverrideEnv + ": \"true\" replaces them)"})
	}
	return envRows
}

type section struct {
	title string
	rows  [][]string
}

func writeDescribe(b *bytes.Buffer, rows [][]string, sections []section) ([]byte, error) {
	if err := writeTable(b, rows); err != nil {
		return nil, err
	}
	for _, s := range sections {
		if len(s.rows) == 0 {
			continue
		}
		b.WriteString(s.title + "\n")
		if err := writeTable(b, s.rows); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// readiness reads obj and says whether it is Ready; it fills obj for the caller.
func readiness(ctx context.Context, c client.Reader, obj client.Object, ns, name string) string {
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return "not found"
	case err != nil:
		return "unreadable: " + err.Error()
	}
	var conds []metav1.Condition
	switch o := obj.(type) {
	case *quotav1alpha1.ProviderQuota:
		conds = o.Status.Conditions
	case *quotav1alpha1.FallbackChain:
		conds = o.Status.Conditions
	}
	ready := meta.FindStatusCondition(conds, quotav1alpha1.ConditionReady)
	if ready == nil {
		return "Ready unknown: not reconciled yet"
	}
	s := "Ready=" + string(ready.Status)
	if ready.Status != "True" {
		s += ", " + ready.Reason + ": " + ready.Message
	}
	return s
}

func configHash(ctx context.Context, c client.Reader, ns, name string) string {
	var cm corev1.ConfigMap
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		return "not found: the limiter waits for it"
	case err != nil:
		return "unreadable: " + err.Error()
	}
	if h := cm.Annotations[naming.AnnotationConfigHash]; h != "" {
		return "config-hash " + h
	}
	return "no config-hash"
}

// keysOf maps each key ID to the quotas among names that list it.
func keysOf(ctx context.Context, c client.Reader, ns string, names []string) map[string][]string {
	out := map[string][]string{}
	for _, n := range names {
		var pq quotav1alpha1.ProviderQuota
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, &pq); err != nil {
			continue
		}
		for _, cr := range pq.Spec.Credentials {
			id := naming.KeyID(cr.Name, cr.Key)
			if !slices.Contains(out[id], n) {
				out[id] = append(out[id], n)
			}
		}
	}
	return out
}

// flagValue is the value after flag in args, "-" when absent.
func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return "-"
}

func resources(r corev1.ResourceRequirements) string {
	list := func(l corev1.ResourceList) string {
		var parts []string
		for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := l[n]; ok {
				parts = append(parts, string(n)+"="+q.String())
			}
		}
		return orDash(strings.Join(parts, ","))
	}
	return "requests " + list(r.Requests) + ", limits " + list(r.Limits)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
