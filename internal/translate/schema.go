package translate

import (
	"bytes"
	"strings"
)

// maxSchemaDepth bounds the nesting of a converted schema; real ones are a few
// levels deep.
const maxSchemaDepth = 64

// openAPIToJSONSchema converts a Gemini Schema (ai.google.dev/api/caching#Schema:
// the OpenAPI 3.0 subset, with enum-named types such as "OBJECT" and "nullable")
// into the JSON Schema the other dialects take: types in lower case, nullable as a
// "null" type, Gemini's propertyOrdering and example left out, integer fields that
// proto3 JSON may quote ("minItems": "1") as numbers. Other keywords are kept.
func openAPIToJSONSchema(name string, v []byte) ([]byte, error) {
	if kindOf(v) != kindObject {
		return nil, malformed(name, "%s must be a schema object, got %s", name, kindOf(v))
	}
	return convertSchema(name, nil, v, 0)
}

func convertSchema(name string, dst, v []byte, depth int) ([]byte, error) {
	if depth > maxSchemaDepth {
		return nil, malformed(name, "%s nests more than %d levels deep", name, maxSchemaDepth)
	}
	if kindOf(v) != kindObject {
		return nil, malformed(name, "%s must be a schema object, got %s", name, kindOf(v))
	}
	var typ []byte
	nullable := false
	_ = geminiMembers(v, func(k, v []byte) error {
		switch string(k) {
		case "type":
			typ = v
		case "nullable":
			nullable = isTrue(v)
		}
		return nil
	})
	dst = append(dst, '{')
	first := true
	if kindOf(typ) == kindString {
		t := strings.ToLower(jstr(typ).String())
		if t != "type_unspecified" && t != "" {
			dst = appendKey(dst, &first, "type")
			if nullable && t != "null" {
				dst = append(appendString(append(dst, '['), t), `,"null"]`...)
			} else {
				dst = appendString(dst, t)
			}
		}
	}
	err := geminiMembers(v, func(k, val []byte) error {
		var err error
		switch key := string(k); key {
		case "type", "nullable", "propertyOrdering", "example":
		case "properties":
			dst = appendKey(dst, &first, key)
			dst = append(dst, '{')
			pfirst := true
			// Property names are the app's own, never re-cased.
			err = eachMember(val, func(pk, pv []byte) error {
				if !pfirst {
					dst = append(dst, ',')
				}
				pfirst = false
				dst = appendRawString(dst, pk)
				dst = append(dst, ':')
				var err error
				dst, err = convertSchema(name, dst, pv, depth+1)
				return err
			})
			dst = append(dst, '}')
		case "items":
			dst = appendKey(dst, &first, key)
			dst, err = convertSchema(name, dst, val, depth+1)
		case "anyOf":
			dst = appendKey(dst, &first, key)
			dst = append(dst, '[')
			err = eachElement(val, func(i int, s []byte) error {
				if i > 0 {
					dst = append(dst, ',')
				}
				var err error
				dst, err = convertSchema(name, dst, s, depth+1)
				return err
			})
			dst = append(dst, ']')
		case "minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties":
			if kindOf(val) == kindString {
				val = jstr(val).interior()
			}
			if !allDigits(val) {
				return malformed(name, "%s.%s must be a non-negative integer", name, key)
			}
			dst = appendKey(dst, &first, key)
			dst = append(dst, val...)
		default:
			dst = appendKey(dst, &first, key)
			dst = append(dst, bytes.TrimSpace(val)...)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0 && len(b) <= 18
}
