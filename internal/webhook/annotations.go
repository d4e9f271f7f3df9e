package webhook

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/aiquota/aiquota/internal/naming"
)

// minLimiterPort keeps the limiter's ports out of the privileged range: it runs as
// non-root with every capability dropped, so it could not bind below 1024 on
// runtimes that do not lower ip_unprivileged_port_start.
const minLimiterPort = 1024

// podRequest is what a pod's annotations ask for, validated.
type podRequest struct {
	// chain and quota: exactly one is set.
	chain, quota string
	// priority is 1..9, or 0 when the pod does not set one.
	priority int
	// accessLogSample is the --access-log-sample value as written, "" when unset.
	accessLogSample string
	port            int32
	adminPort       int32
	// overrideEnv lets the webhook replace base-URL variables the user set.
	overrideEnv bool
	resources   corev1.ResourceRequirements
}

// annotationError lists every bad annotation of a pod, so one round of fixes is enough.
type annotationError struct{ problems []string }

func (e *annotationError) Error() string {
	return "invalid aiquota annotations: " + strings.Join(e.problems, "; ")
}

func (e *annotationError) addf(format string, args ...any) {
	e.problems = append(e.problems, fmt.Sprintf(format, args...))
}

// parseAnnotations validates a pod's aiquota annotations against the sidecar's
// default resources. opted is false when the pod does not ask for injection
// (inject absent or "false"); err is an *annotationError naming every bad annotation.
func parseAnnotations(ann map[string]string, defaults corev1.ResourceRequirements) (req podRequest, opted bool, err error) {
	inject, present := ann[naming.AnnotationInject]
	if !present || inject == "false" {
		return podRequest{}, false, nil
	}
	bad := &annotationError{}
	if inject != "true" {
		bad.addf("%s is %s; want \"true\" or \"false\"", naming.AnnotationInject, quote(inject))
	}

	chain, hasChain := ann[naming.AnnotationFallbackChain]
	quota, hasQuota := ann[naming.AnnotationProviderQuota]
	switch {
	case hasChain && hasQuota:
		bad.addf("both %s and %s are set; set exactly one: a FallbackChain, or a ProviderQuota for direct use",
			naming.AnnotationFallbackChain, naming.AnnotationProviderQuota)
	case !hasChain && !hasQuota:
		bad.addf("%s is \"true\" but neither %s nor %s names what to use",
			naming.AnnotationInject, naming.AnnotationFallbackChain, naming.AnnotationProviderQuota)
	case hasChain:
		checkObjectName(bad, naming.AnnotationFallbackChain, chain)
		req.chain = chain
	default:
		checkObjectName(bad, naming.AnnotationProviderQuota, quota)
		req.quota = quota
	}

	if v, ok := ann[naming.AnnotationPriority]; ok {
		n, perr := parseSmallUint(v)
		if perr != nil || n < 1 || n > 9 {
			bad.addf("%s is %s; want an integer from 1 (interactive) to 9 (batch)", naming.AnnotationPriority, quote(v))
		} else {
			req.priority = n
		}
	}
	if v, ok := ann[naming.AnnotationAccessLogSample]; ok {
		f, perr := strconv.ParseFloat(v, 64)
		if perr != nil || !(f >= 0 && f <= 1) {
			bad.addf("%s is %s; want a share of requests from 0 (none) to 1 (every one)", naming.AnnotationAccessLogSample, quote(v))
		} else if f > 0 {
			req.accessLogSample = strconv.FormatFloat(f, 'g', -1, 64)
		}
	}
	req.port = parsePort(bad, ann, naming.AnnotationLimiterPort, naming.DefaultPort)
	req.adminPort = parsePort(bad, ann, naming.AnnotationLimiterAdminPort, naming.AdminPort)
	if req.port != 0 && req.port == req.adminPort {
		bad.addf("%s and %s are both %d; the proxy and admin listeners need different ports",
			naming.AnnotationLimiterPort, naming.AnnotationLimiterAdminPort, req.port)
	}

	if v, ok := ann[naming.AnnotationOverrideEnv]; ok {
		switch v {
		case "true":
			req.overrideEnv = true
		case "false":
		default:
			bad.addf("%s is %s; want \"true\" or \"false\"", naming.AnnotationOverrideEnv, quote(v))
		}
	}

	req.resources = parseResources(bad, ann, defaults)
	if len(bad.problems) > 0 {
		return podRequest{}, true, bad
	}
	return req, true, nil
}

// checkObjectName requires a valid object name: anything else can never exist.
func checkObjectName(bad *annotationError, annotation, name string) {
	if name == "" {
		bad.addf("%s is empty; want the name of an object in the pod's namespace", annotation)
		return
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		bad.addf("%s is %s, not a valid object name: %s", annotation, quote(name), strings.Join(errs, ", "))
	}
}

func parsePort(bad *annotationError, ann map[string]string, annotation string, def int32) int32 {
	v, ok := ann[annotation]
	if !ok {
		return def
	}
	n, err := parseSmallUint(v)
	if err != nil || n < minLimiterPort || n > 65535 {
		bad.addf("%s is %s; want a port number from %d to 65535", annotation, quote(v), minLimiterPort)
		return 0
	}
	return int32(n)
}

// parseSmallUint accepts only plain decimal digits (no sign, no spaces), at most 5.
func parseSmallUint(s string) (int, error) {
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("not a small number: %q", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("not a number: %q", s)
		}
	}
	return strconv.Atoi(s)
}

type resourceAnnotation struct {
	annotation string
	name       corev1.ResourceName
	limit      bool
}

var resourceAnnotations = []resourceAnnotation{
	{naming.AnnotationLimiterCPURequest, corev1.ResourceCPU, false},
	{naming.AnnotationLimiterCPULimit, corev1.ResourceCPU, true},
	{naming.AnnotationLimiterMemoryRequest, corev1.ResourceMemory, false},
	{naming.AnnotationLimiterMemoryLimit, corev1.ResourceMemory, true},
}

// parseResources overlays the resource annotations on the defaults and checks that
// every request fits its limit, which the API server would otherwise refuse with a
// message that does not mention the annotation.
func parseResources(bad *annotationError, ann map[string]string, defaults corev1.ResourceRequirements) corev1.ResourceRequirements {
	out := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for k, v := range defaults.Requests {
		out.Requests[k] = v.DeepCopy()
	}
	for k, v := range defaults.Limits {
		out.Limits[k] = v.DeepCopy()
	}
	set := map[corev1.ResourceName]string{} // resource -> annotation that set the request or limit last checked
	for _, ra := range resourceAnnotations {
		v, ok := ann[ra.annotation]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() <= 0 {
			bad.addf("%s is %s; want a positive quantity such as %s", ra.annotation, quote(v), exampleQuantity(ra.name))
			continue
		}
		if ra.limit {
			out.Limits[ra.name] = q
		} else {
			out.Requests[ra.name] = q
		}
		set[ra.name] = ra.annotation
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := out.Requests[name]
		lim, hasLim := out.Limits[name]
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			who := set[name]
			if who == "" {
				who = "the manager's defaults"
			}
			bad.addf("the limiter's %s request %s exceeds its limit %s (set by %s); raise the limit or lower the request",
				name, req.String(), lim.String(), who)
		}
	}
	if len(out.Requests) == 0 {
		out.Requests = nil
	}
	if len(out.Limits) == 0 {
		out.Limits = nil
	}
	return out
}

func exampleQuantity(name corev1.ResourceName) string {
	if name == corev1.ResourceCPU {
		return `"100m"`
	}
	return `"64Mi"`
}

// quote shows a user value in a message, bounded so that a huge annotation cannot
// blow up the admission response.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
