package tokenizer

import (
	"math"
	"unicode/utf8"
)

// noRank marks a pair of parts that is not a token, and a removed part.
const noRank = math.MaxUint32

// Piece sizes that pick the merge.
const (
	// smallPiece is the longest piece merged by rescanning its pairs for the
	// lowest rank after each merge: quadratic, but over at most this many
	// bytes, and faster than a heap on the short pieces words are.
	smallPiece = 64
	// maxPiece is the longest piece merged exactly. No word is this long:
	// only a run without a split point is (kilobytes of whitespace, of one
	// letter, of emoji). Such a piece is counted as one token per byte (per
	// byte of U+FFFD for an invalid byte), which its tokens cannot exceed.
	// Counting it exactly in stretches would not do: byte-pair merging a
	// whole can give more tokens than merging its stretches apart
	// (TestOverlongPieces). The bound keeps the merge's memory at most about
	// 36 bytes per byte of this.
	maxPiece = 32 << 10
)

// scratch is one count's working memory, pooled between counts.
type scratch struct {
	pos   [smallPiece + 1]int32
	ranks [smallPiece]uint32
	nodes []mergeNode
	heap  mergeHeap
	clean []byte // a piece's bytes with each invalid byte replaced by U+FFFD
	work  int    // lookups and merge steps, for FuzzLinearWork
}

// rank returns the rank of the token whose bytes are s, or noRank.
func (e *Encoding) rank(s string) uint32 {
	if r, ok := e.vocab.Rank(s); ok {
		return uint32(r)
	}
	return noRank
}

// pieceTokens counts the tokens of one piece of at most maxPiece bytes. The
// reference takes a piece that is a token as that token without merging
// (it may not be reachable by merges), and so does this.
func (e *Encoding) pieceTokens(p string, valid bool, sc *scratch) int {
	if !valid && !utf8.ValidString(p) {
		p = sc.sanitize(p)
	}
	if len(p) == 1 { // every byte is a token
		return 1
	}
	sc.work++
	if e.rank(p) != noRank {
		return 1
	}
	if len(p) <= smallPiece {
		return e.mergeSmall(p, sc)
	}
	return e.mergeHeap(p, sc)
}

// sanitize returns p with every byte that is not part of valid UTF-8 replaced
// by U+FFFD, as the reference's engine sees it. The result lives in sc.clean
// until the next call.
func (sc *scratch) sanitize(p string) string {
	b := sc.clean[:0]
	for i := 0; i < len(p); {
		r, w := utf8.DecodeRuneInString(p[i:])
		if r == utf8.RuneError && w == 1 {
			b = append(b, "\uFFFD"...)
		} else {
			b = append(b, p[i:i+w]...)
		}
		i += w
	}
	sc.clean = b
	return string(b)
}

// mergeSmall is byte-pair encoding as the reference writes it: repeatedly
// merge the adjacent pair of parts whose bytes form the lowest-ranked token
// (the leftmost of equals) until no pair forms a token. It returns the number
// of parts left; their boundaries are sc.pos[:parts+1].
func (e *Encoding) mergeSmall(p string, sc *scratch) int {
	n := len(p)
	pos, ranks := sc.pos[:n+1], sc.ranks[:n]
	for i := range pos {
		pos[i] = int32(i)
	}
	for i := 0; i+1 < n; i++ {
		ranks[i] = e.rank(p[i : i+2])
	}
	sc.work += n
	parts := n
	pairRank := func(i int) uint32 { // the token of parts i and i+1, or noRank
		if i+2 > parts {
			return noRank
		}
		return e.rank(p[pos[i]:pos[i+2]])
	}
	for parts > 1 {
		best, at := uint32(noRank), -1
		for i, r := range ranks[:parts-1] {
			if r < best {
				best, at = r, i
			}
		}
		sc.work += parts
		if at < 0 {
			break
		}
		// Parts at and at+1 become one: boundary at+1 goes, and with it the
		// pair that started at part at+1.
		copy(pos[at+1:], pos[at+2:parts+1])
		if at+2 < parts {
			copy(ranks[at+1:], ranks[at+2:parts-1])
		}
		parts--
		ranks[at] = pairRank(at)
		if at > 0 {
			ranks[at-1] = pairRank(at - 1)
		}
	}
	return parts
}

// mergeNode is a part boundary in mergeHeap's doubly linked list; rank is the
// rank of the token formed by this part and the next.
type mergeNode struct {
	prev, next int32
	rank       uint32
}

// mergeHeap gives the same parts as mergeSmall in O(n log n): candidate
// pairs wait in a heap ordered by rank, then position, and a candidate whose
// pair has changed since it was pushed is skipped when it comes up. It
// returns the number of parts left; the list in sc.nodes holds them.
func (e *Encoding) mergeHeap(p string, sc *scratch) int {
	n := int32(len(p))
	if cap(sc.nodes) < int(n)+1 {
		sc.nodes = make([]mergeNode, n+1)
	}
	nodes := sc.nodes[:n+1]
	for i := range nodes {
		nodes[i] = mergeNode{prev: int32(i) - 1, next: int32(i) + 1, rank: noRank}
	}
	nodes[n].next = -1
	rankOf := func(i int32) uint32 { // the token of the part at i and the next
		j := nodes[i].next
		if j < 0 {
			return noRank
		}
		k := nodes[j].next
		if k < 0 {
			return noRank
		}
		sc.work++
		return e.rank(p[i:k])
	}
	h := sc.heap[:0]
	for i := int32(0); i+2 <= n; i++ {
		if r := rankOf(i); r != noRank {
			nodes[i].rank = r
			h = append(h, candidate(r, i))
		}
	}
	h.init()
	parts := int(n)
	for len(h) > 0 {
		top := h.pop()
		sc.work++
		i := top.at()
		if nodes[i].rank != top.rank() {
			continue // stale: the pair at i changed since
		}
		j := nodes[i].next
		k := nodes[j].next
		nodes[j].rank = noRank
		nodes[i].next = k
		if k >= 0 {
			nodes[k].prev = i
		}
		parts--
		for _, b := range [2]int32{i, nodes[i].prev} {
			if b < 0 {
				continue
			}
			if nodes[b].rank = rankOf(b); nodes[b].rank != noRank {
				h.push(candidate(nodes[b].rank, b))
			}
		}
	}
	sc.heap = h
	return parts
}

// mergeCandidate is a pair of parts waiting to merge: its rank in the high 32
// bits, the position of its first part in the low, so that candidates order
// by rank, then position, as one number.
type mergeCandidate uint64

func candidate(rank uint32, at int32) mergeCandidate {
	return mergeCandidate(uint64(rank)<<32 | uint64(uint32(at)))
}

func (c mergeCandidate) rank() uint32 { return uint32(c >> 32) }
func (c mergeCandidate) at() int32    { return int32(uint32(c)) }

// mergeHeap is a binary min-heap of candidates, so the lowest rank, and the
// leftmost of equal ranks, merges first.
type mergeHeap []mergeCandidate

func (h mergeHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *mergeHeap) push(c mergeCandidate) {
	*h = append(*h, c)
	h.up(len(*h) - 1)
}

func (h *mergeHeap) pop() mergeCandidate {
	old := *h
	top := old[0]
	last := len(old) - 1
	old[0] = old[last]
	*h = old[:last]
	h.down(0)
	return top
}

func (h mergeHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[i] >= h[parent] {
			return
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (h mergeHeap) down(i int) {
	for {
		child := 2*i + 1
		if child >= len(h) {
			return
		}
		if right := child + 1; right < len(h) && h[right] < h[child] {
			child = right
		}
		if h[child] >= h[i] {
			return
		}
		h[i], h[child] = h[child], h[i]
		i = child
	}
}
