package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/aiquota/aiquota/internal/injection"
	"github.com/aiquota/aiquota/internal/naming"
)

// priorLimiter is a limiter the webhook injected earlier, as its record and the
// pod's spec show it.
type priorLimiter struct {
	summary injection.Summary
	// init is true for an init container, index its position in its list.
	init  bool
	index int
}

// priorInjection finds an earlier injection of this webhook. A pod counts as
// injected only when it carries the aiquota.dev/injected record and exactly one
// container named like the limiter, in the list the record's mode puts it in; its
// shape is checked by verifyInjected once the pod's chain or quota is resolved. A
// container that merely has the limiter's name would otherwise pass for the
// limiter, and the app would run with no limiter at all. A record without any such
// container is stale (copied from another pod) and is overwritten by a fresh
// injection: nil, nil.
func priorInjection(pod *corev1.Pod) (*priorLimiter, error) {
	type found struct {
		init  bool
		index int
	}
	var named []found
	for i, c := range pod.Spec.InitContainers {
		if c.Name == naming.LimiterName {
			named = append(named, found{true, i})
		}
	}
	for i, c := range pod.Spec.Containers {
		if c.Name == naming.LimiterName {
			named = append(named, found{false, i})
		}
	}
	if len(named) == 0 {
		return nil, nil
	}
	record, ok := pod.Annotations[naming.AnnotationInjected]
	if !ok {
		return nil, &conflictError{fmt.Sprintf(
			"the pod has a container named %q but no %s annotation: that name is reserved for the limiter this webhook injects, and a container of the pod's own would run in its place, leaving the app unprotected; rename the container",
			naming.LimiterName, naming.AnnotationInjected)}
	}
	if len(named) > 1 {
		return nil, &conflictError{fmt.Sprintf("the pod has %d containers named %q; the webhook injects one, and the name is reserved for it; rename the others",
			len(named), naming.LimiterName)}
	}
	var s injection.Summary
	dec := json.NewDecoder(bytes.NewReader([]byte(record)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil || s.Version != injection.SummaryVersion || (s.Mode != injection.ModeNativeSidecar && s.Mode != injection.ModeContainer) {
		return nil, &conflictError{fmt.Sprintf(
			"the pod's %s annotation is %s, not a record this webhook writes, yet the pod has a container named %q; remove the annotation and the container to have the limiter injected",
			naming.AnnotationInjected, quote(record), naming.LimiterName)}
	}
	if wantInit := s.Mode == injection.ModeNativeSidecar; named[0].init != wantInit {
		where := "containers"
		if named[0].init {
			where = "initContainers"
		}
		return nil, &conflictError{fmt.Sprintf(
			"the pod's %s record says the limiter was injected as a %s, but the container named %q is in %s; remove the annotation and the container to have the limiter injected",
			naming.AnnotationInjected, s.Mode, naming.LimiterName, where)}
	}
	return &priorLimiter{summary: s, init: named[0].init, index: named[0].index}, nil
}

// checkIsolation refuses pods in which the app could reach the limiter's keys or
// share its network stack with the node. The key files are readable by the
// limiter's user, and an app container sharing its process namespace (or the
// node's) could read them through /proc/<pid>/root whenever the UIDs allow; and
// an app container could mount a credential volume by its predictable name, which
// this webhook would then create. prior, when set, is the limiter injected earlier:
// the one container allowed to mount them.
func checkIsolation(pod *corev1.Pod, prior *priorLimiter) error {
	if pod.Spec.HostNetwork {
		return &conflictError{"the pod uses hostNetwork: the limiter's localhost proxy and admin port would be shared with the whole node; run the app without hostNetwork"}
	}
	if pod.Spec.HostPID {
		return &conflictError{"the pod sets hostPID: true: its containers could read the limiter's API keys through /proc of the limiter's process; the limiter is not injected into such pods; run the app without hostPID"}
	}
	if pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace {
		return &conflictError{"the pod sets shareProcessNamespace: true: its app containers could read the limiter's API keys through /proc of the limiter's process; the limiter is not injected into such pods; remove shareProcessNamespace (or set it false)"}
	}
	check := func(init bool, cs []corev1.Container) error {
		for i, c := range cs {
			if prior != nil && prior.init == init && prior.index == i {
				continue
			}
			for _, m := range c.VolumeMounts {
				if naming.IsKeyVolume(m.Name) || m.Name == naming.TokenVolume {
					return &conflictError{fmt.Sprintf(
						"container %q mounts volume %q: volumes named %q and %s* hold the limiter's credentials (API keys, control-channel token) and only the limiter may mount them; remove the mount",
						c.Name, m.Name, naming.TokenVolume, naming.KeyVolumePrefix)}
				}
			}
		}
		return nil
	}
	if err := check(true, pod.Spec.InitContainers); err != nil {
		return err
	}
	return check(false, pod.Spec.Containers)
}

// verifyInjected checks that a prior injection is what this webhook would inject
// for the pod's annotations now: the record names the same chain or quota and
// ConfigMap, and the limiter container and its volumes have the shape the injector
// produces (image, command, args, ports, mounts, volume sources). Fields other
// admission plugins may default or adjust (resources, probes, security context,
// env) are not compared.
func (inj *Injector) verifyInjected(pod *corev1.Pod, prior *priorLimiter, req podRequest, t *target) error {
	s := prior.summary
	var diffs []string
	if s.FallbackChain != req.chain || s.ProviderQuota != req.quota {
		diffs = append(diffs, fmt.Sprintf("the record is for %s but the pod's annotations name %s", describeUse(s.FallbackChain, s.ProviderQuota), describeUse(req.chain, req.quota)))
	}
	if s.ConfigMap != t.configMap {
		diffs = append(diffs, fmt.Sprintf("the record names ConfigMap %s, want %q", quote(s.ConfigMap), t.configMap))
	}
	cs := pod.Spec.Containers
	if prior.init {
		cs = pod.Spec.InitContainers
	}
	got := cs[prior.index]
	want := inj.container(prior.init, req, t)
	if got.Image != want.Image {
		diffs = append(diffs, fmt.Sprintf("its image is %s, want %q", quote(got.Image), want.Image))
	}
	if !slices.Equal(got.Command, want.Command) {
		diffs = append(diffs, "its command differs")
	}
	if !slices.Equal(got.Args, want.Args) {
		diffs = append(diffs, "its args differ")
	}
	if !samePorts(got.Ports, want.Ports) {
		diffs = append(diffs, "its ports differ")
	}
	if !sameMounts(withoutAPIAccess(got.VolumeMounts), want.VolumeMounts) {
		diffs = append(diffs, "its volume mounts differ")
	}
	if !equality.Semantic.DeepEqual(got.RestartPolicy, want.RestartPolicy) || !equality.Semantic.DeepEqual(got.Lifecycle, want.Lifecycle) {
		diffs = append(diffs, "its restart policy or lifecycle hook differs")
	}
	for _, v := range inj.volumes(t) {
		i := slices.IndexFunc(pod.Spec.Volumes, func(pv corev1.Volume) bool { return pv.Name == v.Name })
		if i < 0 || !sameSource(pod.Spec.Volumes[i].VolumeSource, v.VolumeSource) {
			diffs = append(diffs, fmt.Sprintf("volume %q is missing or has another source", v.Name))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	if len(diffs) > 4 {
		diffs = append(diffs[:4], "...")
	}
	return &conflictError{fmt.Sprintf(
		"the pod carries the %s record, but its container %q is not the limiter this webhook injects (%s) and would run in its place; remove the container, its aiquota- volumes and the %s annotation to have the limiter injected",
		naming.AnnotationInjected, naming.LimiterName, strings.Join(diffs, "; "), naming.AnnotationInjected)}
}

func describeUse(chain, quota string) string {
	if quota != "" {
		return "ProviderQuota " + quote(quota)
	}
	return "FallbackChain " + quote(chain)
}

func samePorts(a, b []corev1.ContainerPort) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.ContainerPort) bool {
		px, py := x.Protocol, y.Protocol
		if px == "" {
			px = corev1.ProtocolTCP
		}
		if py == "" {
			py = corev1.ProtocolTCP
		}
		return x.Name == y.Name && x.ContainerPort == y.ContainerPort && px == py && x.HostPort == y.HostPort
	})
}

// serviceAccountDir is where the ServiceAccount admission plugin mounts the API
// token into every container of a pod that does not opt out.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// withoutAPIAccess drops the ServiceAccount admission plugin's mount, which a
// limiter injected earlier may have received; any other mount the injector did not
// add (one over its config file, say) is a difference.
func withoutAPIAccess(ms []corev1.VolumeMount) []corev1.VolumeMount {
	return slices.DeleteFunc(slices.Clone(ms), func(m corev1.VolumeMount) bool {
		return m.MountPath == serviceAccountDir && m.ReadOnly && m.SubPath == "" && m.SubPathExpr == ""
	})
}

func sameMounts(a, b []corev1.VolumeMount) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.VolumeMount) bool {
		return x.Name == y.Name && x.MountPath == y.MountPath && x.ReadOnly == y.ReadOnly && x.SubPath == y.SubPath && x.SubPathExpr == y.SubPathExpr
	})
}

// sameSource compares what a volume mounts, not the modes the API server defaults
// (which allows one source per volume).
func sameSource(got, want corev1.VolumeSource) bool {
	switch {
	case want.ConfigMap != nil:
		return got.ConfigMap != nil && got.ConfigMap.Name == want.ConfigMap.Name && len(got.ConfigMap.Items) == 0
	case want.Secret != nil:
		return got.Secret != nil && got.Secret.SecretName == want.Secret.SecretName &&
			equality.Semantic.DeepEqual(got.Secret.Items, want.Secret.Items)
	case want.Projected != nil:
		return got.Projected != nil && len(got.Projected.Sources) == 1 &&
			equality.Semantic.DeepEqual(got.Projected.Sources[0].ServiceAccountToken, want.Projected.Sources[0].ServiceAccountToken)
	}
	return false
}
