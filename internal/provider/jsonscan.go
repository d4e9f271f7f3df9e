package provider

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// A small JSON walker for the hot paths. encoding/json decodes into structs with
// case-insensitive key matching, which is wrong for us: an app sending both "model"
// and "Model" would be accounted under one and served under the other. The walker
// matches keys exactly, allocates nothing, and lets parsers look only at the members
// they need. It never panics: every index is bounds-checked, so garbage input yields
// ok=false rather than a crash. Request parsing runs json.Valid first, so its walks
// see well-formed input; response and stream parsing walk untrusted bytes directly.

// skipSpace returns the index of the first non-whitespace byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString expects b[i] == '"' and returns the index just past the closing quote,
// and whether the string contains escapes.
func skipString(b []byte, i int) (end int, escaped, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false, false
	}
	// Most strings have no escapes: find the closing quote with IndexByte and
	// check that no backslash precedes it, before walking byte by byte.
	j := i + 1
	if q := bytes.IndexByte(b[j:], '"'); q < 0 {
		return len(b), false, false
	} else if bytes.IndexByte(b[j:j+q], '\\') < 0 {
		return j + q + 1, false, true
	}
	for ; j < len(b); j++ {
		switch b[j] {
		case '"':
			return j + 1, true, true
		case '\\':
			j++
		}
	}
	return len(b), true, false
}

// skipValue returns the index just past the value starting at b[i] (no leading
// whitespace). Containers are skipped iteratively, so nesting depth costs no stack.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; c {
	case '"':
		end, _, ok := skipString(b, i)
		return end, ok
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _, ok := skipString(b, j)
				if !ok {
					return len(b), false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return len(b), false
	case '}', ']', ',', ':':
		return i, false
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r', ':', '"', '{', '[':
				return j, j > i
			}
			j++
		}
		return j, j > i
	}
}

// eachMember calls fn for every member of the object in b (surrounding whitespace
// allowed) with the key's raw bytes (between the quotes, still escaped) and the
// value's bytes. It stops early when fn returns false. ok is false when b is not an
// object or is malformed before fn asked to stop.
func eachMember(b []byte, fn func(key []byte, escaped bool, val []byte) bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return true
	}
	for {
		kEnd, escaped, ok := skipString(b, i)
		if !ok {
			return false
		}
		key := b[i+1 : kEnd-1]
		i = skipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		vEnd, ok := skipValue(b, i)
		if !ok {
			return false
		}
		if !fn(key, escaped, b[i:vEnd]) {
			return true
		}
		i = skipSpace(b, vEnd)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return true
		default:
			return false
		}
	}
}

// eachElement calls fn for every element of the array in b with its index, until fn
// returns false; it stops quietly where b is not a well-formed array.
func eachElement(b []byte, fn func(i int, val []byte) bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return
	}
	for n := 0; ; n++ {
		vEnd, ok := skipValue(b, i)
		if !ok || !fn(n, b[i:vEnd]) {
			return
		}
		i = skipSpace(b, vEnd)
		if i >= len(b) {
			return
		}
		if b[i] != ',' { // ']' ends the array; anything else is malformed
			return
		}
		i = skipSpace(b, i+1)
	}
}

// keyIs reports whether a raw member key equals want. Escaped keys ("mod\u0065l")
// are decoded as they are compared, so spelling a key with escapes does not dodge
// the parsers, and a hostile body full of them costs no allocations.
func keyIs(raw []byte, escaped bool, want string) bool {
	if !escaped {
		return string(raw) == want
	}
	var buf [utf8.UTFMax]byte
	w := 0
	for i := 0; i < len(raw); {
		chunk := raw[i : i+1]
		if raw[i] == '\\' {
			var n int
			chunk, n = decodeEscape(raw[i:], &buf)
			i += n
		} else {
			i++
		}
		if len(chunk) > len(want)-w || string(chunk) != want[w:w+len(chunk)] {
			return false
		}
		w += len(chunk)
	}
	return w == len(want)
}

// decodeEscape decodes the escape at the start of s (s[0] == '\\') into buf and
// returns the decoded bytes and how many bytes of s it used. Invalid escapes and
// lone surrogates decode to U+FFFD, as in encoding/json.
func decodeEscape(s []byte, buf *[utf8.UTFMax]byte) ([]byte, int) {
	if len(s) < 2 {
		return buf[:utf8.EncodeRune(buf[:], utf8.RuneError)], len(s)
	}
	switch s[1] {
	case '"', '\\', '/':
		buf[0] = s[1]
	case 'b':
		buf[0] = '\b'
	case 'f':
		buf[0] = '\f'
	case 'n':
		buf[0] = '\n'
	case 'r':
		buf[0] = '\r'
	case 't':
		buf[0] = '\t'
	case 'u':
		r, ok := hex4(s[2:])
		if !ok {
			return buf[:utf8.EncodeRune(buf[:], utf8.RuneError)], 2
		}
		n := 6
		if utf16.IsSurrogate(r) {
			r2, ok := rune(0), false
			if len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
				r2, ok = hex4(s[8:])
			}
			if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
				r, n = dec, 12
			} else {
				r = utf8.RuneError
			}
		}
		return buf[:utf8.EncodeRune(buf[:], r)], n
	default:
		return buf[:utf8.EncodeRune(buf[:], utf8.RuneError)], 2
	}
	return buf[:1], 2
}

// jsonKind classifies a raw value by its first byte.
type jsonKind uint8

const (
	kindInvalid jsonKind = iota
	kindNull
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func kindOf(v []byte) jsonKind {
	if len(v) == 0 {
		return kindInvalid
	}
	switch v[0] {
	case 'n':
		return kindNull
	case 't', 'f':
		return kindBool
	case '"':
		return kindString
	case '[':
		return kindArray
	case '{':
		return kindObject
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return kindNumber
	}
	return kindInvalid
}

func (k jsonKind) String() string {
	switch k {
	case kindNull:
		return "null"
	case kindBool:
		return "a boolean"
	case kindNumber:
		return "a number"
	case kindString:
		return "a string"
	case kindArray:
		return "an array"
	case kindObject:
		return "an object"
	}
	return "invalid"
}

// rawString returns the contents of a string value without its quotes, and whether
// they contain escapes; ok is false for anything but a string.
func rawString(v []byte) (s []byte, escaped, ok bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, false, false
	}
	end, escaped, ok := skipString(v, 0)
	if !ok || end != len(v) {
		return nil, false, false
	}
	return v[1 : len(v)-1], escaped, true
}

// str returns a string value's decoded contents, or nil for anything else. Short
// enum-like values are compared with string(str(v)), which does not allocate.
func str(v []byte) []byte {
	s, escaped, ok := rawString(v)
	if !ok {
		return nil
	}
	if escaped {
		d, _ := stringValue(v)
		return []byte(d)
	}
	return s
}

// stringValue decodes a string value; ok is false for anything but a string.
func stringValue(v []byte) (string, bool) {
	s, escaped, ok := rawString(v)
	if !ok {
		return "", false
	}
	if !escaped {
		return string(s), true
	}
	var sb strings.Builder
	appendUnescaped(&sb, s)
	return sb.String(), true
}

// appendUnescaped writes the decoded form of a JSON string's contents (between the
// quotes) to sb.
func appendUnescaped(sb *strings.Builder, s []byte) {
	var buf [utf8.UTFMax]byte
	for len(s) > 0 {
		i := bytes.IndexByte(s, '\\')
		if i < 0 {
			sb.Write(s)
			return
		}
		sb.Write(s[:i])
		dec, n := decodeEscape(s[i:], &buf)
		sb.Write(dec)
		s = s[i+n:]
	}
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// intValue reads a JSON number that must be an integer in [0, limit]. Integral
// floats ("1e3", "1024.0") are accepted as the providers' own validators do.
// neg reports a negative value, big one above limit; ok is false for anything that
// is not an integral number.
func intValue(v []byte, limit int64) (n int64, neg, big, ok bool) {
	if len(v) == 0 {
		return 0, false, false, false
	}
	if v[0] == '-' {
		f, ok := numberOK(v[1:])
		if !ok {
			return 0, false, false, false
		}
		return 0, f != 0, false, true
	}
	plain := true
	for _, c := range v {
		if c < '0' || c > '9' {
			plain = false
			break
		}
	}
	if plain {
		for _, c := range v {
			if n > (limit-int64(c-'0'))/10 {
				return 0, false, true, true
			}
			n = n*10 + int64(c-'0')
		}
		return n, false, false, true
	}
	f, ok := numberOK(v)
	switch {
	case !ok:
		return 0, false, false, false
	case f > float64(limit):
		return 0, false, true, true
	case f != math.Trunc(f):
		return 0, false, false, false
	}
	return int64(f), false, false, true
}

// numberOK parses an unsigned JSON number; it is the slow path for exponents and
// fractions, so it may allocate.
func numberOK(v []byte) (float64, bool) {
	var f float64
	if len(v) == 0 || v[0] < '0' || v[0] > '9' {
		return 0, false
	}
	if err := json.Unmarshal(v, &f); err != nil {
		return 0, false
	}
	return f, true
}
