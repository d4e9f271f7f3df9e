package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/testkit"
)

// statusCerts writes a CA (ca.crt) and a serving certificate for 127.0.0.1
// (tls.crt, tls.key) into a new directory, as the control channel's cert dir.
func statusCerts(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := testkit.MustCA(t, "aiquota e2e CA").WriteServing(dir, "aiquota-control"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// statusEventually polls cond until it returns nil or the deadline passes.
func statusEventually(t testing.TB, what string, timeout time.Duration, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
	return 0
}

// kubectlTable runs the real kubectl and returns its table, one map per row keyed
// by column header, per resource kind in the order printed.
func kubectlTable(t *testing.T, kubectl, kubeconfig string, args ...string) ([][]map[string]string, string) {
	t.Helper()
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return parseTables(string(out)), string(out)
}

// parseTables splits kubectl's output into tables (separated by blank lines) and
// reads each row by the header's column positions, so empty cells stay empty.
func parseTables(out string) [][]map[string]string {
	var tables [][]map[string]string
	for _, block := range strings.Split(strings.TrimSpace(out), "\n\n") {
		lines := strings.Split(block, "\n")
		if len(lines) == 0 {
			continue
		}
		header := lines[0]
		var starts []int
		var names []string
		for i := 0; i < len(header); {
			if header[i] == ' ' {
				i++
				continue
			}
			j := i
			// A column name ends at two spaces (or the end); names hold single spaces.
			for j < len(header) && (header[j] != ' ' || (j+1 < len(header) && header[j+1] != ' ')) {
				j++
			}
			starts = append(starts, i)
			names = append(names, header[i:j])
			i = j
		}
		var rows []map[string]string
		for _, line := range lines[1:] {
			row := map[string]string{}
			for c, s := range starts {
				end := len(line)
				if c+1 < len(starts) {
					end = min(starts[c+1], len(line))
				}
				if s < len(line) {
					row[names[c]] = strings.TrimSpace(line[s:end])
				}
			}
			rows = append(rows, row)
		}
		tables = append(tables, rows)
	}
	return tables
}

// statusChat sends one chat completion through the limiter and returns the status.
func statusChat(proxy, model string) (int, string) {
	body := fmt.Sprintf(`{"model":%q,"max_tokens":50,"messages":[{"role":"user","content":"How close are we to our quota?"}]}`, model)
	resp, err := http.Post("http://"+proxy+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// statusScrape fetches a Prometheus text page and returns the value of the first
// sample whose line starts with prefix.
func statusScrape(url, prefix string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			return f[len(f)-1], nil
		}
	}
	return "", fmt.Errorf("no sample %s", prefix)
}
