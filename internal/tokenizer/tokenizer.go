// Package tokenizer counts the tokens of text with OpenAI's o200k_base and
// cl100k_base BPE vocabularies, as OpenAI's tiktoken counts them, in time
// linear in the text. Its oracle is github.com/tiktoken-go/tokenizer, whose
// counts it gives except where that library's generated regex code departs
// from its own split patterns (split.go says where, reference_test.go checks
// that nothing else differs).
//
// The vocabularies are embedded in the binary in a compact form built by `go
// generate` (internal/gen) and read in place: nothing is decoded into the
// heap, the pages are the binary's file pages (shared by every limiter on a
// node and reclaimable), and a vocabulary's pages are touched only once text
// is counted with it. Splitting text into pieces is done by hand-written
// scanners equivalent to the two split patterns (split.go); merging a piece
// is the reference's byte-pair merge (bpe.go), by a heap for long pieces.
package tokenizer

import (
	"context"
	_ "embed" // the tables
	"fmt"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/aiquota/aiquota/internal/tokenizer/internal/table"
)

//go:generate go run ./internal/gen -out data

// The encodings this package knows.
const (
	O200kBase  = "o200k_base"
	Cl100kBase = "cl100k_base"
)

var (
	//go:embed data/o200k_base.bpe
	o200kFile string
	//go:embed data/cl100k_base.bpe
	cl100kFile string
	//go:embed data/classes.bin
	classesFile string
)

// classes is the character class table the scanners read. Parsing it checks
// its header only.
var classes = func() table.Classes {
	c, err := table.ParseClasses(classesFile)
	if err != nil {
		panic("tokenizer: embedded character classes: " + err.Error()) // a broken build; tests catch it
	}
	return c
}()

// Encoding is one BPE vocabulary with its split pattern. It is read-only and
// safe for concurrent use.
type Encoding struct {
	name     string
	o200k    bool // the o200k_base split pattern, else cl100k_base's
	vocab    *table.Vocab
	maxPiece int // maxPiece; smaller in tests of overlong pieces
}

var encodings = map[string]func() (*Encoding, error){
	O200kBase:  sync.OnceValues(func() (*Encoding, error) { return load(O200kBase, o200kFile, true) }),
	Cl100kBase: sync.OnceValues(func() (*Encoding, error) { return load(Cl100kBase, cl100kFile, false) }),
}

// Get returns the named encoding, loading it on first use: loading checks the
// embedded file's header and touches nothing else.
func Get(name string) (*Encoding, error) {
	get, ok := encodings[name]
	if !ok {
		return nil, fmt.Errorf("unknown tokenizer encoding %q (known: %s, %s)", name, O200kBase, Cl100kBase)
	}
	return get()
}

func load(name, file string, o200k bool) (*Encoding, error) {
	v, err := table.ParseVocab(file)
	if err != nil {
		return nil, fmt.Errorf("embedded %s vocabulary: %w", name, err)
	}
	return &Encoding{name: name, o200k: o200k, vocab: v, maxPiece: maxPiece}, nil
}

// Name is the encoding's name, e.g. "o200k_base".
func (e *Encoding) Name() string { return e.name }

// checkEvery is how many bytes of text are counted between looks at the
// context: tens of microseconds of work.
const checkEvery = 16 << 10

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// keepScratch bounds the merge buffers a pooled scratch keeps; a count that
// needed more (a piece of thousands of bytes) lets them go.
const keepScratch = 4 << 10

// Count returns the number of tokens text encodes to. It stops early, with
// the context's error, once ctx is done: it looks every 16 KiB of text, and
// not at all for less (a memo calls it for each word it has not seen).
// Invalid UTF-8 is counted as the reference counts it: each invalid byte as
// U+FFFD.
func (e *Encoding) Count(ctx context.Context, text string) (int, error) {
	sc := scratchPool.Get().(*scratch)
	n, err := e.count(ctx, text, sc)
	if cap(sc.nodes) > keepScratch {
		sc.nodes, sc.heap = nil, nil
	}
	if cap(sc.clean) > keepScratch {
		sc.clean = nil
	}
	totalWork.Add(uint64(sc.work))
	sc.work = 0
	scratchPool.Put(sc)
	return n, err
}

// totalWork is the work of every count in the process, so that a running
// limiter shows from outside that a hostile prompt cost it work in proportion to
// its length (test/adversarial reads it through the limiter's metrics).
var totalWork atomic.Uint64

// Work is the work every count in this process has done so far: characters
// examined, vocabulary lookups and merge steps, linear in the text counted.
func Work() uint64 { return totalWork.Load() }

func (e *Encoding) count(ctx context.Context, text string, sc *scratch) (int, error) {
	valid := utf8.ValidString(text)
	s := scanner{s: text}
	n, check := 0, checkEvery
	for i := 0; i < len(text); {
		var end int
		if e.o200k {
			end = s.nextO200k(i)
		} else {
			end = s.nextCl100k(i)
		}
		if end-i <= e.maxPiece {
			n += e.pieceTokens(text[i:end], valid, sc)
		} else {
			n += overlongTokens(text[i:end], valid)
		}
		i = end
		if i >= check {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			check = i + checkEvery
		}
	}
	sc.work += s.work
	return n, nil
}

// overlongTokens bounds the tokens of a piece longer than maxPiece: no more
// than the bytes the merge would see, as every token is at least one byte.
func overlongTokens(p string, valid bool) int {
	if valid {
		return len(p)
	}
	n := 0
	for i := 0; i < len(p); {
		r, w := utf8.DecodeRuneInString(p[i:])
		if r == utf8.RuneError && w == 1 {
			n += len(string(utf8.RuneError))
		} else {
			n += w
		}
		i += w
	}
	return n
}
