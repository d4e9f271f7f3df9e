package provider

// Exported views of this package's JSON walker and error reading, for the other
// data-plane package that reads the same wire formats (internal/translate). A
// translated request must say exactly what the limiter accounted for, so it is read
// with the same exact-key, allocation-free walker as ParseRequest: encoding/json
// matches keys case-insensitively and would let {"max_tokens":10,"MAX_TOKENS":9999}
// reserve 10 tokens and ask the target for 9999.

// EachMember calls fn for every member of the JSON object in b (surrounding
// whitespace allowed) with the key's raw bytes (between the quotes, still escaped),
// whether the key has escapes, and the value's bytes. It stops early when fn returns
// false. ok is false when b is not an object or is malformed before fn asked to stop.
func EachMember(b []byte, fn func(key []byte, escaped bool, val []byte) bool) (ok bool) {
	return eachMember(b, fn)
}

// EachElement calls fn for every element of the JSON array in b with its index,
// until fn returns false; it stops quietly where b is not a well-formed array.
func EachElement(b []byte, fn func(i int, val []byte) bool) { eachElement(b, fn) }

// KeyIs reports whether a raw member key from EachMember equals want, decoding
// escapes as it compares.
func KeyIs(raw []byte, escaped bool, want string) bool { return keyIs(raw, escaped, want) }

// JSONString decodes a JSON string value; ok is false for anything but a string.
func JSONString(v []byte) (s string, ok bool) { return stringValue(v) }

// JSONInt reads a JSON number that must be an integer in [0, limit] (integral
// floats such as 1e3 accepted); ok is false otherwise.
func JSONInt(v []byte, limit int64) (n int64, ok bool) {
	n, neg, big, ok := intValue(v, limit)
	return n, ok && !neg && !big && kindOf(v) == kindNumber
}

// JSONKind classifies a raw JSON value by its first byte.
type JSONKind = jsonKind

// The kinds of JSON value; KindInvalid is an empty value or one that starts like
// no JSON value.
const (
	KindInvalid = kindInvalid
	KindNull    = kindNull
	KindBool    = kindBool
	KindNumber  = kindNumber
	KindString  = kindString
	KindArray   = kindArray
	KindObject  = kindObject
)

// KindOf classifies a raw value from EachMember or EachElement.
func KindOf(v []byte) JSONKind { return kindOf(v) }

// ErrorMessage returns the message of a provider error body in any dialect (the
// shapes Classify reads), bounded in length; "" when there is none.
func ErrorMessage(d Dialect, body []byte) string {
	return parseProviderError(d, body).message
}

// ValidPathModel accepts a model name that can be one segment of a URL path, as
// Route does for Gemini paths.
func ValidPathModel(m string) bool { return validPathModel(m) }
