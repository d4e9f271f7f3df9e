package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
	"github.com/aiquota/aiquota/internal/testkit"
)

// now is the fixed clock of every golden translation.
var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// sources are the app dialects the golden requests are written in, by testdata
// directory, with the targets each is translated for.
var sources = []struct {
	dir     string
	src     Source
	targets []string
}{
	{"chat", Source{Dialect: provider.DialectOpenAI, Op: provider.OpChatCompletions}, []string{limiterconfig.ProviderAnthropic, limiterconfig.ProviderGemini}},
	{"responses", Source{Dialect: provider.DialectOpenAI, Op: provider.OpResponses}, []string{limiterconfig.ProviderOpenAICompatible, limiterconfig.ProviderDeepSeek, limiterconfig.ProviderAnthropic, limiterconfig.ProviderGemini}},
	{"messages", Source{Dialect: provider.DialectAnthropic, Op: provider.OpMessages}, []string{limiterconfig.ProviderOpenAI, limiterconfig.ProviderDeepSeek, limiterconfig.ProviderGemini}},
	{"gemini", Source{Dialect: provider.DialectGemini, Op: provider.OpGenerateContent}, []string{limiterconfig.ProviderOpenAI, limiterconfig.ProviderDeepSeek, limiterconfig.ProviderAnthropic}},
}

// appOp is an app side answers are translated into, named as its golden files'
// suffix.
type appOp struct {
	name    string
	dialect provider.Dialect
	op      provider.Operation
}

// appOps are the app sides answers are translated into.
var appOps = []appOp{
	{"chat", provider.DialectOpenAI, provider.OpChatCompletions},
	{"responses", provider.DialectOpenAI, provider.OpResponses},
	{"messages", provider.DialectAnthropic, provider.OpMessages},
	{"gemini", provider.DialectGemini, provider.OpStreamGenerateContent},
}

// targetDialect is an upstream dialect of golden answers, in testdata directory dir.
type targetDialect struct {
	dir          string
	dialect      provider.Dialect
	providerType string
}

// targetDialects are the upstream dialects of golden answers.
var targetDialects = []targetDialect{
	{"openai", provider.DialectOpenAI, limiterconfig.ProviderOpenAICompatible},
	{"anthropic", provider.DialectAnthropic, limiterconfig.ProviderAnthropic},
	{"gemini", provider.DialectGemini, limiterconfig.ProviderGemini},
}

func targetModel(providerType string) string {
	switch providerType {
	case limiterconfig.ProviderAnthropic:
		return "claude-sonnet-4-5"
	case limiterconfig.ProviderGemini:
		return "gemini-2.5-flash"
	case limiterconfig.ProviderDeepSeek:
		return "deepseek-chat"
	}
	return "gpt-5.5"
}

// translation makes the Translation of an answer from target to app without a
// request, as the proxy would have it after Request.
func translation(app provider.Dialect, op provider.Operation, target provider.Dialect, providerType string) *Translation {
	return &Translation{app: app, appOp: op, target: target, providerType: providerType,
		Stream: true, includeUsage: true, appSSE: true}
}

func indent(t *testing.T, body []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, body, "", "  "); err != nil {
		t.Fatalf("output is not valid JSON: %v\n%s", err, body)
	}
	return append(buf.Bytes(), '\n')
}

func cases(t *testing.T, dir, ext string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*"+ext))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test cases in testdata/%s (%v)", dir, err)
	}
	return files
}

// renderRequest is the golden text of one request translation.
func renderRequest(t *testing.T, tr *Translation, err error) []byte {
	t.Helper()
	var b bytes.Buffer
	var ue *UnsupportedError
	var re *provider.RequestError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(&b, "unsupported: %s\n", ue.Error())
		return b.Bytes()
	case errors.As(err, &re):
		fmt.Fprintf(&b, "malformed (%d, param %q): %s\n", re.Status, re.Param, re.Message)
		return b.Bytes()
	case err != nil:
		t.Fatalf("unexpected error type %T: %v", err, err)
	}
	path := tr.Path
	if tr.RawQuery != "" {
		path += "?" + tr.RawQuery
	}
	fmt.Fprintf(&b, "POST %s\n", path)
	if len(tr.Dropped) > 0 {
		fmt.Fprintf(&b, "x-aiquota-dropped: %s\n", tr.DroppedHeader())
	}
	b.Write(indent(t, tr.Body))
	return b.Bytes()
}

func TestGoldenRequests(t *testing.T) {
	for _, s := range sources {
		for _, file := range cases(t, filepath.Join("request", s.dir), ".json") {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			base := strings.TrimSuffix(file, ".json")
			for _, pt := range s.targets {
				t.Run(filepath.Base(base)+"/"+s.dir+"-to-"+pt, func(t *testing.T) {
					src := s.src
					if strings.Contains(base, "stream") && src.Op == provider.OpGenerateContent {
						src.Op = provider.OpStreamGenerateContent
						src.RawQuery = "alt=sse"
					}
					if _, err := provider.ParseRequest(src.Dialect, src.Op, "gemini-2.5-pro", body); err != nil {
						t.Fatalf("the case is not a request the proxy accepts: %v", err)
					}
					tr, err := Request(src, body, Target{ProviderType: pt, Model: targetModel(pt), MaxOutputTokens: 4096})
					testkit.Golden(t, base+".to-"+pt+".golden", renderRequest(t, tr, err))
					if err == nil {
						checkTargetRequest(t, provider.DialectOf(pt), tr.Body)
					}
				})
			}
		}
	}
}

// eachAnswer runs check as a subtest for every golden upstream answer in
// testdata/<kind>/<dialect>/*<ext> and every app side it is translated into (its
// own dialect only through Responses), with the answer and its golden file.
func eachAnswer(t *testing.T, kind, ext string, check func(t *testing.T, td targetDialect, app appOp, upstream []byte, golden string)) {
	for _, td := range targetDialects {
		for _, file := range cases(t, filepath.Join(kind, td.dir), ext) {
			upstream, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			base := strings.TrimSuffix(file, ext)
			for _, app := range appOps {
				if app.dialect == td.dialect && app.op != provider.OpResponses {
					continue
				}
				t.Run(filepath.Base(base)+"/"+td.dir+"-to-"+app.name, func(t *testing.T) {
					check(t, td, app, upstream, base+".to-"+app.name+".golden")
				})
			}
		}
	}
}

func TestGoldenResponses(t *testing.T) {
	eachAnswer(t, "response", ".json", func(t *testing.T, td targetDialect, app appOp, body []byte, golden string) {
		tr := translation(app.dialect, app.op, td.dialect, td.providerType)
		out, err := tr.Response(body, now)
		var got []byte
		if err != nil {
			got = []byte("error: " + err.Error() + "\n")
		} else {
			got = indent(t, out)
			checkAppResponse(t, app.op, out, body, td.dialect)
		}
		testkit.Golden(t, golden, got)
	})
}

// runStream feeds upstream to a new Stream in chunks of the given sizes (cycled;
// nil means all at once) and returns everything it wrote.
func runStream(tr *Translation, upstream []byte, chunks []int) ([]byte, *Stream) {
	s := tr.NewStream(now)
	var out []byte
	for i := 0; len(upstream) > 0; i++ {
		n := len(upstream)
		if len(chunks) > 0 {
			n = min(n, chunks[i%len(chunks)])
		}
		out = append(out, s.Write(upstream[:n])...)
		upstream = upstream[n:]
	}
	return append(out, s.Flush()...), s
}

func TestGoldenStreams(t *testing.T) {
	eachAnswer(t, "stream", ".sse", func(t *testing.T, td targetDialect, app appOp, upstream []byte, golden string) {
		tr := translation(app.dialect, app.op, td.dialect, td.providerType)
		got, s := runStream(tr, upstream, nil)
		testkit.Golden(t, golden, got)
		// Any chunking gives the same stream: byte by byte, and in
		// random pieces, as a network delivers them.
		if one, _ := runStream(tr, upstream, []int{1}); !bytes.Equal(one, got) {
			t.Errorf("byte-by-byte chunking changed the output:\n%s", one)
		}
		rng := rand.New(rand.NewPCG(1, uint64(len(upstream))))
		sizes := make([]int, 16)
		for i := range sizes {
			sizes[i] = 1 + rng.IntN(40)
		}
		if some, _ := runStream(tr, upstream, sizes); !bytes.Equal(some, got) {
			t.Errorf("chunks of %v changed the output:\n%s", sizes, some)
		}
		// Accounting sees what an untranslated stream would.
		tracker := provider.NewStreamTracker(td.dialect, false)
		tracker.Write(upstream)
		tracker.Flush()
		wu, wok := tracker.Usage()
		gu, gok := s.Usage()
		if wu != gu || wok != gok || tracker.Done() != s.Done() {
			t.Errorf("usage %+v/%v done %v, want the tracker's %+v/%v done %v", gu, gok, s.Done(), wu, wok, tracker.Done())
		}
		checkAppStream(t, app.op, got, s)
	})
}
