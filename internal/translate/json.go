package translate

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/aiquota/aiquota/internal/provider"
)

// Reading: bodies are walked with provider's exact-key walker (see
// provider.EachMember for why not encoding/json). Values stay slices of the input:
// a string moving from one dialect to another is copied as its JSON token, escapes
// and all, without being decoded, since every dialect is JSON.

// jstr is a JSON string token, quotes included, as it appears in a body.
type jstr []byte

// interior is the token without its quotes: still escaped, and valid JSON string
// content, so interiors of several tokens concatenate into a valid token.
func (s jstr) interior() []byte {
	if len(s) < 2 {
		return nil
	}
	return s[1 : len(s)-1]
}

// empty reports a missing or "" token.
func (s jstr) empty() bool { return len(s) <= 2 }

// String decodes the token; "" for a missing or invalid one.
func (s jstr) String() string {
	v, _ := provider.JSONString(s)
	return v
}

// is compares the decoded token with want without allocating when it has no escapes.
func (s jstr) is(want string) bool {
	in := s.interior()
	if bytes.IndexByte(in, '\\') < 0 {
		return string(in) == want
	}
	return s.String() == want
}

// kind is provider's classification of a raw value (provider.KindOf), read the
// translator's way: an absent value is "missing", and one that starts like no JSON
// value counts as a number, for the target's decoder to judge.
type kind uint8

const (
	kindMissing = kind(provider.KindInvalid)
	kindNull    = kind(provider.KindNull)
	kindBool    = kind(provider.KindBool)
	kindNumber  = kind(provider.KindNumber)
	kindString  = kind(provider.KindString)
	kindArray   = kind(provider.KindArray)
	kindObject  = kind(provider.KindObject)
)

func kindOf(v []byte) kind {
	k := kind(provider.KindOf(v))
	if k == kindMissing && len(v) > 0 {
		return kindNumber
	}
	return k
}

func (k kind) String() string {
	if k == kindMissing {
		return "missing"
	}
	return provider.JSONKind(k).String()
}

// absent reports a member that is missing or null: both mean "not stated".
func absent(v []byte) bool { k := kindOf(v); return k == kindMissing || k == kindNull }

// eachMember walks an object's members. Keys with escapes (rare, and legal) are
// decoded, so that "mod\u0065l" is read as model, as the parsers do.
func eachMember(obj []byte, fn func(key, val []byte) error) error {
	var err error
	provider.EachMember(obj, func(k []byte, esc bool, v []byte) bool {
		if esc {
			q := make([]byte, 0, len(k)+2)
			q = append(append(append(q, '"'), k...), '"')
			s, _ := provider.JSONString(q)
			k = []byte(s)
		}
		err = fn(k, v)
		return err == nil
	})
	return err
}

// picked holds the members pick found, in the order they were named.
type picked [8][]byte

// pick returns the values of obj's members with the given names (at most eight), in
// that order: nil for an absent member and, when a name repeats, the last value, as
// upstream decoders read it.
func pick(obj []byte, names ...string) picked { return pickFrom(obj, names, false) }

// pickFrom is pick, reading Gemini's two spellings of member names when gemini is
// set. It calls the walkers directly, not through a function value, so that what it
// picks stays on the stack.
func pickFrom(obj []byte, names []string, gemini bool) (p picked) {
	each := func(k, v []byte) error {
		for i, n := range names {
			if string(k) == n {
				p[i] = v
			}
		}
		return nil
	}
	if gemini {
		_ = geminiMembers(obj, each)
	} else {
		_ = eachMember(obj, each)
	}
	return p
}

// pickObject is pick for a body that must be a JSON object: ok is false when it is
// not one.
func pickObject(obj []byte, names ...string) (p picked, ok bool) {
	ok = provider.EachMember(obj, func(k []byte, esc bool, v []byte) bool {
		for i, n := range names {
			if provider.KeyIs(k, esc, n) {
				p[i] = v
			}
		}
		return true
	})
	return p, ok
}

func eachElement(arr []byte, fn func(i int, val []byte) error) error {
	var err error
	provider.EachElement(arr, func(i int, v []byte) bool {
		err = fn(i, v)
		return err == nil
	})
	return err
}

// isTrue reads a boolean member; anything but true is false.
func isTrue(v []byte) bool { return string(v) == "true" }

// Writing: bodies are built by appending to one buffer.

// appendString appends s as a JSON string token. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i += n
				start = i
				continue
			}
			i += n
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigit[c>>4], hexDigit[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

const hexDigit = "0123456789abcdef"

// appendRawString appends raw bytes (typically a JSON text) as a JSON string token.
func appendRawString(dst, raw []byte) []byte {
	return appendString(dst, unsafeString(raw))
}

// unsafeString views b as a string for the duration of a call that does not keep it.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func appendInt(dst []byte, n int64) []byte { return strconv.AppendInt(dst, n, 10) }

// appendKey appends "name": after a comma unless first.
func appendKey(dst []byte, first *bool, name string) []byte {
	if !*first {
		dst = append(dst, ',')
	}
	*first = false
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}

// compactInto appends v with insignificant whitespace removed; v must be valid.
// Arguments and schemas are compacted before being embedded in a string, so
// pretty-printed input does not carry its layout into the target.
func compactInto(dst, v []byte) []byte {
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, v); err != nil {
		return append(dst, v...)
	}
	return buf.Bytes()
}
