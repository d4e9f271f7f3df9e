package jsonduration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: `"1m30s"`, want: 90 * time.Second},
		{in: `"250ms"`, want: 250 * time.Millisecond},
		{in: `30`, wantErr: `duration must be a string such as "1s" or "2m30s", got 30`},
		{in: `"30"`, wantErr: `duration "30": time: missing unit in duration "30"`},
		{in: `"` + strings.Repeat("x", 50) + `"`, wantErr: `duration "` + strings.Repeat("x", 40) + `...": `},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			var d Duration
			err := json.Unmarshal([]byte(tc.in), &d)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("Unmarshal(%s) error %v, want one starting %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || d.D() != tc.want {
				t.Fatalf("Unmarshal(%s) = %v, %v; want %v", tc.in, d.D(), err, tc.want)
			}
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			var back Duration
			if err := json.Unmarshal(b, &back); err != nil || back != d {
				t.Fatalf("Marshal then Unmarshal of %v gave %v, %v (%s)", d.D(), back.D(), err, b)
			}
		})
	}
}
