package provider

import (
	"context"
	"hash/maphash"
	"sync"
)

// MemoCounter remembers the token counts of the words and lines it has seen, so
// that text sent again — a system prompt, the history a chat app resends with every
// turn, and the common words of a new message — costs hash lookups instead of a BPE
// pass. It is exact for the BPE counters: it splits text only where o200k_base and
// cl100k_base pre-tokenization must split anyway, so the sum of the parts' counts is
// the count of the whole (FuzzMemoCounter checks this against the uncached counter). It is safe for concurrent use and bounded:
// it holds at most about 2 x maxEntries counts, forgetting the least recently
// used half when full.
type MemoCounter struct {
	counter Counter
	seed    maphash.Seed
	shards  [memoShards]memoShard
	perGen  int
}

const memoShards = 16

type memoShard struct {
	mu       sync.Mutex
	cur, old map[uint64]uint32
}

// NewMemoCounter wraps c with a cache of about maxEntries line counts (at least 1
// per shard). The limiter owns it; nothing here is shared across instances.
func NewMemoCounter(c Counter, maxEntries int) *MemoCounter {
	m := &MemoCounter{counter: c, seed: maphash.MakeSeed(), perGen: max(1, maxEntries/memoShards)}
	for i := range m.shards {
		m.shards[i].cur = make(map[uint64]uint32)
	}
	return m
}

// memoCheckEvery is how many bytes of text the memo reads between looks at the
// context (the counter behind it looks too, within long segments).
const memoCheckEvery = 16 << 10

// Count returns the token count of text, from the cache where it can.
func (m *MemoCounter) Count(ctx context.Context, text string) (int64, error) {
	var n int64
	read, check := 0, memoCheckEvery
	for len(text) > 0 {
		end := nextSplit(text)
		k, err := m.countSegment(ctx, text[:end])
		if err != nil {
			return 0, err
		}
		n += k
		text = text[end:]
		if read += end; read >= check {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			check = read + memoCheckEvery
		}
	}
	return n, nil
}

func (m *MemoCounter) countSegment(ctx context.Context, seg string) (int64, error) {
	h := maphash.String(m.seed, seg)
	s := &m.shards[h%memoShards]
	s.mu.Lock()
	v, ok := s.cur[h]
	if !ok {
		if v, ok = s.old[h]; ok {
			s.put(h, v, m.perGen)
		}
	}
	s.mu.Unlock()
	if ok {
		return int64(v), nil
	}
	n, err := m.counter.Count(ctx, seg)
	if err != nil {
		return 0, err // a count cut short is not remembered
	}
	if n >= 0 && n <= 1<<32-1 {
		s.mu.Lock()
		s.put(h, uint32(n), m.perGen)
		s.mu.Unlock()
	}
	return n, nil
}

// put stores a count, retiring the current generation to old when it is full;
// whatever was only in old is forgotten then.
func (s *memoShard) put(h uint64, v uint32, perGen int) {
	if len(s.cur) >= perGen {
		s.old, s.cur = s.cur, make(map[uint64]uint32, perGen)
	}
	s.cur[h] = v
}

// nextSplit returns the end of text's first segment, at one of two kinds of point
// where the o200k_base and cl100k_base split patterns must end a pre-token. The
// patterns have no look-behind, so whatever follows such a point is split the same
// with or without the text before it.
//
// A word: before a single ASCII space that follows a printable non-space ASCII
// character and precedes an ASCII letter ("…end. Next"). No pre-token crosses it:
// runs of letters, digits (`\p{N}{1,3}`), contractions and punctuation
// (` ?[^\s\p{L}\p{N}]+[\r\n/]*`) all stop at a space, the whitespace patterns need
// a whitespace character before the space, and the letter patterns
// (`[^\r\n\p{L}\p{N}]?…\p{L}+…`) start a new pre-token at the space itself.
//
// A line: just after a newline whose following line starts, after optional spaces
// and tabs, with a character that cannot continue the newline's pre-token: a
// pre-token only crosses a newline as part of a whitespace run that reaches another
// newline (`\s*[\r\n]+`) or as punctuation followed by newlines and slashes
// (`[\r\n/]*`).
func nextSplit(text string) int {
	for i := 0; i < len(text); i++ {
		if text[i] == ' ' && i > 0 && i+1 < len(text) && text[i-1] > ' ' && text[i-1] < 0x7f && isASCIILetter(text[i+1]) {
			return i
		}
		if text[i] != '\n' {
			continue
		}
		j := i + 1
		if j < len(text) && text[j] == '/' {
			continue
		}
		for j < len(text) && (text[j] == ' ' || text[j] == '\t') {
			j++
		}
		if j < len(text) && text[j] < 0x80 && text[j] != '\n' && text[j] != '\r' && text[j] != '\v' && text[j] != '\f' {
			return i + 1
		}
	}
	return len(text)
}

func isASCIILetter(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }
