package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/test/harness"
)

// TestLocalDemo runs the README's main command (make run-local ARGS=--once) as a user
// would: the whole demo on its embedded default, which exits 0 only once the
// resources' status shows the sidecar's utilisation, the breaker it opened, the
// Claude requests failing over down the chain and coming back, with no failure the
// app saw.
func TestLocalDemo(t *testing.T) {
	root := testenv.Root()
	bins, err := harness.Build(t.Context(), root, t.TempDir(), "./hack/localenv")
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bins["localenv"], "--once", "--timeout=6m", "--state-dir", state)
	cmd.Dir = root
	// On a test timeout, interrupt it as Ctrl-C would, so that it stops its API
	// server and processes instead of orphaning them.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("the demo took %s", time.Since(start).Round(time.Second))
	if err != nil {
		processLog, _ := os.ReadFile(filepath.Join(state, "processes.log"))
		t.Fatalf("the demo failed: %v\n%s\nprocess logs:\n%s", err, out.String(), processLog)
	}
	got := out.String()
	if strings.Contains(got, "log.SetLogger(...) was never called") {
		t.Errorf("the demo prints controller-runtime's missing-logger stack trace:\n%s", got)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`providerquota\.quota\.aiquota\.dev/openai-tier3 condition met`),
		regexp.MustCompile(`fallbackchain\.quota\.aiquota\.dev/chat-default condition met`),
		regexp.MustCompile(`injected: \{"version":1,"mode":"native-sidecar"`),
		// A printer-column row with a sidecar reporting: RPM%, TPM%, SIDECARS 1,
		// LEASES 1 (its account lease from the manager), Ready.
		regexp.MustCompile(`providerquota\.quota\.aiquota\.dev/openai-tier3\s+openai\s+tier-3\s+\d+\s+\d+\s+1\s+1\s+True`),
		// The CircuitPolicy row with at least one open breaker.
		regexp.MustCompile(`circuitpolicy\.quota\.aiquota\.dev/standard\s+3\s+20s\s+[1-9]\d*\s+True`),
		// The chain row while Claude fails: requests moved on, another entry active.
		regexp.MustCompile(`fallbackchain\.quota\.aiquota\.dev/chat-default\s+gpt-5\.5\s+(deepseek-chat|gpt-4\.1-mini|gpt-5\.5)\s+[1-9]\d*\s+True`),
		// kubectl aiquota top --once, the plugin found on PATH by kubectl: the quota's
		// live utilisation (RPM% above 0) from its one reporting sidecar.
		regexp.MustCompile(`\$ kubectl aiquota top --once -n \S+\nQUOTA\s+PROVIDER\s+SIDECARS\s+RPM%[^\n]*\n(?:[^\n]+\n)*?openai-tier3\s+openai\s+1\s+[1-9]\d*%`),
		regexp.MustCompile(`The demo showed utilisation, an open breaker, failovers with ACTIVE moving down the chain, and the return to the first entry`),
	} {
		if !want.MatchString(got) {
			t.Errorf("the demo's output lacks %q:\n%s", want, got)
		}
	}
	if tallies := regexp.MustCompile(`app: \d+ ok, \d+ rate-limited, (\d+) failed`).FindAllStringSubmatch(got, -1); len(tallies) == 0 || tallies[len(tallies)-1][1] != "0" {
		t.Errorf("the app saw failures (or printed no tally); the chain should have served every call:\n%s", got)
	}
	// The saved pod is the one the webhook injected, and the limiter ran from it.
	pod, err := os.ReadFile(filepath.Join(state, "chat-app.pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(pod), "restartPolicy: Always") {
		t.Errorf("the saved pod has no native sidecar:\n%s", pod)
	}
}
