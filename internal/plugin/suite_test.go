package plugin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/aiquota/aiquota/internal/scheme"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
)

// testNow is the clock of every rendering; testdata/cluster.yaml's times are
// seconds to minutes before it.
var testNow = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// cluster is a real API server holding testdata/cluster.yaml, status included.
type cluster struct {
	env        *testenv.Env
	c          client.Client
	dir        string // holds the kubeconfig
	kubeconfig string
}

// sharedCluster is started by the first test that needs it (apiServer).
var sharedCluster = testenv.Lazy[*cluster]{Start: startCluster, Stop: (*cluster).stop}

func TestMain(m *testing.M) {
	logf.SetLogger(logr.Discard())
	sharedCluster.Main(m)
}

func startCluster() (*cluster, error) {
	env, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	cl := &cluster{env: env, c: env.Client}
	fail := func(err error) (*cluster, error) {
		_ = cl.stop()
		return nil, err
	}
	if cl.dir, err = os.MkdirTemp("", "kubectl-aiquota-"); err != nil {
		return fail(err)
	}
	if cl.kubeconfig, err = env.WriteKubeconfig(cl.dir); err != nil {
		return fail(err)
	}
	if err := cl.load(context.Background(), filepath.Join("testdata", "cluster.yaml")); err != nil {
		return fail(err)
	}
	return cl, nil
}

func (cl *cluster) stop() error {
	if cl.dir != "" {
		_ = os.RemoveAll(cl.dir)
	}
	return cl.env.Stop()
}

func apiServer(t *testing.T) *cluster {
	t.Helper()
	return sharedCluster.Get(t)
}

// load creates every object of a YAML file and then writes the status it carries
// through the status subresource, as the reconcilers and the hub do: a create
// drops status.
func (cl *cluster) load(ctx context.Context, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := serializer.NewCodecFactory(scheme.New()).UniversalDeserializer()
	namespaces := map[string]bool{}
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		o, _, err := dec.Decode(js, nil, nil)
		if err != nil {
			return fmt.Errorf("decode %s: %w", path, err)
		}
		obj := o.(client.Object)
		if ns := obj.GetNamespace(); !namespaces[ns] {
			namespaces[ns] = true
			if err := cl.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
				return fmt.Errorf("create namespace %s: %w", ns, err)
			}
			// No controller manager runs here to create it; pods need it.
			if err := cl.c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}); err != nil {
				return fmt.Errorf("create service account in %s: %w", ns, err)
			}
		}
		withStatus := obj.DeepCopyObject().(client.Object)
		if err := cl.c.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
		}
		withStatus.SetResourceVersion(obj.GetResourceVersion())
		if err := cl.c.Status().Update(ctx, withStatus); err != nil {
			return fmt.Errorf("write status of %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
		}
	}
	return nil
}

// run runs kubectl-aiquota in this process with args against the cluster, on the
// tests' clock.
func (cl *cluster) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newCommand(Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, func() time.Time { return testNow })
	cmd.SetArgs(append([]string{"--kubeconfig", cl.kubeconfig}, args...))
	err := cmd.ExecuteContext(t.Context())
	if errOut.Len() > 0 {
		t.Logf("stderr: %s", errOut.String())
	}
	return out.String(), err
}

// checkGolden compares got with testdata/<name>.golden, or rewrites it under -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	testkit.Golden(t, filepath.Join("testdata", name+".golden"), []byte(got))
}
