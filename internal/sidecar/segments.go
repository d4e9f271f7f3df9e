package sidecar

import "io"

// segmentsReader is a request body spliced from segments (the original body's
// bytes and the rewriter's edits). It reads as io.MultiReader over bytes.Readers
// would, but writes the segments out directly: the transport copies a request
// body with io.Copy, and io.MultiReader's WriteTo allocates a 32 KB buffer for
// every copy, which made the limiter allocate and collect 32 KB more per request
// (docs/benchmarks.md). The segments are only read, so one attempt's reader
// leaves them whole for the next.
type segmentsReader struct {
	segs [][]byte
	i    int // the segment being read
	off  int // how far into it
}

func newSegmentsReader(segs [][]byte) *segmentsReader { return &segmentsReader{segs: segs} }

func (r *segmentsReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && r.i < len(r.segs) {
		c := copy(p[n:], r.segs[r.i][r.off:])
		n += c
		r.off += c
		if r.off == len(r.segs[r.i]) {
			r.i, r.off = r.i+1, 0
		}
	}
	if n == 0 && r.i == len(r.segs) && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (r *segmentsReader) WriteTo(w io.Writer) (int64, error) {
	var sum int64
	for ; r.i < len(r.segs); r.i, r.off = r.i+1, 0 {
		n, err := w.Write(r.segs[r.i][r.off:])
		sum += int64(n)
		if err != nil {
			r.off += n
			return sum, err
		}
	}
	return sum, nil
}
