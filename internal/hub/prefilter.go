package hub

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// maxTokenBytes bounds a bearer token: a projected service-account token is about
// a kilobyte, and a token ten times that is garbage, not worth decoding.
const maxTokenBytes = 16 << 10

// claims are the parts of a JWT's payload the prefilter reads.
type claims struct {
	exp time.Time
	// audiences are the aud claim's values (a string or an array of strings).
	audiences []string
}

// errMalformed wraps every prefilter refusal, so callers can tell them from a
// TokenReview's.
var errMalformed = fmt.Errorf("%w: not a well-formed service-account token", ErrUnauthenticated)

// parseClaims reads a compact JWS (header.payload.signature, each base64url
// without padding) as the API server issues service-account tokens, without
// verifying it: the header must be a JSON object naming an algorithm other than
// "none", the signature must be present, and the payload must be a JSON object
// with an integer exp and an aud. The TokenReview still verifies the signature;
// this only keeps tokens that cannot pass from costing one.
func parseClaims(token string) (claims, error) {
	if len(token) > maxTokenBytes {
		return claims{}, fmt.Errorf("%w: %d bytes", errMalformed, len(token))
	}
	header, rest, ok := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(sig, ".") || header == "" || payload == "" || sig == "" {
		return claims{}, fmt.Errorf("%w: want three dot-separated parts", errMalformed)
	}
	if _, err := decodeSegment(sig); err != nil {
		return claims{}, fmt.Errorf("%w: signature: %w", errMalformed, err)
	}
	hb, err := decodeSegment(header)
	if err != nil {
		return claims{}, fmt.Errorf("%w: header: %w", errMalformed, err)
	}
	var h struct {
		Alg *string `json:"alg"`
	}
	if err := decodeObject(hb, &h); err != nil {
		return claims{}, fmt.Errorf("%w: header: %w", errMalformed, err)
	}
	if h.Alg == nil || *h.Alg == "" || strings.EqualFold(*h.Alg, "none") {
		return claims{}, fmt.Errorf("%w: header names no signing algorithm", errMalformed)
	}
	pb, err := decodeSegment(payload)
	if err != nil {
		return claims{}, fmt.Errorf("%w: claims: %w", errMalformed, err)
	}
	var p struct {
		Exp json.RawMessage `json:"exp"`
		Aud json.RawMessage `json:"aud"`
	}
	if err := decodeObject(pb, &p); err != nil {
		return claims{}, fmt.Errorf("%w: claims: %w", errMalformed, err)
	}
	var c claims
	// NumericDate, as the API server writes it: an integer of seconds.
	exp, err := strconv.ParseInt(string(p.Exp), 10, 64)
	if err != nil || exp <= 0 || exp > 1<<40 {
		return claims{}, fmt.Errorf("%w: no integer exp claim", errMalformed)
	}
	c.exp = time.Unix(exp, 0)
	var one string
	switch {
	case json.Unmarshal(p.Aud, &one) == nil && len(p.Aud) > 0 && p.Aud[0] == '"':
		c.audiences = []string{one}
	case json.Unmarshal(p.Aud, &c.audiences) == nil && len(p.Aud) > 0 && p.Aud[0] == '[':
	default:
		return claims{}, fmt.Errorf("%w: no aud claim", errMalformed)
	}
	return c, nil
}

// prefilter refuses, before any TokenReview, a token that is not a well-formed
// JWT, has expired by now, or is not for audience.
func prefilter(token, audience string, now time.Time) (claims, error) {
	c, err := parseClaims(token)
	if err != nil {
		return claims{}, err
	}
	if !now.Before(c.exp) {
		return claims{}, fmt.Errorf("%w: the token expired at %s", ErrUnauthenticated, c.exp.UTC().Format(time.RFC3339))
	}
	for _, a := range c.audiences {
		if a == audience {
			return c, nil
		}
	}
	return claims{}, fmt.Errorf("%w: the token is not for audience %s", ErrUnauthenticated, audience)
}

func decodeSegment(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64url")
	}
	return b, nil
}

// decodeObject decodes a JSON object (not null, not another value) into v.
func decodeObject(b []byte, v any) error {
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return errors.New("not a JSON object")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errors.New("not a JSON object")
	}
	return nil
}
