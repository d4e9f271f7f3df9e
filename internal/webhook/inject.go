package webhook

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/injection"
	"github.com/aiquota/aiquota/internal/naming"
)

// baseURLVar is an environment variable an SDK reads its base URL from.
type baseURLVar struct {
	name string
	// path is appended to http://127.0.0.1:<port>: the OpenAI SDKs expect the /v1
	// prefix in the base URL, the Anthropic and Google ones add it themselves.
	path      string
	providers []quotav1alpha1.ProviderType
}

// baseURLVars are the variables the official SDKs read, set only for the provider
// families a pod's chain or quota uses, so an app's direct calls to other
// providers keep working:
//   - OPENAI_BASE_URL: openai-python, openai-node and openai-go; DeepSeek's own
//     documentation uses the OpenAI SDKs, so it covers DeepSeek and any
//     OpenAI-compatible endpoint too.
//   - ANTHROPIC_BASE_URL: the anthropic Python, TypeScript and Go SDKs.
//   - GOOGLE_GEMINI_BASE_URL: google-genai for Python, Go and JS (the SDK appends
//     /v1beta).
//   - DEEPSEEK_API_BASE: DeepSeek has no official SDK; this is the variable of the
//     most used dedicated client (langchain-deepseek), OpenAI-style with /v1.
var baseURLVars = []baseURLVar{
	{"OPENAI_BASE_URL", "/v1", []quotav1alpha1.ProviderType{quotav1alpha1.ProviderOpenAI, quotav1alpha1.ProviderOpenAICompatible, quotav1alpha1.ProviderDeepSeek}},
	{"ANTHROPIC_BASE_URL", "", []quotav1alpha1.ProviderType{quotav1alpha1.ProviderAnthropic}},
	{"GOOGLE_GEMINI_BASE_URL", "", []quotav1alpha1.ProviderType{quotav1alpha1.ProviderGemini}},
	{"DEEPSEEK_API_BASE", "/v1", []quotav1alpha1.ProviderType{quotav1alpha1.ProviderDeepSeek}},
}

// keyVar is an SDK's API-key variable. The official SDKs refuse to start without
// a key (openai-node throws, the Anthropic SDKs find no authentication method,
// google-genai wants one for the Gemini API), so an app that must need no key of
// its own gets naming.PlaceholderAPIKey where it set none.
type keyVar struct {
	// name is set; any of also set by the user counts as the user's key too
	// (google-genai reads GOOGLE_API_KEY before GEMINI_API_KEY, and the Anthropic
	// SDKs take ANTHROPIC_AUTH_TOKEN instead of a key).
	name      string
	also      []string
	providers []quotav1alpha1.ProviderType
}

// keyVars are the variables the official SDKs read their key from, set only for
// the provider families the pod's chain or quota uses, like baseURLVars:
// DEEPSEEK_API_KEY for DeepSeek's OpenAI-style clients (langchain-deepseek).
var keyVars = []keyVar{
	{"OPENAI_API_KEY", nil, []quotav1alpha1.ProviderType{quotav1alpha1.ProviderOpenAI, quotav1alpha1.ProviderOpenAICompatible, quotav1alpha1.ProviderDeepSeek}},
	{"ANTHROPIC_API_KEY", []string{"ANTHROPIC_AUTH_TOKEN"}, []quotav1alpha1.ProviderType{quotav1alpha1.ProviderAnthropic}},
	{"GEMINI_API_KEY", []string{"GOOGLE_API_KEY"}, []quotav1alpha1.ProviderType{quotav1alpha1.ProviderGemini}},
	{"DEEPSEEK_API_KEY", nil, []quotav1alpha1.ProviderType{quotav1alpha1.ProviderDeepSeek}},
}

// conflictError is a pod that cannot take the sidecar as it is.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

// mutate computes the JSON patch that injects the limiter into pod. The patch is
// built from targeted operations rather than a diff of re-encoded JSON, so fields
// this build's API types do not know survive untouched.
func (inj *Injector) mutate(pod *corev1.Pod, req podRequest, t *target) ([]jsonpatch.JsonPatchOperation, *injection.Summary, error) {
	volumes := inj.volumes(t)
	for _, v := range volumes {
		if slices.ContainsFunc(pod.Spec.Volumes, func(pv corev1.Volume) bool { return pv.Name == v.Name }) {
			return nil, nil, &conflictError{fmt.Sprintf("the pod already has a volume named %q, which the limiter needs; volume names starting with \"aiquota-\" are reserved", v.Name)}
		}
	}
	for _, c := range allContainers(pod) {
		for _, p := range c.Ports {
			if p.ContainerPort == req.port || p.ContainerPort == req.adminPort {
				return nil, nil, &conflictError{fmt.Sprintf("container %q uses port %d, which the limiter needs; choose other ports with %s (now %d) and %s (now %d)",
					c.Name, p.ContainerPort, naming.AnnotationLimiterPort, req.port, naming.AnnotationLimiterAdminPort, req.adminPort)}
			}
		}
	}

	s := &injection.Summary{
		Version: injection.SummaryVersion, Mode: injection.ModeContainer, Image: inj.opts.Image,
		FallbackChain: req.chain, ProviderQuota: req.quota, ConfigMap: t.configMap,
		Port: req.port, AdminPort: req.adminPort, Secrets: t.secrets(),
	}
	if inj.opts.NativeSidecar {
		s.Mode = injection.ModeNativeSidecar
	}
	if s.Secrets == nil {
		s.Secrets = []string{}
	}

	// Env first, while container indices are the pod's own: in container mode the
	// limiter is inserted at index 0 afterwards.
	ops := envOps(pod, req, t, s)
	ops = addAll(ops, "/spec/volumes", len(pod.Spec.Volumes) > 0, volumes)
	// The projected token needs a service account. The ServiceAccount admission
	// plugin usually runs first and sets "default"; where it does not, do what it
	// would, or the API server refuses the pod.
	if pod.Spec.ServiceAccountName == "" {
		sa := pod.Spec.DeprecatedServiceAccount
		if sa == "" {
			sa = "default"
		}
		ops = append(ops, jsonpatch.NewOperation("add", "/spec/serviceAccountName", sa))
	}

	limiter := inj.container(inj.opts.NativeSidecar, req, t)
	switch {
	case !inj.opts.NativeSidecar:
		ops = append(ops, jsonpatch.NewOperation("add", "/spec/containers/0", limiter))
	case len(pod.Spec.InitContainers) == 0:
		ops = append(ops, jsonpatch.NewOperation("add", "/spec/initContainers", []corev1.Container{limiter}))
	default:
		// First among init containers: later init containers may already call it.
		ops = append(ops, jsonpatch.NewOperation("add", "/spec/initContainers/0", limiter))
	}

	sum, err := json.Marshal(s)
	if err != nil {
		return nil, nil, fmt.Errorf("encode injected annotation: %w", err)
	}
	ops = addEntry(ops, "/metadata/annotations", len(pod.Annotations) > 0, naming.AnnotationInjected, string(sum))
	// A label, unlike the annotation, can select: monitoring (a PodMonitor scraping
	// the limiters) and `kubectl get pods -l aiquota.dev/limiter`.
	ops = addEntry(ops, "/metadata/labels", len(pod.Labels) > 0, naming.LabelLimiter, naming.LimiterInjected)
	return ops, s, nil
}

// envOps points each app container's base-URL variables at the limiter and gives
// the SDKs' key variables the placeholder key, recording both in s; variables the
// pod sets itself are kept unless it asks for them to be replaced.
func envOps(pod *corev1.Pod, req podRequest, t *target, s *injection.Summary) []jsonpatch.JsonPatchOperation {
	var ops []jsonpatch.JsonPatchOperation
	vars := varsFor(t.providers)
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		base := fmt.Sprintf("/spec/containers/%d/env", i)
		var added []corev1.EnvVar
		for _, v := range vars {
			value := "http://127.0.0.1:" + strconv.Itoa(int(req.port)) + v.path
			idx := envIndexes(c.Env, v.name)
			switch {
			case len(idx) == 0:
				added = append(added, corev1.EnvVar{Name: v.name, Value: value})
			case req.overrideEnv:
				for _, j := range idx {
					ops = append(ops, jsonpatch.NewOperation("replace", base+"/"+strconv.Itoa(j), corev1.EnvVar{Name: v.name, Value: value}))
				}
			default:
				s.EnvKept = append(s.EnvKept, c.Name+"/"+v.name)
				continue
			}
			if !slices.Contains(s.Env, v.name) {
				s.Env = append(s.Env, v.name)
			}
		}
		// A container with envFrom may get its keys from a Secret, and an env
		// entry would override those: leave its keys alone.
		if len(c.EnvFrom) == 0 {
			for _, k := range keyVars {
				if !slices.ContainsFunc(k.providers, func(p quotav1alpha1.ProviderType) bool { return slices.Contains(t.providers, p) }) ||
					slices.ContainsFunc(append([]string{k.name}, k.also...), func(n string) bool { return len(envIndexes(c.Env, n)) > 0 }) {
					continue
				}
				added = append(added, corev1.EnvVar{Name: k.name, Value: naming.PlaceholderAPIKey})
				if !slices.Contains(s.KeyPlaceholders, k.name) {
					s.KeyPlaceholders = append(s.KeyPlaceholders, k.name)
				}
			}
		}
		ops = addAll(ops, base, len(c.Env) > 0, added)
	}
	return ops
}

// addAll appends items to the array at path, or adds the whole array when the pod
// has none (exists false): a JSON patch cannot append to a missing array.
func addAll[T any](ops []jsonpatch.JsonPatchOperation, path string, exists bool, items []T) []jsonpatch.JsonPatchOperation {
	switch {
	case len(items) == 0:
	case !exists:
		ops = append(ops, jsonpatch.NewOperation("add", path, items))
	default:
		for _, it := range items {
			ops = append(ops, jsonpatch.NewOperation("add", path+"/-", it))
		}
	}
	return ops
}

// addEntry sets key in the string map at path, or adds the map holding it when the
// pod has none (exists false).
func addEntry(ops []jsonpatch.JsonPatchOperation, path string, exists bool, key, value string) []jsonpatch.JsonPatchOperation {
	if !exists {
		return append(ops, jsonpatch.NewOperation("add", path, map[string]string{key: value}))
	}
	return append(ops, jsonpatch.NewOperation("add", path+"/"+escapePointer(key), value))
}

func allContainers(pod *corev1.Pod) []corev1.Container {
	return append(slices.Clip(pod.Spec.InitContainers), pod.Spec.Containers...)
}

func varsFor(providers []quotav1alpha1.ProviderType) []baseURLVar {
	var out []baseURLVar
	for _, v := range baseURLVars {
		if slices.ContainsFunc(v.providers, func(p quotav1alpha1.ProviderType) bool { return slices.Contains(providers, p) }) {
			out = append(out, v)
		}
	}
	return out
}

func envIndexes(env []corev1.EnvVar, name string) []int {
	var idx []int
	for j, e := range env {
		if e.Name == name {
			idx = append(idx, j)
		}
	}
	return idx
}

// escapePointer escapes a JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// readOnlyMode is the file mode of mounted keys and token: readable by the
// sidecar's non-root user whatever the app containers run as, and mounted into
// the sidecar only.
const readOnlyMode int32 = 0o444

func (inj *Injector) volumes(t *target) []corev1.Volume {
	mode := readOnlyMode
	expiry := inj.opts.TokenExpirationSeconds
	vols := []corev1.Volume{
		{
			// The whole ConfigMap, no subPath: the kubelet swaps the directory's
			// ..data link on update and the sidecar reloads.
			Name: naming.ConfigVolume,
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: t.configMap},
			}},
		},
		{
			Name: naming.TokenVolume,
			VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				DefaultMode: &mode,
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Audience: naming.TokenAudience, ExpirationSeconds: &expiry, Path: naming.TokenFile,
				}}},
			}},
		},
	}
	for _, secret := range t.secrets() {
		var items []corev1.KeyToPath
		for _, c := range t.credentials {
			if c.secret == secret {
				items = append(items, corev1.KeyToPath{Key: c.key, Path: c.key})
			}
		}
		vols = append(vols, corev1.Volume{
			Name: naming.KeyVolume(secret),
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: secret, Items: items, DefaultMode: &mode,
			}},
		})
	}
	return vols
}

// container is the limiter container, as a native sidecar or as a plain container.
func (inj *Injector) container(native bool, req podRequest, t *target) corev1.Container {
	args := []string{
		"--config", naming.ConfigPath(),
		"--listen", "127.0.0.1:" + strconv.Itoa(int(req.port)),
		"--admin-listen", ":" + strconv.Itoa(int(req.adminPort)),
	}
	if req.priority > 0 {
		args = append(args, "--default-priority", strconv.Itoa(req.priority))
	}
	if req.accessLogSample != "" {
		args = append(args, "--access-log-sample", req.accessLogSample)
	}
	mounts := []corev1.VolumeMount{
		{Name: naming.ConfigVolume, MountPath: naming.ConfigDir, ReadOnly: true},
		{Name: naming.TokenVolume, MountPath: naming.TokenDir, ReadOnly: true},
	}
	for _, secret := range t.secrets() {
		mounts = append(mounts, corev1.VolumeMount{Name: naming.KeyVolume(secret), MountPath: naming.KeyDir(secret), ReadOnly: true})
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromInt32(req.adminPort), Scheme: corev1.URISchemeHTTP,
			}},
			TimeoutSeconds: 1, PeriodSeconds: period, SuccessThreshold: 1, FailureThreshold: failures,
		}
	}
	yes, no := true, false
	sc := &corev1.SecurityContext{
		RunAsNonRoot:             &yes,
		ReadOnlyRootFilesystem:   &yes,
		AllowPrivilegeEscalation: &no,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if uid := inj.opts.RunAsUser; uid > 0 {
		sc.RunAsUser, sc.RunAsGroup = &uid, &uid
	}
	c := corev1.Container{
		Name:            naming.LimiterName,
		Image:           inj.opts.Image,
		ImagePullPolicy: inj.opts.ImagePullPolicy,
		// Named, not left to the image's entrypoint: the plain-container postStart
		// hook runs the same binary, so an image with it elsewhere fails to start
		// with a clear error instead of failing every hook.
		Command: []string{naming.LimiterBinary},
		Args:    args,
		Ports:   []corev1.ContainerPort{{Name: naming.AdminPortName, ContainerPort: req.adminPort, Protocol: corev1.ProtocolTCP}},
		Env: []corev1.EnvVar{
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("POD_UID", "metadata.uid"),
		},
		Resources:    req.resources,
		VolumeMounts: mounts,
		// The app starts only once the sidecar serves: a native sidecar's startup
		// probe holds back the containers after it. Two minutes covers a config
		// ConfigMap that the operator renders just after the pod is created.
		StartupProbe:             probe("/readyz", 1, 120),
		ReadinessProbe:           probe("/readyz", 5, 2),
		LivenessProbe:            probe("/healthz", 10, 3),
		SecurityContext:          sc,
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if native {
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
	} else {
		// A plain container has no startup probe gating the ones after it, but the
		// kubelet starts the next container only once this one's postStart hook has
		// returned: the hook waits up to two minutes for the limiter to be ready. If
		// it gives up, the kubelet kills the limiter and starts the app anyway (a
		// native sidecar's startup probe would keep it waiting).
		c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{
			naming.LimiterBinary, "wait-ready",
			"--url", "http://127.0.0.1:" + strconv.Itoa(int(req.adminPort)) + "/readyz",
			"--timeout", "2m",
		}}}}
	}
	return c
}
