// Package naming holds the names and paths that the reconcilers, the injection webhook
// and the rendered limiter config must agree on. Control plane only: the sidecar learns
// every path from its config file and flags.
package naming

import (
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strings"
)

// Annotations on pods.
const (
	// AnnotationInject opts a pod in: "true".
	AnnotationInject = "aiquota.dev/inject"
	// AnnotationFallbackChain names the FallbackChain (same namespace) the pod uses.
	AnnotationFallbackChain = "aiquota.dev/fallback-chain"
	// AnnotationProviderQuota names the ProviderQuota (same namespace) for direct use.
	AnnotationProviderQuota = "aiquota.dev/provider-quota"
	// AnnotationPriority is the pod's default request priority, 1 (interactive) .. 9 (batch).
	AnnotationPriority = "aiquota.dev/priority"
	// AnnotationAccessLogSample is the share of requests, 0..1, the sidecar writes an
	// access log line for (its --access-log-sample); unset means none.
	AnnotationAccessLogSample = "aiquota.dev/access-log-sample"
	// AnnotationLimiterPort is the sidecar's localhost proxy port.
	AnnotationLimiterPort = "aiquota.dev/limiter-port"
	// AnnotationInjected records what the webhook did (a JSON summary). It is the
	// webhook's own record: a pod counts as injected only when it carries it and a
	// limiter container of the shape the record describes, and the hub accepts a
	// sidecar's reports only about the chain or quota it names.
	AnnotationInjected = "aiquota.dev/injected"
	// AnnotationLimiterAdminPort is the sidecar's admin port (health, readiness,
	// metrics) on the pod IP; change it when an app container already uses AdminPort.
	AnnotationLimiterAdminPort = "aiquota.dev/limiter-admin-port"
	// AnnotationLimiterCPURequest, ...CPULimit, ...MemoryRequest and ...MemoryLimit
	// override the sidecar's resources (Kubernetes quantities, e.g. "100m", "64Mi").
	AnnotationLimiterCPURequest    = "aiquota.dev/limiter-cpu-request"
	AnnotationLimiterCPULimit      = "aiquota.dev/limiter-cpu-limit"
	AnnotationLimiterMemoryRequest = "aiquota.dev/limiter-memory-request"
	AnnotationLimiterMemoryLimit   = "aiquota.dev/limiter-memory-limit"
	// AnnotationOverrideEnv "true" lets the webhook replace base-URL variables
	// (OPENAI_BASE_URL, ...) that an app container already sets; by default a
	// user-set value wins.
	AnnotationOverrideEnv = "aiquota.dev/override-env"
)

// LabelInjection on a namespace, with the value InjectionDisabled, keeps the webhook
// away from every pod in it (the webhook configuration's namespaceSelector).
const (
	LabelInjection    = "aiquota.dev/injection"
	InjectionDisabled = "disabled"
)

// LabelLimiter marks a pod the webhook injected, with the value LimiterInjected, so
// monitoring and kubectl can select injected pods.
const (
	LabelLimiter    = "aiquota.dev/limiter"
	LimiterInjected = "injected"
)

// Labels and annotations on rendered ConfigMaps.
const (
	// LabelConfigFor marks a ConfigMap as rendered limiter config; its value is the
	// lower-case kind it was rendered for (the owner reference names the object).
	LabelConfigFor = "aiquota.dev/config-for"
	// LabelManagedBy is the standard managed-by label's value for our objects.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is LabelManagedBy's value.
	ManagedBy = "aiquota"
	// AnnotationConfigHash is the SHA-256 of the rendered config, for churn-free
	// re-renders and for sidecars to report which config they run.
	AnnotationConfigHash = "aiquota.dev/config-hash"
)

// Keys in a rendered ConfigMap.
const (
	ConfigKey = "limiter.json"
	CAKey     = "ca.crt"
)

// Paths inside an injected pod.
const (
	ConfigDir       = "/etc/aiquota"
	KeysDir         = "/var/run/aiquota/keys"
	TokenDir        = "/var/run/aiquota/token"
	TokenFile       = "token"
	TokenAudience   = "aiquota.dev/control"
	LimiterName     = "aiquota-limiter"
	DefaultPort     = 8787
	AdminPort       = 8788
	ConfigVolume    = "aiquota-config"
	TokenVolume     = "aiquota-token"
	KeyVolumePrefix = "aiquota-key-"
)

// LimiterBinary is the limiter's path in its image (the Dockerfile's limiter target).
const LimiterBinary = "/limiter"

// AdminPortName names the sidecar's admin containerPort, for probes and scraping.
const AdminPortName = "aiquota-admin"

// PlaceholderAPIKey is the value the webhook gives an app's unset SDK key
// variables. The official SDKs refuse to start without a key; the sidecar removes
// whatever key a request carries and adds the account's, so this one never leaves
// the pod. It says what it is to anyone who finds it in a pod spec.
const PlaceholderAPIKey = "aiquota-placeholder-the-sidecar-adds-the-real-key"

// ChainConfigMap is the ConfigMap rendered for a FallbackChain.
func ChainConfigMap(chain string) string { return boundedName("aiquota-fc-", chain) }

// QuotaConfigMap is the ConfigMap rendered for direct use of a ProviderQuota.
func QuotaConfigMap(quota string) string { return boundedName("aiquota-pq-", quota) }

// boundedName keeps prefix+name within the 253 characters of an object name; a name
// that would not fit is cut and suffixed with a hash of the whole, so it stays unique.
func boundedName(prefix, name string) string {
	const maxLen = 253
	if len(prefix)+len(name) <= maxLen {
		return prefix + name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "-" + hex.EncodeToString(sum[:])[:10]
	return prefix + name[:maxLen-len(prefix)-len(suffix)] + suffix
}

// ConfigPath is the limiter config file inside the pod.
func ConfigPath() string { return path.Join(ConfigDir, ConfigKey) }

// CAPath is the control channel's CA bundle inside the pod.
func CAPath() string { return path.Join(ConfigDir, CAKey) }

// TokenPath is the projected service-account token inside the pod.
func TokenPath() string { return path.Join(TokenDir, TokenFile) }

// KeyDir is where a credential Secret is mounted inside the pod.
func KeyDir(secret string) string { return path.Join(KeysDir, secret) }

// KeyFile is the mounted file of one Secret key.
func KeyFile(secret, key string) string { return path.Join(KeyDir(secret), key) }

// KeyID is the non-secret label of a credential in state, status and metrics.
func KeyID(secret, key string) string { return secret + "/" + key }

// KeyVolume names the pod volume of a credential Secret. Secret names may be 253
// characters but volume names only 63, so the name is hashed.
func KeyVolume(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return KeyVolumePrefix + hex.EncodeToString(sum[:])[:16]
}

// IsKeyVolume reports whether a volume name is one KeyVolume produces (or could):
// the prefix is reserved for the limiter's credential volumes.
func IsKeyVolume(name string) bool { return strings.HasPrefix(name, KeyVolumePrefix) }
