package provider

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// SetModel and EnableStreamUsage are the rewrites applied to a copy of the body:
// the tests' oracles, which Rewrite's spliced segments must match byte for byte.
func SetModel(d Dialect, body []byte, model string) ([]byte, error) {
	if d == DialectGemini {
		return body, nil
	}
	edits, err := setModelEdits(body, model)
	if err != nil {
		return nil, err
	}
	return applyEdits(body, edits), nil
}

func EnableStreamUsage(body []byte) ([]byte, error) {
	edits, err := streamUsageEdits(body)
	if err != nil {
		return nil, err
	}
	return applyEdits(body, edits), nil
}

func applyEdits(body []byte, edits []edit) []byte {
	slices.SortFunc(edits, func(a, b edit) int { return a.start - b.start })
	n := len(body)
	for _, e := range edits {
		n += len(e.repl) - (e.end - e.start)
	}
	out := make([]byte, 0, n)
	prev := 0
	for _, e := range edits {
		out = append(out, body[prev:e.start]...)
		out = append(out, e.repl...)
		prev = e.end
	}
	return append(out, body[prev:]...)
}

func TestSetModel(t *testing.T) {
	tests := []struct {
		name    string
		d       Dialect
		body    string
		model   string
		want    string
		wantErr bool
	}{
		{"replaces", DialectOpenAI, `{"model":"a","messages":[]}`, "b", `{"model":"b","messages":[]}`, false},
		{"replaces with spacing kept", DialectAnthropic, "{ \"model\" : \"a\" ,\n \"max_tokens\": 1 }", "claude-x", "{ \"model\" : \"claude-x\" ,\n \"max_tokens\": 1 }", false},
		{"replaces non-string model", DialectOpenAI, `{"model":null}`, "b", `{"model":"b"}`, false},
		{"replaces every duplicate", DialectOpenAI, `{"model":"a","x":{"model":"inner"},"model":"c"}`, "b", `{"model":"b","x":{"model":"inner"},"model":"b"}`, false},
		{"replaces escaped key", DialectOpenAI, `{"mod\u0065l":"a"}`, "b", `{"mod\u0065l":"b"}`, false},
		{"inserts when absent", DialectOpenAI, `{"messages":[]}`, "b", `{"model":"b","messages":[]}`, false},
		{"inserts into empty object", DialectOpenAI, ` { } `, "b", ` {"model":"b" } `, false},
		{"escapes the model", DialectOpenAI, `{"model":"a"}`, "x\"y</z>", `{"model":"x\"y\u003c/z\u003e"}`, false},
		{"gemini is untouched", DialectGemini, `{"contents":[]}`, "b", `{"contents":[]}`, false},
		{"invalid json", DialectOpenAI, `{"model":`, "b", ``, true},
		{"not an object", DialectOpenAI, `["model"]`, "b", ``, true},
		{"empty", DialectAnthropic, ``, "b", ``, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.body)
			orig := string(in)
			got, err := SetModel(tt.d, in, tt.model)
			if (err != nil) != tt.wantErr {
				t.Fatalf("SetModel error = %v, wantErr %v", err, tt.wantErr)
			}
			if string(in) != orig {
				t.Errorf("SetModel modified its input: %q", in)
			}
			if tt.wantErr {
				return
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("SetModel (-want +got):\n%s", diff)
			}
			if !json.Valid(got) {
				t.Errorf("SetModel produced invalid JSON: %s", got)
			}
			if tt.d != DialectGemini {
				r, err := ParseRequest(DialectOpenAI, OpCompletions, "", got)
				if err != nil || r.Model != tt.model {
					t.Errorf("re-parsed model = %q, %v; want %q", r.Model, err, tt.model)
				}
			}
		})
	}
}

func TestEnableStreamUsage(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    string
		wantErr bool
	}{
		{"adds stream_options", `{"model":"m","stream":true}`, `{"stream_options":{"include_usage":true},"model":"m","stream":true}`, false},
		{"adds include_usage beside other options", `{"stream_options":{"x":1}}`, `{"stream_options":{"include_usage":true,"x":1}}`, false},
		{"adds include_usage to empty options", `{"stream_options":{}}`, `{"stream_options":{"include_usage":true}}`, false},
		{"sets false to true", `{"stream_options":{"include_usage":false}}`, `{"stream_options":{"include_usage":true}}`, false},
		{"replaces null options", `{"stream_options":null,"model":"m"}`, `{"stream_options":{"include_usage":true},"model":"m"}`, false},
		{"replaces garbage options", `{"stream_options":"yes"}`, `{"stream_options":{"include_usage":true}}`, false},
		{"handles duplicates", `{"stream_options":{"include_usage":false,"include_usage":null},"stream_options":{}}`, `{"stream_options":{"include_usage":true,"include_usage":true},"stream_options":{"include_usage":true}}`, false},
		{"empty object", `{}`, `{"stream_options":{"include_usage":true}}`, false},
		{"invalid", `{"stream":`, ``, true},
		{"array", `[]`, ``, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EnableStreamUsage([]byte(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("EnableStreamUsage error = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("EnableStreamUsage (-want +got):\n%s", diff)
			}
			if !json.Valid(got) {
				t.Errorf("invalid JSON: %s", got)
			}
		})
	}
	// A chat body with stream: true is then parsed as asking for usage.
	body, err := EnableStreamUsage([]byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRequest(DialectOpenAI, OpChatCompletions, "", body)
	if err != nil || !r.StreamUsageRequested {
		t.Errorf("after EnableStreamUsage, StreamUsageRequested = %v (%v), want true", r.StreamUsageRequested, err)
	}
}

func TestRewriteSegmentsMatchTheCopyingRewrites(t *testing.T) {
	bodies := []string{
		`{}`,
		`{"model":"a","messages":[],"stream":true}`,
		`{"messages":[{"role":"user","content":"hi"}],"stream":true}`,
		`{"model":"a","stream_options":{"foo":1},"model":"b"}`,
		`{"stream_options":null,"messages":[]}`,
		` { "stream_options" : { "include_usage" : false } } `,
	}
	for _, body := range bodies {
		t.Run(body, func(t *testing.T) {
			copied, err := SetModel(DialectOpenAI, []byte(body), "gpt-4o-mini")
			if err != nil {
				t.Fatal(err)
			}
			if copied, err = EnableStreamUsage(copied); err != nil {
				t.Fatal(err)
			}
			orig := []byte(body)
			r := NewRewrite(orig)
			if err := r.SetModel(DialectOpenAI, "gpt-4o-mini"); err != nil {
				t.Fatal(err)
			}
			if err := r.EnableStreamUsage(); err != nil {
				t.Fatal(err)
			}
			segs, n := r.Segments()
			joined := bytes.Join(segs, nil)
			if int64(len(joined)) != n {
				t.Errorf("length %d, segments hold %d", n, len(joined))
			}
			var want, got any
			if err := json.Unmarshal(copied, &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(joined, &got); err != nil {
				t.Fatalf("segments are not JSON: %v\n%s", err, joined)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("segments differ from the copying rewrites (-want +got):\n%s", diff)
			}
			// The body's bytes are sent from the body itself, not from a copy.
			if &segs[0][0] != &orig[0] {
				t.Error("the first segment is a copy of the body")
			}
		})
	}
}
