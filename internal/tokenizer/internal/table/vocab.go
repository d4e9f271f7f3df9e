// Package table holds the tokenizer's two lookup tables in the form they are
// embedded in the binary: a BPE vocabulary (token bytes to rank) and the
// Unicode character classes the pre-tokenizers test. Both are built by the
// generator (internal/tokenizer/internal/gen) and read in place at run time, so
// their pages are the binary's own, file-backed and shared by every limiter
// process on a node, and nothing is decoded or copied into the heap.
package table

import (
	"errors"
	"fmt"
)

// A vocabulary file is, integers little-endian:
//
//	magic      "aqbpe\x00\x00\x02"
//	n          uint32, the number of tokens; ranks are 0..n-1
//	slotBits   uint32: the index has 1<<slotBits slots
//	maxLen     uint32, the length in bytes of the longest token
//	dataLen    uint32, the total length of the token bytes
//	slots      1<<slotBits uint64: the index
//	data       every token's bytes
//
// The index is open-addressed with linear probing and built Robin Hood style,
// so each cluster is ordered by home slot. A slot is 0 when empty, else it
// holds everything a lookup needs, so that a miss reads one slot and a hit
// one slot and the token's bytes:
//
//	bits  0-20  offset of the token's bytes in data
//	bits 21-27  length - 1
//	bits 28-45  rank + 1
//	bits 46-52  the token's home slot, modulo 128
//	bits 53-63  11 more bits of the token's hash, below those of its home
//
// A lookup compares bytes only with a token of its own home, length and hash
// bits, and stops at the first token whose home lies after its own. The
// index is fixed at build time, so no input can lengthen its clusters; the
// longest probe is a property of the file (TestVocabularyLookups reports it).
const (
	magic      = "aqbpe\x00\x00\x02"
	headerLen  = len(magic) + 4*4
	offsetBits = 21
	lenBits    = 7
	rankBits   = 18
	homeBits   = 7
	hashBits   = 64 - offsetBits - lenBits - rankBits - homeBits

	lenShift  = offsetBits
	rankShift = lenShift + lenBits
	homeShift = rankShift + rankBits
	hashShift = homeShift + homeBits

	offsetMask = 1<<offsetBits - 1
	lenMask    = 1<<lenBits - 1
	rankMask   = 1<<rankBits - 1
	homeMask   = 1<<homeBits - 1

	// MaxTokens is the most tokens a vocabulary file can hold.
	MaxTokens = rankMask - 1
	// MaxTokenLen is the longest token a vocabulary file can hold.
	MaxTokenLen = lenMask + 1
	// maxProbe bounds how far a token may sit from its home slot, so that
	// distances modulo 1<<homeBits are exact.
	maxProbe = homeMask - 1
)

// Vocab is a BPE vocabulary read in place from a vocabulary file.
type Vocab struct {
	slots  string // (1<<slotBits) little-endian uint64
	data   string
	n      int
	shift  uint   // 64 - slotBits: a hash's top bits pick its home slot
	mask   uint64 // slots - 1
	maxLen int
}

// ParseVocab checks a vocabulary file's header and sizes and returns the
// vocabulary over it. It touches only the header: the pages of the index and
// the token bytes are read when lookups need them.
func ParseVocab(file string) (*Vocab, error) {
	if len(file) < headerLen || file[:len(magic)] != magic {
		return nil, errors.New("not a vocabulary file (bad magic)")
	}
	n := int(u32(file, len(magic)))
	slotBits := int(u32(file, len(magic)+4))
	maxLen := int(u32(file, len(magic)+8))
	dataLen := int(u32(file, len(magic)+12))
	if n < 256 || n > MaxTokens || slotBits < 8 || slotBits > 64-hashBits || 1<<slotBits < n ||
		maxLen < 1 || maxLen > MaxTokenLen || maxLen > dataLen || dataLen > offsetMask+1 {
		return nil, fmt.Errorf("vocabulary file header out of range: %d tokens, %d slot bits, longest token %d, %d data bytes", n, slotBits, maxLen, dataLen)
	}
	slotLen := 8 << slotBits
	if want := headerLen + slotLen + dataLen; len(file) != want {
		return nil, fmt.Errorf("vocabulary file is %d bytes, its header says %d", len(file), want)
	}
	return &Vocab{
		slots:  file[headerLen : headerLen+slotLen],
		data:   file[headerLen+slotLen:],
		n:      n,
		shift:  uint(64 - slotBits),
		mask:   1<<slotBits - 1,
		maxLen: maxLen,
	}, nil
}

// Len is the number of tokens.
func (v *Vocab) Len() int { return v.n }

// MaxLen is the length in bytes of the longest token.
func (v *Vocab) MaxLen() int { return v.maxLen }

// Rank returns the rank of the token whose bytes are s, and whether there is
// one. It allocates nothing.
func (v *Vocab) Rank(s string) (int, bool) {
	if len(s) > v.maxLen || len(s) == 0 {
		return 0, false
	}
	h := Hash(s)
	home := h >> v.shift
	// What a matching slot holds besides its offset and rank.
	want := (h>>(v.shift-hashBits))<<hashShift | (home&homeMask)<<homeShift | uint64(len(s)-1)<<lenShift
	const keyMask = ^uint64(0) &^ (rankMask<<rankShift | offsetMask)
	for i, dist := home, uint64(0); ; i, dist = (i+1)&v.mask, dist+1 {
		slot := u64(v.slots, 8*int(i))
		if slot == 0 {
			return 0, false
		}
		// The stored token's distance from its own home.
		if d := (i - slot>>homeShift) & homeMask; d < dist {
			return 0, false // its home is after ours: ours would have come first
		}
		if slot&keyMask == want {
			off := int(slot & offsetMask)
			if v.data[off:off+len(s)] == s {
				return int(slot>>rankShift&rankMask) - 1, true
			}
		}
	}
}

// Tokens calls yield with each token and its rank, in index order.
func (v *Vocab) Tokens(yield func(tok string, rank int) bool) {
	for i := 0; i < len(v.slots); i += 8 {
		slot := u64(v.slots, i)
		if slot == 0 {
			continue
		}
		off, n := int(slot&offsetMask), int(slot>>lenShift&lenMask)+1
		if !yield(v.data[off:off+n], int(slot>>rankShift&rankMask)-1) {
			return
		}
	}
}

// Probes reports the index's longest probe (in slots, from a token's home to
// its slot) and the mean over all tokens.
func (v *Vocab) Probes() (longest int, mean float64) {
	total := 0
	for i := 0; i < len(v.slots); i += 8 {
		slot := u64(v.slots, i)
		if slot == 0 {
			continue
		}
		d := int((uint64(i/8) - slot>>homeShift) & homeMask)
		longest, total = max(longest, d), total+d
	}
	return longest, float64(total) / float64(v.n)
}

// u32 reads the little-endian uint32 at s[i:].
func u32(s string, i int) uint32 {
	_ = s[i+3]
	return uint32(s[i]) | uint32(s[i+1])<<8 | uint32(s[i+2])<<16 | uint32(s[i+3])<<24
}

// u64 reads the little-endian uint64 at s[i:].
func u64(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// Hash is the vocabulary index's hash of a byte string: fixed, so that the
// index can be built ahead of time, and cheap on the short strings BPE looks
// up (a multiply per 8 bytes and a final mix).
func Hash(s string) uint64 {
	const k0, k1 = 0x9e3779b97f4a7c15, 0xc2b2ae3d27d4eb4f
	h := uint64(len(s)) * k0
	for len(s) >= 8 {
		w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		h = (h ^ w) * k1
		h ^= h >> 29
		s = s[8:]
	}
	if len(s) > 0 {
		var w uint64
		for i := range len(s) {
			w |= uint64(s[i]) << (8 * i)
		}
		h = (h ^ w) * k1
	}
	// murmur3's 64-bit finaliser: every input bit reaches the top bits, which
	// pick the home slot.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// BuildVocab returns the vocabulary file for tokens, where tokens[r] is the
// token of rank r. slotBits sizes the index (1<<slotBits slots, more than
// len(tokens)). Tokens must be distinct, non-empty and at most MaxTokenLen
// bytes.
func BuildVocab(tokens []string, slotBits int) ([]byte, error) {
	n := len(tokens)
	if n < 256 || n > MaxTokens || slotBits < 8 || slotBits > 64-hashBits || 1<<slotBits <= n {
		return nil, fmt.Errorf("cannot index %d tokens in %d slot bits", n, slotBits)
	}
	shift := uint(64 - slotBits)
	mask := uint64(1)<<slotBits - 1
	slots := make([]uint64, 1<<slotBits)
	homes := make([]uint64, 1<<slotBits) // the full home of each slot's token
	var data []byte
	maxLen := 0
	seen := make(map[string]int, n)
	for r, tok := range tokens {
		if tok == "" || len(tok) > MaxTokenLen {
			return nil, fmt.Errorf("token %d is %d bytes long, not 1 to %d", r, len(tok), MaxTokenLen)
		}
		if prev, dup := seen[tok]; dup {
			return nil, fmt.Errorf("tokens %d and %d are both %q", prev, r, tok)
		}
		seen[tok] = r
		if len(data)+len(tok) > offsetMask+1 {
			return nil, fmt.Errorf("tokens take more than %d bytes", offsetMask+1)
		}
		maxLen = max(maxLen, len(tok))
		h := Hash(tok)
		home := h >> shift
		entry := (h>>(shift-hashBits))<<hashShift | (home&homeMask)<<homeShift | uint64(r+1)<<rankShift |
			uint64(len(tok)-1)<<lenShift | uint64(len(data))
		data = append(data, tok...)
		// Robin Hood insertion: a token further from its home takes the slot
		// of one nearer to its own, so clusters stay ordered by home.
		for i, dist := home, uint64(0); ; i, dist = (i+1)&mask, dist+1 {
			if dist > maxProbe {
				return nil, fmt.Errorf("index too full: a token would sit %d slots from its home", dist)
			}
			if slots[i] == 0 {
				slots[i], homes[i] = entry, home
				break
			}
			if d := (i - homes[i]) & mask; d < dist {
				slots[i], entry = entry, slots[i]
				homes[i], home = home, homes[i]
				dist = d
			}
		}
	}
	out := make([]byte, 0, headerLen+8<<slotBits+len(data))
	out = append(out, magic...)
	out = appendU32(out, uint32(n), uint32(slotBits), uint32(maxLen), uint32(len(data)))
	for _, slot := range slots {
		out = appendU32(out, uint32(slot), uint32(slot>>32))
	}
	return append(out, data...), nil
}

func appendU32(b []byte, vs ...uint32) []byte {
	for _, v := range vs {
		b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	}
	return b
}
