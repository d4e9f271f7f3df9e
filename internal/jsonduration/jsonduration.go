// Package jsonduration is the one JSON form of a duration in aiquota's documents (the
// limiter config, the control channel's messages, the simulator's config): a Go
// duration string such as "1m30s". It imports the standard library only, so the
// packages both planes share stay that way.
package jsonduration

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("1m30s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string; numbers are refused because their unit
// would be a guess.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"1s\" or \"2m30s\", got %s", clip(string(b)))
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", clip(s), err)
	}
	*d = Duration(v)
	return nil
}

// clip bounds how much of a bad value an error message repeats.
func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
