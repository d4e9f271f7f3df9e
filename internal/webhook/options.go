package webhook

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Missing-reference policies: what happens to a pod whose chain or quota does not exist.
const (
	MissingReferenceDeny  = "deny"
	MissingReferenceAdmit = "admit"
)

// minTokenExpiration is the API server's floor for projected token lifetimes.
const minTokenExpiration = 10 * time.Minute

// Options configure the injector. Flags bind them in the manager; tests fill them in.
type Options struct {
	// Port is the webhook server's HTTPS port.
	Port int
	// Image is the limiter image.
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// NativeSidecar injects the limiter as an init container with restartPolicy
	// Always; false adds the first plain container, for clusters with the
	// SidecarContainers feature gate off, with a postStart hook that holds the app
	// for up to two minutes until the limiter is ready.
	NativeSidecar bool
	// Resources are the limiter's default requests and limits; pod annotations
	// override them one by one.
	Resources corev1.ResourceRequirements
	// RunAsUser, when positive, is the limiter's UID and GID; 0 leaves them to the
	// image (as OpenShift's restricted SCC wants).
	RunAsUser int64
	// TokenExpirationSeconds is the projected control-channel token's lifetime; the
	// kubelet refreshes it at 80%.
	TokenExpirationSeconds int64
	// MissingReference is MissingReferenceDeny or MissingReferenceAdmit.
	MissingReference string
	// ExcludedNamespaces are never injected even if the webhook configuration lets
	// their pods through (kube-system and the manager's namespace).
	ExcludedNamespaces []string
	// WatchNamespaces, when not empty, are the only namespaces injected: a
	// namespace-scoped install reads quotas and chains nowhere else.
	WatchNamespaces []string
}

// DefaultOptions are the manager's defaults.
func DefaultOptions() Options {
	return Options{
		Port:            9443,
		Image:           "aiquota/limiter:latest",
		ImagePullPolicy: corev1.PullIfNotPresent,
		NativeSidecar:   true,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("50m"),
				corev1.ResourceMemory: resource.MustParse("32Mi"),
			},
			// The limiter sizes its Go memory limit (90%) and its byte budget for
			// request bodies (half of that, above the 32 MiB body limit) from this;
			// see "Memory for bodies is budgeted" in docs/ARCHITECTURE.md.
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
		RunAsUser:              65532,
		TokenExpirationSeconds: int64(minTokenExpiration / time.Second),
		MissingReference:       MissingReferenceDeny,
		ExcludedNamespaces:     []string{"kube-system"},
	}
}

// BindFlags registers the webhook's flags, all prefixed --webhook- or --limiter-,
// with o's current values as defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.Port, "webhook-port", o.Port, "HTTPS port of the sidecar-injection webhook.")
	fs.StringVar(&o.Image, "limiter-image", o.Image, "Image of the injected limiter sidecar.")
	fs.Func("limiter-image-pull-policy", "imagePullPolicy of the limiter: Always, IfNotPresent or Never (default IfNotPresent).", func(s string) error {
		switch p := corev1.PullPolicy(s); p {
		case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
			o.ImagePullPolicy = p
			return nil
		}
		return fmt.Errorf("want Always, IfNotPresent or Never")
	})
	fs.BoolVar(&o.NativeSidecar, "limiter-native-sidecar", o.NativeSidecar,
		"Inject the limiter as a native sidecar (init container with restartPolicy Always). Set false where the SidecarContainers feature gate is off: the limiter becomes the first plain container, whose postStart hook (limiter wait-ready) holds the app's start for up to two minutes until it is ready.")
	for _, q := range []struct {
		flag, help string
		list       *corev1.ResourceList
		name       corev1.ResourceName
	}{
		{"limiter-cpu-request", "CPU request of the limiter (pods override it with aiquota.dev/limiter-cpu-request).", &o.Resources.Requests, corev1.ResourceCPU},
		{"limiter-cpu-limit", "CPU limit of the limiter; empty for none (aiquota.dev/limiter-cpu-limit).", &o.Resources.Limits, corev1.ResourceCPU},
		{"limiter-memory-request", "Memory request of the limiter (aiquota.dev/limiter-memory-request).", &o.Resources.Requests, corev1.ResourceMemory},
		{"limiter-memory-limit", "Memory limit of the limiter; empty for none (aiquota.dev/limiter-memory-limit).", &o.Resources.Limits, corev1.ResourceMemory},
	} {
		fs.Func(q.flag, q.help+" Default "+quantityOf(*q.list, q.name)+".", func(s string) error {
			if *q.list == nil {
				*q.list = corev1.ResourceList{}
			}
			if s == "" {
				delete(*q.list, q.name)
				return nil
			}
			v, err := resource.ParseQuantity(s)
			if err != nil {
				return err
			}
			(*q.list)[q.name] = v
			return nil
		})
	}
	fs.Int64Var(&o.RunAsUser, "limiter-run-as-user", o.RunAsUser, "UID and GID of the limiter; 0 leaves them to the image and the platform (OpenShift).")
	fs.Func("limiter-token-expiration", "Lifetime of the limiter's projected control-channel token, at least 10m (default 10m).", func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		o.TokenExpirationSeconds = int64(d / time.Second)
		return nil
	})
	fs.StringVar(&o.MissingReference, "webhook-missing-reference", o.MissingReference,
		"What to do with a pod whose aiquota.dev/fallback-chain or provider-quota does not exist: deny (it is not created) or admit (created without the limiter, with a warning event).")
}

func quantityOf(l corev1.ResourceList, name corev1.ResourceName) string {
	if q, ok := l[name]; ok {
		return q.String()
	}
	return "none"
}

// complete checks the options and fills in what may be left zero.
func (o *Options) complete() error {
	var errs []error
	if strings.TrimSpace(o.Image) == "" {
		errs = append(errs, errors.New("the limiter image is empty (--limiter-image)"))
	}
	if o.ImagePullPolicy == "" {
		o.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if o.TokenExpirationSeconds == 0 {
		o.TokenExpirationSeconds = int64(minTokenExpiration / time.Second)
	}
	if o.TokenExpirationSeconds < int64(minTokenExpiration/time.Second) {
		errs = append(errs, fmt.Errorf("the token expiration is %ds; the API server requires at least %s (--limiter-token-expiration)", o.TokenExpirationSeconds, minTokenExpiration))
	}
	if o.RunAsUser < 0 {
		errs = append(errs, fmt.Errorf("--limiter-run-as-user is %d; want a UID, or 0 for the image's", o.RunAsUser))
	}
	switch o.MissingReference {
	case "":
		o.MissingReference = MissingReferenceDeny
	case MissingReferenceDeny, MissingReferenceAdmit:
	default:
		errs = append(errs, fmt.Errorf("--webhook-missing-reference is %q; want %q or %q", o.MissingReference, MissingReferenceDeny, MissingReferenceAdmit))
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := o.Resources.Requests[name]
		lim, hasLim := o.Resources.Limits[name]
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			errs = append(errs, fmt.Errorf("the limiter's default %s request %s exceeds its limit %s", name, req.String(), lim.String()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("webhook options: %w", err)
	}
	return nil
}
