package translate

import (
	"bytes"
	"strings"

	"github.com/aiquota/aiquota/internal/provider"
)

// maxOutputTokens bounds a stated output budget, as provider.ParseRequest does.
const maxOutputTokens = 1<<31 - 1

// decoder builds a request from an app's body. Its helpers check the types of the
// members they read: provider.ParseRequest has checked only what the limiter
// needs, and a translation must not pass on a value the app's own provider would
// have refused.
type decoder struct {
	r *request
}

func newDecoder() *decoder { return &decoder{r: &request{}} }

// drop records an app field the translation leaves out.
func (d *decoder) drop(name string) { d.r.dropped = append(d.r.dropped, name) }

// dropIf drops a stated (non-null) member.
func (d *decoder) dropIf(name string, v []byte) {
	if !absent(v) {
		d.drop(name)
	}
}

// unknown drops a member the decoder does not know: a newer API's field, or a
// server-specific one. Its meaning is unknown, so it is reported, not guessed at.
func (d *decoder) unknown(prefix string, k, v []byte) {
	d.dropIf(prefix+string(k), v)
}

// known is pick for an object the app wrote, reporting every member it does not
// name under prefix as dropped (d.unknown), in the order they stand.
func (d *decoder) known(prefix string, obj []byte, names ...string) (p picked, err error) {
	err = eachMember(obj, func(k, v []byte) error {
		for i, n := range names {
			if string(k) == n {
				p[i] = v
				return nil
			}
		}
		d.unknown(prefix, k, v)
		return nil
	})
	return p, err
}

func (d *decoder) number(name string, v []byte) (param, error) {
	switch kindOf(v) {
	case kindMissing, kindNull:
		return param{}, nil
	case kindNumber:
		return param{v: v, name: name}, nil
	}
	return param{}, malformed(name, "%s must be a number, got %s", name, kindOf(v))
}

func (d *decoder) count(name string, v []byte) (int64, error) {
	if absent(v) {
		return 0, nil
	}
	n, ok := provider.JSONInt(v, maxOutputTokens)
	if !ok {
		return 0, malformed(name, "%s must be a non-negative integer up to %d", name, int64(maxOutputTokens))
	}
	return n, nil
}

func (d *decoder) boolean(name string, v []byte) (bool, error) {
	switch kindOf(v) {
	case kindMissing, kindNull:
		return false, nil
	case kindBool:
		return isTrue(v), nil
	}
	return false, malformed(name, "%s must be a boolean, got %s", name, kindOf(v))
}

func stringTok(name string, v []byte) (jstr, error) {
	if kindOf(v) != kindString {
		return nil, malformed(name, "%s must be a string, got %s", name, kindOf(v))
	}
	return jstr(v), nil
}

// optString reads an optional string member.
func optString(name string, v []byte) (jstr, error) {
	if absent(v) {
		return nil, nil
	}
	return stringTok(name, v)
}

// schemaValue reads a JSON Schema member, which must be an object.
func schemaValue(name string, v []byte) ([]byte, error) {
	switch kindOf(v) {
	case kindMissing, kindNull:
		return nil, nil
	case kindObject:
		return v, nil
	}
	return nil, malformed(name, "%s must be a JSON Schema object, got %s", name, kindOf(v))
}

// stops reads stop sequences: a string or an array of strings.
func (d *decoder) stops(name string, v []byte) error {
	switch kindOf(v) {
	case kindMissing, kindNull:
		return nil
	case kindString:
		d.r.stop = param{v: v, name: name}
		d.r.stopSeqs = []jstr{jstr(v)}
		return nil
	case kindArray:
	default:
		return malformed(name, "%s must be a string or an array of strings, got %s", name, kindOf(v))
	}
	d.r.stop = param{v: v, name: name}
	return eachElement(v, func(_ int, s []byte) error {
		tok, err := stringTok(name+"[]", s)
		if err == nil {
			d.r.stopSeqs = append(d.r.stopSeqs, tok)
		}
		return err
	})
}

// addMessage appends parts as a message of role; a message with no parts (an empty
// text, say) is left out, since every target refuses empty content.
func (d *decoder) addMessage(ro role, parts []part) {
	if len(parts) == 0 {
		return
	}
	d.r.messages = append(d.r.messages, message{role: ro, parts: parts})
}

// appendToAssistant adds parts to the last message when it is the assistant's,
// else starts one: OpenAI Responses splits one assistant turn into items.
func (d *decoder) appendToAssistant(parts ...part) {
	if n := len(d.r.messages); n > 0 && d.r.messages[n-1].role == roleAssistant {
		d.r.messages[n-1].parts = append(d.r.messages[n-1].parts, parts...)
		return
	}
	d.addMessage(roleAssistant, parts)
}

// textPart is a text part, or nothing for "".
func textPart(parts []part, tok jstr) []part {
	if tok.empty() {
		return parts
	}
	return append(parts, part{kind: partText, text: tok})
}

// imageURL reads an image given by URL: a data: URL becomes inline data (base64
// only), anything else must be http(s).
func imageURL(name string, tok jstr) (part, error) {
	in := tok.interior()
	if len(in) >= 5 && strings.EqualFold(string(in[:5]), "data:") {
		comma := bytes.IndexByte(in, ',')
		if comma < 0 {
			return part{}, malformed(name, "%s is a data: URL without data", name)
		}
		// The header is short; decode it (it may hold escapes such as \/).
		q := make([]byte, 0, comma+2)
		q = append(append(append(q, '"'), in[:comma]...), '"')
		header, _ := provider.JSONString(q)
		mediaType, b64 := strings.CutSuffix(header[len("data:"):], ";base64")
		if !b64 {
			return part{}, unsupported(name, "only base64 data: URLs can be sent as inline image data")
		}
		if i := strings.IndexByte(mediaType, ';'); i >= 0 {
			mediaType = mediaType[:i] // parameters such as charset do not apply to images
		}
		return part{kind: partImage, mediaType: strings.ToLower(mediaType), data: in[comma+1:]}, nil
	}
	s := tok.String()
	if !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://") {
		return part{}, unsupported(name, "only http(s) and data: image URLs can be translated")
	}
	return part{kind: partImage, url: tok}, nil
}
