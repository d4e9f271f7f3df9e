package sidecar

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

func TestSegmentsReader(t *testing.T) {
	for _, segs := range [][]string{
		nil,
		{""},
		{`{"model":"`, "gpt-4o-mini", `","stream":true`, "", `,"stream_options":{"include_usage":true}}`},
		{strings.Repeat("x", 40<<10), "y"},
	} {
		want := strings.Join(segs, "")
		b := make([][]byte, len(segs))
		for i, s := range segs {
			b[i] = []byte(s)
		}
		orig := bytes.Join(b, []byte("|"))
		if err := iotest.TestReader(newSegmentsReader(b), []byte(want)); err != nil {
			t.Errorf("%q: %v", segs, err)
		}
		var out bytes.Buffer
		if n, err := io.Copy(&out, newSegmentsReader(b)); err != nil || n != int64(len(want)) {
			t.Errorf("%q: io.Copy wrote %d bytes, %v; want %d", segs, n, err, len(want))
		}
		if diff := cmp.Diff(want, out.String()); diff != "" {
			t.Errorf("%q: io.Copy wrote (-want +got):\n%s", segs, diff)
		}
		// A retry builds another reader over the same segments.
		if diff := cmp.Diff(string(orig), string(bytes.Join(b, []byte("|")))); diff != "" {
			t.Errorf("%q: reading changed the segments (-before +after):\n%s", segs, diff)
		}
	}
}

// TestSegmentsReaderCopiesWithoutAllocating: the transport copies every upstream
// request body with io.Copy, so a buffer allocated there is garbage per request.
func TestSegmentsReaderCopiesWithoutAllocating(t *testing.T) {
	segs := [][]byte{[]byte(`{"model":"`), []byte("gpt-4o-mini"), []byte(strings.Repeat(`"x",`, 256))}
	r := newSegmentsReader(segs)
	if allocs := testing.AllocsPerRun(100, func() {
		*r = segmentsReader{segs: segs}
		if _, err := io.Copy(io.Discard, r); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("copying a spliced body allocated %v times, want 0", allocs)
	}
}
