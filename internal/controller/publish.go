package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/render"
)

// published is the outcome of one attempt to bring an owner's ConfigMap up to date.
type published struct {
	// condition is ConfigRendered.
	condition metav1.Condition
	// configMapName is the ConfigMap pods should mount: set while one of ours exists,
	// even a stale one.
	configMapName string
	// wrote and hash say that the ConfigMap now holds a new config.
	wrote bool
	hash  string
	// err is a failure worth retrying with backoff (an API error).
	err error
	// retryAfter asks for a later look without an error (a name taken by others).
	retryAfter time.Duration
}

// Stale configs: when an owner cannot render (a reference is gone, the spec is
// invalid), its last rendered ConfigMap stays as it is. Pods that run with it keep
// working, and new pods still start, with the config the owner last had; deleting it
// would turn a dangling reference, often a GitOps ordering blip, into an outage of
// every app using the chain. ConfigRendered and Ready say the config is stale, and
// why, until the owner renders again.

// publish renders with fn and writes the result into the owner's ConfigMap.
func (d *deps) publish(ctx context.Context, owner client.Object, kind, cmName string, current *corev1.ConfigMap, fn func() (*limiterconfig.Config, error)) published {
	cfg, err := fn()
	if err != nil {
		return d.blocked(owner, cmName, current, quotav1alpha1.ReasonRenderFailed, fmt.Sprintf("render failed: %v.", err))
	}
	data, hash, err := render.Encode(cfg)
	if err != nil {
		return d.blocked(owner, cmName, current, quotav1alpha1.ReasonRenderFailed, err.Error()+".")
	}
	r := rendered{data: data, hash: hash}
	if d.ca != nil {
		ca, err := d.ca.current()
		if err != nil {
			return d.blocked(owner, cmName, current, quotav1alpha1.ReasonRenderFailed, fmt.Sprintf("the control channel's %v.", err))
		}
		r.ca = ca
	}
	wrote, err := d.applyConfigMap(ctx, owner, strings.ToLower(kind), cmName, r, current)
	if wrote {
		ctrl.LoggerFrom(ctx).V(1).Info("wrote the rendered limiter config", "configMap", klog.KRef(owner.GetNamespace(), cmName), "configHash", shortHash(hash), "previousHash", shortHash(configHash(current)))
	}
	switch {
	case errors.Is(err, errNotOwned):
		return published{retryAfter: notOwnedRetry, condition: condition(quotav1alpha1.ConditionConfigRendered, false, quotav1alpha1.ReasonRenderFailed,
			fmt.Sprintf("ConfigMap %s exists and is not controlled by this %s: delete or rename it, and the config will be rendered there.", cmName, kind))}
	case err != nil:
		p := d.blocked(owner, cmName, current, quotav1alpha1.ReasonRenderFailed, fmt.Sprintf("writing the config failed: %v.", err))
		p.err = err
		return p
	}
	return published{
		condition: condition(quotav1alpha1.ConditionConfigRendered, true, quotav1alpha1.ReasonRendered,
			// No hash here: the ConfigMap's annotation has it, and a status that
			// changed with every input would double the writes of a fan-out.
			fmt.Sprintf("ConfigMap %s holds the limiter config for generation %d.", cmName, owner.GetGeneration())),
		configMapName: cmName,
		wrote:         wrote,
		hash:          hash,
	}
}

// blocked is ConfigRendered=False, keeping whatever config the owner last rendered.
func (d *deps) blocked(owner client.Object, cmName string, current *corev1.ConfigMap, reason, why string) published {
	p := published{}
	msg := why
	if current != nil && metav1.IsControlledBy(current, owner) {
		p.configMapName = cmName
		msg += fmt.Sprintf(" ConfigMap %s keeps the last rendered config (sha256 %s) so running pods keep working; it is stale until this is fixed.", cmName, shortHash(configHash(current)))
	} else {
		msg += " No config has been rendered yet."
	}
	p.condition = condition(quotav1alpha1.ConditionConfigRendered, false, reason, msg)
	return p
}

// announceRendered records an Event when the ConfigMap changed: pods mounting it
// reload within the kubelet's sync period.
func announceRendered(rec eventRecorder, owner client.Object, pub published, before *corev1.ConfigMap) {
	if !pub.wrote {
		return
	}
	old := configHash(before)
	switch old {
	case "":
		rec.Eventf(owner, nil, corev1.EventTypeNormal, eventConfigRendered, actionRender,
			"rendered the limiter config into ConfigMap %s (sha256 %s)", pub.configMapName, shortHash(pub.hash))
	case pub.hash:
		rec.Eventf(owner, nil, corev1.EventTypeNormal, eventConfigRendered, actionRender,
			"restored ConfigMap %s (sha256 %s): its contents or the control channel's CA bundle had changed", pub.configMapName, shortHash(pub.hash))
	default:
		rec.Eventf(owner, nil, corev1.EventTypeNormal, eventConfigRendered, actionRender,
			"re-rendered the limiter config in ConfigMap %s: sha256 %s, was %s", pub.configMapName, shortHash(pub.hash), shortHash(old))
	}
}

// markPartial says, in ConfigRendered and in an Event when the config was written,
// that a config rendered while some references are missing (or some entries cannot
// be used) holds only what exists. effect says what was left out or replaced.
func markPartial(rec eventRecorder, owner client.Object, pub *published, problems []problem, effect string) {
	if len(problems) == 0 || pub.condition.Status != metav1.ConditionTrue {
		return
	}
	msg := fmt.Sprintf("ConfigMap %s holds the limiter config of what exists, for generation %d: %s. %s; the config follows when they appear.",
		pub.configMapName, owner.GetGeneration(), joinProblems(problems), effect)
	pub.condition = condition(quotav1alpha1.ConditionConfigRendered, true, quotav1alpha1.ReasonRenderedPartially, msg)
	if pub.wrote {
		rec.Eventf(owner, nil, corev1.EventTypeWarning, quotav1alpha1.ReasonRenderedPartially, actionRender, "%s", truncate(msg, maxEventNote))
	}
}
