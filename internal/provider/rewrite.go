package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// setModelEdits are SetModel's edits of body.
func setModelEdits(body []byte, model string) ([]edit, error) {
	if err := checkObject(body); err != nil {
		return nil, fmt.Errorf("set model: %w", err)
	}
	val, err := json.Marshal(model)
	if err != nil {
		return nil, fmt.Errorf("set model: encode %q: %w", model, err)
	}
	var edits []edit
	eachMember(body, func(k []byte, esc bool, v []byte) bool {
		if keyIs(k, esc, "model") {
			start := offsetIn(body, v)
			edits = append(edits, edit{start, start + len(v), val})
		}
		return true
	})
	if len(edits) == 0 {
		edits = append(edits, insertMember(body, body, "model", val))
	}
	return edits, nil
}

// streamUsageEdits sets stream_options.include_usage to true in an OpenAI chat or
// legacy completions body, keeping any other stream options. With it the stream ends
// with a usage chunk (empty choices plus usage) before [DONE]
// (platform.openai.com/docs/api-reference/chat/create#chat-create-stream_options),
// which a StreamTracker can strip again. Not for Responses bodies: that API always
// reports usage and rejects the option.
func streamUsageEdits(body []byte) ([]edit, error) {
	if err := checkObject(body); err != nil {
		return nil, fmt.Errorf("enable stream usage: %w", err)
	}
	var edits []edit
	eachMember(body, func(k []byte, esc bool, v []byte) bool {
		if !keyIs(k, esc, "stream_options") {
			return true
		}
		start := offsetIn(body, v)
		if kindOf(v) != kindObject {
			edits = append(edits, edit{start, start + len(v), []byte(`{"include_usage":true}`)})
			return true
		}
		found := false
		eachMember(v, func(k []byte, esc bool, iv []byte) bool {
			if keyIs(k, esc, "include_usage") {
				found = true
				s := offsetIn(body, iv)
				edits = append(edits, edit{s, s + len(iv), []byte("true")})
			}
			return true
		})
		if !found {
			edits = append(edits, insertMember(body, v, "include_usage", []byte("true")))
		}
		return true
	})
	if len(edits) == 0 {
		edits = append(edits, insertMember(body, body, "stream_options", []byte(`{"include_usage":true}`)))
	}
	return edits, nil
}

// Rewrite is a request body with edits, sent without copying it: Segments are the
// body's own bytes between the edits and the edits' replacements, in order. Bodies
// may be megabytes (images, documents), where a copy per rewrite would double what
// the limiter holds.
type Rewrite struct {
	body  []byte
	edits []edit
}

// NewRewrite starts a rewrite of body, which must not change while it is in use.
func NewRewrite(body []byte) *Rewrite { return &Rewrite{body: body} }

// SetModel sets the body's top-level "model" to model (every occurrence, so a
// duplicate key cannot smuggle another model past the rewrite), or adds a "model"
// member when there is none. Gemini bodies are left alone: Gemini names the model in
// the path.
func (r *Rewrite) SetModel(d Dialect, model string) error {
	if d == DialectGemini {
		return nil
	}
	edits, err := setModelEdits(r.body, model)
	if err != nil {
		return err
	}
	r.edits = append(r.edits, edits...)
	return nil
}

// EnableStreamUsage sets stream_options.include_usage (see streamUsageEdits).
func (r *Rewrite) EnableStreamUsage() error {
	edits, err := streamUsageEdits(r.body)
	if err != nil {
		return err
	}
	r.edits = append(r.edits, edits...)
	return nil
}

// Segments are the rewritten body in pieces, and its length. Edits were each made
// against the original body and touch different members; two members inserted at
// the same place are joined with a comma where the first did not end in one.
func (r *Rewrite) Segments() ([][]byte, int64) {
	if len(r.edits) == 0 {
		return [][]byte{r.body}, int64(len(r.body))
	}
	slices.SortStableFunc(r.edits, func(a, b edit) int { return a.start - b.start })
	segs := make([][]byte, 0, 2*len(r.edits)+1)
	var n int64
	add := func(b []byte) {
		if len(b) > 0 {
			segs = append(segs, b)
			n += int64(len(b))
		}
	}
	prev := 0
	for i, e := range r.edits {
		add(r.body[prev:e.start])
		add(e.repl)
		if next := i + 1; next < len(r.edits) && r.edits[next].start == e.end && e.start == e.end &&
			r.edits[next].start == r.edits[next].end && (len(e.repl) == 0 || e.repl[len(e.repl)-1] != ',') {
			add([]byte{','})
		}
		prev = e.end
	}
	add(r.body[prev:])
	return segs, n
}

func checkObject(body []byte) error {
	if !json.Valid(body) {
		return errors.New("body is not valid JSON")
	}
	if i := skipSpace(body, 0); i == len(body) || body[i] != '{' {
		return errors.New("body is not a JSON object")
	}
	return nil
}

// edit replaces body[start:end] with repl.
type edit struct {
	start, end int
	repl       []byte
}

// offsetIn returns where sub starts within body. The walker hands out subslices
// made by plain slicing, so the difference in capacity is exactly the offset.
func offsetIn(body, sub []byte) int { return cap(body) - cap(sub) }

// insertMember returns the edit that adds "name":val as the first member of obj,
// an object value inside body.
func insertMember(body, obj []byte, name string, val []byte) edit {
	at := offsetIn(body, obj) + skipSpace(obj, 0) + 1 // just past '{'
	member := make([]byte, 0, len(name)+len(val)+4)
	member = append(member, '"')
	member = append(member, name...)
	member = append(member, '"', ':')
	member = append(member, val...)
	if j := skipSpace(body, at); j < len(body) && body[j] != '}' {
		member = append(member, ',')
	}
	return edit{at, at, member}
}
