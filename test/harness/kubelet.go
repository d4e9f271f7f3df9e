package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/naming"
)

// Kubelet plays the kubelet's part for an injected pod's limiter sidecar, where no
// kubelet runs: it materialises the volumes the container mounts (ConfigMap, Secret
// keys, projected service-account tokens) under Root, and gives the container's
// args and env with container paths mapped to the materialised files. It starts
// nothing itself; Start runs the binary.
type Kubelet struct {
	Client    client.Client
	Clientset kubernetes.Interface
	Pod       *corev1.Pod
	Root      string

	// mounts are the container's mount paths, longest first.
	mounts []string
	tokens []projectedToken
}

type projectedToken struct {
	source corev1.ServiceAccountTokenProjection
	path   string
}

// Sidecar returns the pod's limiter container, which must be a native sidecar.
func (k *Kubelet) Sidecar() (corev1.Container, error) {
	for _, c := range k.Pod.Spec.InitContainers {
		if c.Name == naming.LimiterName {
			if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				return c, errors.New("the limiter is not a native sidecar (restartPolicy Always)")
			}
			return c, nil
		}
	}
	return corev1.Container{}, fmt.Errorf("pod %s/%s has no %s init container", k.Pod.Namespace, k.Pod.Name, naming.LimiterName)
}

// PlainLimiter returns the pod's limiter when it is injected as a plain container,
// which must come first so that the kubelet starts it (and runs its postStart hook)
// before the app.
func (k *Kubelet) PlainLimiter() (corev1.Container, error) {
	for i, c := range k.Pod.Spec.Containers {
		if c.Name == naming.LimiterName {
			if i != 0 {
				return c, fmt.Errorf("the limiter is container %d; it must be the first", i)
			}
			return c, nil
		}
	}
	return corev1.Container{}, fmt.Errorf("pod %s/%s has no %s container", k.Pod.Namespace, k.Pod.Name, naming.LimiterName)
}

// HostPath maps a path inside the container to the materialised file; a path no
// mount covers could not be read in a real pod either.
func (k *Kubelet) HostPath(p string) (string, error) {
	for _, m := range k.mounts {
		if p == m || strings.HasPrefix(p, m+"/") {
			return filepath.Join(k.Root, p), nil
		}
	}
	return "", fmt.Errorf("%s is outside every volume the container mounts (%v): it could not read it", p, k.mounts)
}

// Prepare materialises the container's volumes and returns its args and env with
// container paths mapped to the materialised ones. It refuses what a real pod
// would not allow the limiter to do: writable or subPath mounts (a subPath mount
// never sees ConfigMap updates), a Secret volume exposing every key, a config that
// names files outside the mounts.
func (k *Kubelet) Prepare(ctx context.Context, c corev1.Container) (args, env []string, err error) {
	volumes := map[string]corev1.Volume{}
	for _, v := range k.Pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" || !m.ReadOnly {
			return nil, nil, fmt.Errorf("mount %s: subPath %q, readOnly %v; want a read-only mount of the whole volume", m.Name, m.SubPath, m.ReadOnly)
		}
		v, ok := volumes[m.Name]
		if !ok {
			return nil, nil, fmt.Errorf("mount %s names no volume", m.Name)
		}
		if err := k.materialise(ctx, v, filepath.Join(k.Root, m.MountPath)); err != nil {
			return nil, nil, err
		}
		k.mounts = append(k.mounts, m.MountPath)
	}
	slices.SortFunc(k.mounts, func(a, b string) int { return len(b) - len(a) })

	if !slices.Equal(c.Command, []string{naming.LimiterBinary}) {
		return nil, nil, fmt.Errorf("command is %q, want the limiter binary %s (the caller runs its build of it)", c.Command, naming.LimiterBinary)
	}
	cfgPath := ""
	for i := 0; i+1 < len(c.Args); i++ {
		if c.Args[i] == "--config" {
			cfgPath = c.Args[i+1]
		}
	}
	if cfgPath != naming.ConfigPath() {
		return nil, nil, fmt.Errorf("--config is %q, want %q", cfgPath, naming.ConfigPath())
	}
	if err := k.remapConfig(cfgPath); err != nil {
		return nil, nil, err
	}
	for i := 0; i < len(c.Args); i++ {
		args = append(args, c.Args[i])
		if c.Args[i] == "--config" && i+1 < len(c.Args) {
			p, err := k.HostPath(c.Args[i+1])
			if err != nil {
				return nil, nil, err
			}
			args = append(args, p)
			i++
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil:
			v, err := k.field(e.ValueFrom.FieldRef.FieldPath)
			if err != nil {
				return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env = append(env, e.Name+"="+v)
		default:
			return nil, nil, fmt.Errorf("env %s: this kubelet resolves fieldRef only", e.Name)
		}
	}
	return args, env, nil
}

// remapConfig rewrites the key, token and CA paths the rendered config names by
// their container paths to the materialised files.
func (k *Kubelet) remapConfig(cfgPath string) error {
	host, err := k.HostPath(cfgPath)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(host)
	if err != nil {
		return fmt.Errorf("the rendered config is not where --config says: %w", err)
	}
	cfg, err := limiterconfig.Parse(data)
	if err != nil {
		return fmt.Errorf("the rendered config does not parse: %w", err)
	}
	remap := func(p *string) error {
		h, err := k.HostPath(*p)
		*p = h
		return err
	}
	for i := range cfg.Providers {
		for j := range cfg.Providers[i].Keys {
			if err := remap(&cfg.Providers[i].Keys[j].File); err != nil {
				return err
			}
		}
	}
	if cfg.Control != nil {
		if err := remap(&cfg.Control.TokenFile); err != nil {
			return err
		}
		if cfg.Control.CAFile != "" {
			if err := remap(&cfg.Control.CAFile); err != nil {
				return err
			}
		}
	}
	out, err := limiterconfig.Marshal(cfg)
	if err != nil {
		return err
	}
	return writeFile(host, out)
}

// KeepTokensFresh re-requests the projected tokens at 80% of their lifetime, as the
// kubelet does, until ctx ends.
func (k *Kubelet) KeepTokensFresh(ctx context.Context) {
	for _, tok := range k.tokens {
		go func() {
			life := time.Hour
			if s := tok.source.ExpirationSeconds; s != nil {
				life = time.Duration(*s) * time.Second
			}
			t := time.NewTicker(life * 8 / 10)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					// A failed refresh leaves the old token; the next tick tries again.
					_ = k.writeToken(ctx, tok.source, tok.path)
				}
			}
		}()
	}
}

func (k *Kubelet) field(fieldPath string) (string, error) {
	switch fieldPath {
	case "metadata.name":
		return k.Pod.Name, nil
	case "metadata.namespace":
		return k.Pod.Namespace, nil
	case "metadata.uid":
		return string(k.Pod.UID), nil
	}
	return "", fmt.Errorf("fieldRef %s is not resolved by this kubelet", fieldPath)
}

func (k *Kubelet) materialise(ctx context.Context, v corev1.Volume, dir string) error {
	switch {
	case v.ConfigMap != nil:
		var cm corev1.ConfigMap
		if err := k.Client.Get(ctx, types.NamespacedName{Namespace: k.Pod.Namespace, Name: v.ConfigMap.Name}, &cm); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if len(v.ConfigMap.Items) > 0 {
			return fmt.Errorf("volume %s projects items; the whole ConfigMap keeps updates visible", v.Name)
		}
		for key, val := range cm.Data {
			if err := writeFile(filepath.Join(dir, key), []byte(val)); err != nil {
				return err
			}
		}
	case v.Secret != nil:
		var s corev1.Secret
		if err := k.Client.Get(ctx, types.NamespacedName{Namespace: k.Pod.Namespace, Name: v.Secret.SecretName}, &s); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if len(v.Secret.Items) == 0 {
			return fmt.Errorf("volume %s mounts every key of Secret %s", v.Name, s.Name)
		}
		for _, it := range v.Secret.Items {
			val, ok := s.Data[it.Key]
			if !ok {
				return fmt.Errorf("volume %s: Secret %s has no key %s", v.Name, s.Name, it.Key)
			}
			if err := writeFile(filepath.Join(dir, it.Path), val); err != nil {
				return err
			}
		}
	case v.Projected != nil:
		for _, src := range v.Projected.Sources {
			sat := src.ServiceAccountToken
			if sat == nil {
				return fmt.Errorf("volume %s: this kubelet projects service-account tokens only", v.Name)
			}
			path := filepath.Join(dir, sat.Path)
			if err := k.writeToken(ctx, *sat, path); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
			k.tokens = append(k.tokens, projectedToken{source: *sat, path: path})
		}
	default:
		return fmt.Errorf("volume %s: unsupported source", v.Name)
	}
	return nil
}

// writeToken requests a token bound to the pod, as the kubelet does for a projected
// service-account token volume.
func (k *Kubelet) writeToken(ctx context.Context, sat corev1.ServiceAccountTokenProjection, path string) error {
	tr, err := k.Clientset.CoreV1().ServiceAccounts(k.Pod.Namespace).CreateToken(ctx, k.Pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{sat.Audience},
			ExpirationSeconds: sat.ExpirationSeconds,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: k.Pod.Name, UID: k.Pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("TokenRequest for %s: %w", k.Pod.Spec.ServiceAccountName, err)
	}
	return writeFile(path, []byte(tr.Status.Token))
}

// writeFile replaces a file atomically, as a kubelet's volume update does.
func writeFile(path string, content []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("materialise %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o444); err != nil {
		return fmt.Errorf("materialise %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("materialise %s: %w", path, err)
	}
	return nil
}
