// Package webhook is the pod mutator that injects the aiquota limiter sidecar.
//
// A pod opts in with aiquota.dev/inject: "true" and names a FallbackChain or a
// ProviderQuota. The webhook configuration (config/webhook) filters on the server
// side: matchConditions send only pods carrying the inject annotation (and not
// "false"), and the namespaceSelector keeps kube-system, the manager's namespace and
// namespaces labelled aiquota.dev/injection=disabled away, so other pods never reach
// this code. Every rule here needs the cluster's objects or spans several
// annotations, which CEL in a ValidatingAdmissionPolicy could not express as one
// clear message; no validating webhook is needed: the mutator itself denies bad
// annotations before the pod exists.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/aiquota/aiquota/internal/injection"
	"github.com/aiquota/aiquota/internal/naming"
)

// Path is where the mutator is served; config/webhook points the API server at it.
const Path = "/mutate-v1-pod"

// Event reasons on the pod's owning workload.
const (
	ReasonInjected         = "SidecarInjected"
	ReasonInjectionDenied  = "SidecarInjectionDenied"
	ReasonInjectedPartly   = "SidecarChainIncomplete"
	ReasonInjectionSkipped = "SidecarInjectionSkipped"
)

// eventAction is the events.k8s.io action of every event the webhook records.
const eventAction = "InjectLimiter"

// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=fallbackchains;providerquotas,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

// Injector is the admission handler.
type Injector struct {
	opts     Options
	resolver resolver
	events   *eventSink
	warmer   *cacheWarmer
}

// NewInjector builds the handler. cache serves the chain and quota lookups;
// direct, when not nil, confirms a cache miss against the API server and reads
// ReplicaSets' owners for events; recorder may be nil (no events).
func NewInjector(opts Options, cache, direct client.Reader, recorder EventRecorder, log logr.Logger) (*Injector, error) {
	if err := opts.complete(); err != nil {
		return nil, err
	}
	inj := &Injector{opts: opts, resolver: resolver{cache: cache, direct: direct}}
	if recorder != nil {
		inj.events = newEventSink(recorder, direct, log)
	}
	return inj, nil
}

// decision is the outcome of one admission request.
type decision struct {
	resp admission.Response
	// event, when set, is recorded on the pod's owning workload.
	event     *podEvent
	namespace string
	// podName is the pod's name, or its generateName prefix (Deployments' pods
	// get their name after admission).
	podName string
	owners  []metav1.OwnerReference
}

type podEvent struct {
	eventType, reason, note string
}

// Handle implements admission.Handler.
func (inj *Injector) Handle(ctx context.Context, req admission.Request) admission.Response {
	d := inj.decide(ctx, req)
	if d.event != nil {
		log := logf.FromContext(ctx).WithValues("pod", klog.KRef(d.namespace, d.podName), "reason", d.event.reason, "note", d.event.note)
		if d.event.eventType == corev1.EventTypeWarning {
			log.Info("pod admission needs attention")
		} else {
			log.V(1).Info("limiter injected")
		}
		if inj.events != nil && (req.DryRun == nil || !*req.DryRun) {
			inj.events.record(d.namespace, d.owners, d.event)
		}
	}
	return d.resp
}

func (inj *Injector) decide(ctx context.Context, req admission.Request) decision {
	if req.Operation != admissionv1.Create || req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return decision{resp: admission.Allowed("aiquota injects pods on creation only")}
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return decision{resp: admission.Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err))}
	}
	namespace := req.Namespace
	if namespace == "" {
		namespace = pod.Namespace
	}
	// The webhook configuration already keeps these namespaces away; this guards
	// against an edited configuration.
	if slices.Contains(inj.opts.ExcludedNamespaces, namespace) {
		return decision{resp: admission.Allowed("namespace " + namespace + " is excluded from injection")}
	}
	if len(inj.opts.WatchNamespaces) > 0 && !slices.Contains(inj.opts.WatchNamespaces, namespace) {
		return decision{resp: admission.Allowed("namespace " + namespace + " is not watched by this aiquota install")}
	}
	d := inj.decidePod(ctx, namespace, pod)
	d.namespace, d.owners, d.podName = namespace, pod.OwnerReferences, pod.Name
	if d.podName == "" {
		d.podName = pod.GenerateName
	}
	return d
}

func (inj *Injector) decidePod(ctx context.Context, namespace string, pod *corev1.Pod) decision {
	preq, opted, err := parseAnnotations(pod.Annotations, inj.opts.Resources)
	if !opted {
		return decision{resp: admission.Allowed("pod does not ask for the aiquota limiter")}
	}
	if err != nil {
		return inj.deny(err.Error())
	}
	prior, err := priorInjection(pod)
	if err != nil {
		return inj.deny(err.Error())
	}
	if err := checkIsolation(pod, prior); err != nil {
		return inj.deny(err.Error())
	}

	t, err := inj.resolver.resolve(ctx, namespace, preq)
	var nf *notFoundError
	switch {
	case errors.As(err, &nf) && inj.opts.MissingReference == MissingReferenceAdmit:
		msg := nf.Error() + "; the pod was created WITHOUT the aiquota limiter (the manager runs with --webhook-missing-reference=admit)"
		return decision{
			resp:  admission.Allowed("").WithWarnings(msg),
			event: &podEvent{corev1.EventTypeWarning, ReasonInjectionSkipped, msg},
		}
	case errors.As(err, &nf):
		return inj.deny(nf.Error())
	case err != nil:
		// The API server applies the webhook's failurePolicy to this error.
		return decision{resp: admission.Errored(http.StatusInternalServerError, fmt.Errorf("resolve the pod's aiquota configuration: %w", err))}
	}
	var conflict *conflictError
	switch err := inj.resolver.checkConfigMap(ctx, namespace, t); {
	case errors.As(err, &conflict):
		return inj.deny(conflict.Error())
	case err != nil:
		return decision{resp: admission.Errored(http.StatusInternalServerError, err)}
	}
	if prior != nil {
		if err := inj.verifyInjected(pod, prior, preq, t); err != nil {
			return inj.deny(err.Error())
		}
		return decision{resp: admission.Allowed("the aiquota limiter is already injected")}
	}

	ops, summary, err := inj.mutate(pod, preq, t)
	switch {
	case errors.As(err, &conflict):
		return inj.deny(conflict.Error())
	case err != nil:
		return decision{resp: admission.Errored(http.StatusInternalServerError, err)}
	}
	resp := admission.Patched("injected the aiquota limiter", ops...)
	if len(t.warnings) > 0 {
		resp = resp.WithWarnings(t.warnings...)
	}
	d := decision{resp: resp, event: &podEvent{corev1.EventTypeNormal, ReasonInjected, injectedNote(summary)}}
	if len(t.warnings) > 0 {
		d.event = &podEvent{corev1.EventTypeWarning, ReasonInjectedPartly, injectedNote(summary) + " " + strings.Join(t.warnings, "; ")}
	}
	return d
}

func (inj *Injector) deny(msg string) decision {
	return decision{
		resp:  admission.Denied(msg),
		event: &podEvent{corev1.EventTypeWarning, ReasonInjectionDenied, "Pod creation refused: " + msg},
	}
}

func injectedNote(s *injection.Summary) string {
	using := fmt.Sprintf("FallbackChain %q", s.FallbackChain)
	if s.ProviderQuota != "" {
		using = fmt.Sprintf("ProviderQuota %q", s.ProviderQuota)
	}
	note := fmt.Sprintf("Injected the aiquota limiter as a %s for %s: config from ConfigMap %q, keys from Secret(s) %s, proxy on 127.0.0.1:%d.",
		s.Mode, using, s.ConfigMap, strings.Join(s.Secrets, ", "), s.Port)
	if len(s.EnvKept) > 0 {
		note += fmt.Sprintf(" Kept the app's own %s; set %s: \"true\" to point them at the limiter.", strings.Join(s.EnvKept, ", "), naming.AnnotationOverrideEnv)
	}
	return note
}
