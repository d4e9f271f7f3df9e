package table

import (
	"errors"
	"fmt"
	"unicode"
)

// The character classes the o200k_base and cl100k_base split patterns test,
// one bit each. They follow the reference's regular expression engine
// (dlclark/regexp2 over Go's unicode tables): \s is unicode.IsSpace.
const (
	Letter  uint8 = 1 << iota // \p{L}
	Number                    // \p{N}
	Space                     // \s
	Upper                     // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}], o200k_base's leading run of a word
	Lower                     // [\p{Ll}\p{Lm}\p{Lo}\p{M}], o200k_base's trailing run
	Newline                   // [\r\n]
)

// ClassOf computes a character's classes from the unicode package. The
// tokenizer reads them from the table BuildClasses makes of this function.
func ClassOf(r rune) uint8 {
	var c uint8
	if unicode.In(r, unicode.L) {
		c |= Letter
	}
	if unicode.In(r, unicode.N) {
		c |= Number
	}
	if unicode.IsSpace(r) {
		c |= Space
	}
	if unicode.In(r, unicode.Lu, unicode.Lt, unicode.Lm, unicode.Lo, unicode.M) {
		c |= Upper
	}
	if unicode.In(r, unicode.Ll, unicode.Lm, unicode.Lo, unicode.M) {
		c |= Lower
	}
	if r == '\r' || r == '\n' {
		c |= Newline
	}
	return c
}

// A classes file is a two-level table over all of Unicode:
//
//	magic   "aqcls\x00\x00\x01"
//	blocks  number of distinct 256-character blocks, uint32 little-endian
//	index   0x1100 uint16 little-endian: the block of characters [i<<8, i<<8+256)
//	data    blocks*256 class bytes; block 0 is characters 0-255
const (
	classMagic  = "aqcls\x00\x00\x01"
	indexLen    = 2 * ((unicode.MaxRune + 1) >> 8)
	classHeader = len(classMagic) + 4
)

// Classes is the class table read in place from a classes file.
type Classes struct {
	index string
	data  string
}

// ParseClasses checks a classes file's sizes and returns the table over it.
func ParseClasses(file string) (Classes, error) {
	if len(file) < classHeader+indexLen || file[:len(classMagic)] != classMagic {
		return Classes{}, errors.New("not a character classes file (bad magic)")
	}
	blocks := int(u32(file, len(classMagic)))
	if want := classHeader + indexLen + blocks<<8; blocks < 1 || len(file) != want {
		return Classes{}, fmt.Errorf("character classes file is %d bytes, its header says %d", len(file), want)
	}
	return Classes{index: file[classHeader : classHeader+indexLen], data: file[classHeader+indexLen:]}, nil
}

// Of returns the classes of r, a valid character.
func (c Classes) Of(r rune) uint8 {
	if r < 0x100 {
		return c.data[r]
	}
	i := int(r>>8) << 1
	block := int(c.index[i]) | int(c.index[i+1])<<8
	return c.data[block<<8|int(r&0xff)]
}

// Latin1 returns the classes of the character b (below 0x100).
func (c Classes) Latin1(b byte) uint8 { return c.data[b] }

// BuildClasses returns the classes file of ClassOf.
func BuildClasses() []byte {
	var index []byte
	var data []byte
	seen := map[string]int{}
	block := make([]byte, 256)
	for hi := rune(0); hi <= unicode.MaxRune>>8; hi++ {
		for lo := range rune(256) {
			block[lo] = ClassOf(hi<<8 | lo)
		}
		i, ok := seen[string(block)]
		if !ok {
			i = len(seen)
			seen[string(block)] = i
			data = append(data, block...)
		}
		index = append(index, byte(i), byte(i>>8))
	}
	out := append([]byte(classMagic), appendU32(nil, uint32(len(seen)))...)
	out = append(out, index...)
	return append(out, data...)
}
