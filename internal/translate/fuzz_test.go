package translate

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/aiquota/aiquota/internal/provider"
)

// Fuzz targets for every decoder: requests of each source, answers and streams of
// each target, and Gemini schemas. Nothing may panic; output must be valid JSON
// (or a well-formed stream) and bounded by the input; any chunking of a stream
// gives the same bytes. Seeds are the golden inputs.

// maxGrowth bounds output against input: escaping JSON text into a string at most
// doubles it, and the fixed members each dialect adds are a few KB.
func bounded(in, out int) bool { return out <= 4*in+16<<10 }

func addSeeds(f *testing.F, pattern string, extra ...any) {
	files, _ := filepath.Glob(pattern)
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for i := range 4 {
			f.Add(append([]any{b, uint8(i)}, extra...)...)
		}
	}
}

func FuzzRequest(f *testing.F) {
	addSeeds(f, "testdata/request/*/*.json")
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		s := sources[int(which)%len(sources)]
		src := s.src
		if which&0x80 != 0 && src.Op == provider.OpGenerateContent {
			src.Op = provider.OpStreamGenerateContent
		}
		_, parseErr := provider.ParseRequest(src.Dialect, src.Op, "gemini-2.5-pro", body)
		for _, pt := range s.targets {
			tr, err := Request(src, body, Target{ProviderType: pt, Model: targetModel(pt)})
			if parseErr != nil || err != nil {
				continue // garbage in may fail; it must not panic
			}
			if !json.Valid(tr.Body) {
				t.Fatalf("%s to %s: invalid JSON out:\n%s\nfrom:\n%s", s.dir, pt, tr.Body, body)
			}
			if !bounded(len(body), len(tr.Body)) {
				t.Fatalf("%s to %s: %d bytes in, %d out", s.dir, pt, len(body), len(tr.Body))
			}
		}
	})
}

func FuzzResponse(f *testing.F) {
	addSeeds(f, "testdata/response/*/*.json")
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		td := targetDialects[int(which)%len(targetDialects)]
		for _, app := range appOps {
			tr := translation(app.dialect, app.op, td.dialect, td.providerType)
			out, err := tr.Response(body, now)
			if err != nil {
				continue
			}
			if !json.Valid(out) {
				t.Fatalf("%s to %s: invalid JSON out:\n%s\nfrom:\n%s", td.dir, app.name, out, body)
			}
			if !bounded(len(body), len(out)) {
				t.Fatalf("%s to %s: %d bytes in, %d out", td.dir, app.name, len(body), len(out))
			}
		}
	})
}

func FuzzStream(f *testing.F) {
	addSeeds(f, "testdata/stream/*/*.sse", uint8(5))
	f.Fuzz(func(t *testing.T, body []byte, which, chunk uint8) {
		td := targetDialects[int(which)%len(targetDialects)]
		for _, app := range appOps {
			tr := translation(app.dialect, app.op, td.dialect, td.providerType)
			tr.appSSE = which&0x80 == 0
			whole, s := runStream(tr, body, nil)
			if len(whole) == 0 {
				t.Fatalf("%s to %s: an empty stream; it must at least end with an error event", td.dir, app.name)
			}
			if !bounded(len(body), len(whole)) && !bounded(len(body)*8, len(whole)) {
				// The Responses API repeats the text in its closing events.
				t.Fatalf("%s to %s: %d bytes in, %d out", td.dir, app.name, len(body), len(whole))
			}
			pieces, _ := runStream(tr, body, []int{1 + int(chunk)%64})
			if !bytes.Equal(whole, pieces) {
				t.Fatalf("%s to %s: chunking changed the output\nwhole:\n%s\npieces:\n%s", td.dir, app.name, whole, pieces)
			}
			if app.dialect == provider.DialectGemini && !tr.appSSE && !json.Valid(whole) {
				t.Fatalf("%s to gemini array: not a JSON array:\n%s", td.dir, whole)
			}
			if app.dialect != provider.DialectGemini || tr.appSSE {
				checkSSE(t, whole)
			}
			_, _, _ = s.Failed()
		}
	})
}

// checkSSE checks that every event of an app stream has JSON data (or [DONE]).
func checkSSE(t *testing.T, out []byte) {
	t.Helper()
	if !bytes.HasSuffix(out, []byte("\n\n")) {
		t.Fatalf("the stream does not end with a whole event:\n%s", out)
	}
	for _, ev := range bytes.Split(bytes.TrimSuffix(out, []byte("\n\n")), []byte("\n\n")) {
		for _, line := range bytes.Split(ev, []byte("\n")) {
			data, ok := bytes.CutPrefix(line, []byte("data: "))
			if ok && string(data) != "[DONE]" && !json.Valid(data) {
				t.Fatalf("event data is not JSON: %s", data)
			}
		}
	}
}

func FuzzSchema(f *testing.F) {
	f.Add([]byte(`{"type":"OBJECT","properties":{"a":{"type":"STRING","nullable":true}},"required":["a"]}`))
	f.Add([]byte(`{"type":"ARRAY","items":{"anyOf":[{"type":"INTEGER","minimum":1},{"type":"NULL"}]},"min_items":"2"}`))
	f.Fuzz(func(t *testing.T, schema []byte) {
		if !json.Valid(schema) {
			return
		}
		out, err := openAPIToJSONSchema("s", schema)
		if err != nil {
			return
		}
		if !json.Valid(out) || !bounded(len(schema), len(out)) {
			t.Fatalf("bad conversion of %s:\n%s", schema, out)
		}
	})
}
