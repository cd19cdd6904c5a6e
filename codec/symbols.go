package codec

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// ErrSymbolTableFull is returned by Intern when the table holds its maximum
// number of symbols; the caller rejects the event with ReasonUnknownSymbol.
var ErrSymbolTableFull = errors.New("codec: symbol table full")

// ErrUnknownSymbol is returned by Intern on a frozen table for a name it does
// not hold.
var ErrUnknownSymbol = errors.New("codec: unknown symbol")

// ErrInvalidSymbol is returned by SymbolCache.Intern for a name that
// ValidSymbolName refuses; parsers reject the message as ReasonMalformed.
var ErrInvalidSymbol = errors.New("codec: symbol is not valid UTF-8 or holds a control character")

// ErrSymbolNotInterned is returned by a lookup-only SymbolCache (see
// NewLookupSymbolCache) for a valid name that the table does not hold yet.
// It is not a rejection: a parser with ParserOptions.LookupOnly returns it
// from its Parse call unchanged, and the caller parses the message again
// with an interning parser, in input order.
var ErrSymbolNotInterned = errors.New("codec: symbol not interned yet")

// MaxSymbolLen bounds an interned name; longer names are rejected.
const MaxSymbolLen = 64

// SymbolTable interns instrument names to dense ids starting at 1. It is
// shared by every feed of an engine and safe for concurrent use.
//
// Lookups of known names do not allocate: each parser keeps a SymbolCache in
// front of the table and only reaches the table (under its mutex) the first
// time it sees a name. Inserting a new name allocates once for the copy of
// the name; that is start-up or first-sight cost, not per-message cost.
type SymbolTable struct {
	mu     sync.Mutex
	ids    map[string]Symbol
	names  []string // names[id]; names[0] = ""
	max    int
	frozen atomic.Bool
	n      atomic.Uint32
}

// NewSymbolTable returns a table that holds at most max symbols.
func NewSymbolTable(max int) *SymbolTable {
	if max <= 0 {
		max = 1 << 16
	}
	return &SymbolTable{
		ids:   make(map[string]Symbol, min(max, 1<<12)),
		names: append(make([]string, 0, min(max+1, 1<<12)), ""),
		max:   max,
	}
}

// Freeze stops the table from accepting new names: a configured universe.
func (t *SymbolTable) Freeze() { t.frozen.Store(true) }

// Len returns the number of interned symbols.
func (t *SymbolTable) Len() int { return int(t.n.Load()) }

// Max returns the capacity given to NewSymbolTable. Symbol ids are < Max()+1.
func (t *SymbolTable) Max() int { return t.max }

// Intern returns the id of name, adding it if it is new.
func (t *SymbolTable) Intern(name []byte) (Symbol, error) {
	if len(name) == 0 || len(name) > MaxSymbolLen {
		return 0, ErrUnknownSymbol
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids[string(name)]; ok {
		return id, nil
	}
	if t.frozen.Load() {
		return 0, ErrUnknownSymbol
	}
	if len(t.names)-1 >= t.max {
		return 0, ErrSymbolTableFull
	}
	s := string(name)
	id := Symbol(len(t.names))
	t.names = append(t.names, s)
	t.ids[s] = id
	t.n.Store(uint32(id))
	return id, nil
}

// InternString is Intern for a string.
func (t *SymbolTable) InternString(name string) (Symbol, error) {
	return t.Intern([]byte(name))
}

// Lookup returns the id of name without adding it.
func (t *SymbolTable) Lookup(name []byte) (Symbol, bool) {
	t.mu.Lock()
	id, ok := t.ids[string(name)]
	t.mu.Unlock()
	return id, ok
}

// Name returns the name of id, or "" for an id the table does not hold.
// The returned string is immutable and may be kept.
func (t *SymbolTable) Name(id Symbol) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(id) < len(t.names) {
		return t.names[id]
	}
	return ""
}

// Names returns a copy of all names indexed by id (index 0 is "").
func (t *SymbolTable) Names() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.names...)
}

// SymbolCache is a per-parser, single-goroutine cache in front of a shared
// SymbolTable. It is an open-addressing hash table of its own (linear
// probing over a power-of-two slot array, names in one byte arena), so a hit
// is a hash of the input bytes, usually one probe and one compare: no Go map,
// no string conversion, no allocation. It grows (allocating) only when a
// name is added, which is first-sight cost.
type SymbolCache struct {
	t          *SymbolTable
	slots      []symSlot // len a power of two, at most half full
	used       int
	arena      []byte // the names of the slots
	lookupOnly bool
}

// symSlot is one entry of a SymbolCache; id 0 marks an empty slot.
type symSlot struct {
	id   Symbol
	h    uint32 // the hash's high half, compared before the bytes
	off  uint32 // the name is arena[off : off+n]
	n    uint32
	word uint64 // a name of at most eight bytes, packed (symHash)
}

// symCacheSlots is the initial number of slots of a SymbolCache.
const symCacheSlots = 256

// NewSymbolCache returns a cache over t.
func NewSymbolCache(t *SymbolTable) *SymbolCache {
	return &SymbolCache{t: t, slots: make([]symSlot, symCacheSlots), arena: make([]byte, 0, 16*symCacheSlots/2)}
}

// NewLookupSymbolCache returns a cache over t that never adds a name to t:
// Intern of a valid name that t does not hold returns ErrSymbolNotInterned.
// Parsers that run in parallel over one input use it, so that ids are
// assigned by one goroutine in input order (the ids decide shard routing,
// and a replay must route alike on every run): whether such a parser finds a
// name or not, the id it would use is the one that goroutine gave it.
func NewLookupSymbolCache(t *SymbolTable) *SymbolCache {
	c := NewSymbolCache(t)
	c.lookupOnly = true
	return c
}

// Table returns the shared table behind the cache.
func (c *SymbolCache) Table() *SymbolTable { return c.t }

// symHash hashes a name: eight bytes at a time, the tail packed into one
// word, finished with Mix64. For a name of at most eight bytes it also
// returns the name packed into a word (little-endian), which identifies it
// among names of its length.
func symHash(b []byte) (h, word uint64) {
	h = uint64(len(b))
	if len(b) == 8 {
		word = binary.LittleEndian.Uint64(b)
	}
	for len(b) >= 8 {
		h = Mix64(h ^ binary.LittleEndian.Uint64(b))
		b = b[8:]
	}
	var x uint64
	for i := len(b) - 1; i >= 0; i-- {
		x = x<<8 | uint64(b[i])
	}
	if word == 0 {
		word = x
	}
	return Mix64(h ^ x ^ 0x9E3779B97F4A7C15), word
}

// Intern returns the id of name, consulting the shared table on a miss.
//
// A SymbolCache is how every wire parser interns, so it is where names from
// the wire are checked: a name that ValidSymbolName refuses is
// ErrInvalidSymbol and never reaches the table. The check runs on a miss
// only (a cached name was checked when it was added), so known names cost
// nothing more. The table itself takes any bytes, so that a WAL or
// checkpoint written before the check existed still recovers; the output
// encoders escape whatever they are given.
func (c *SymbolCache) Intern(name []byte) (Symbol, error) {
	h, w := symHash(name)
	mask := uint64(len(c.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &c.slots[i]
		if s.id == 0 {
			break
		}
		if s.h == uint32(h>>32) && int(s.n) == len(name) {
			if len(name) <= 8 { // the usual ticker: one compare of words
				if s.word == w {
					return s.id, nil
				}
			} else if string(c.arena[s.off:s.off+s.n]) == string(name) {
				return s.id, nil
			}
		}
	}
	return c.internSlow(name, h, w)
}

func (c *SymbolCache) internSlow(name []byte, h, w uint64) (Symbol, error) {
	if !ValidSymbolName(name) {
		return 0, ErrInvalidSymbol
	}
	var id Symbol
	if c.lookupOnly {
		var ok bool
		if id, ok = c.t.Lookup(name); !ok {
			// Frozen and full tables, too: the interning parser decides.
			return 0, ErrSymbolNotInterned
		}
	} else {
		var err error
		if id, err = c.t.Intern(name); err != nil {
			return 0, err
		}
	}
	c.add(name, h, w, id)
	return id, nil
}

// add puts a name the table holds into the cache, doubling the slots first
// when that would make them more than half full.
func (c *SymbolCache) add(name []byte, h, w uint64, id Symbol) {
	if 2*(c.used+1) > len(c.slots) {
		old := c.slots
		c.slots = make([]symSlot, 2*len(old))
		for _, s := range old {
			if s.id != 0 {
				sh, _ := symHash(c.arena[s.off : s.off+s.n])
				c.put(s, sh)
			}
		}
	}
	off := len(c.arena)
	c.arena = append(c.arena, name...)
	c.put(symSlot{id: id, h: uint32(h >> 32), off: uint32(off), n: uint32(len(name)), word: w}, h)
	c.used++
}

func (c *SymbolCache) put(s symSlot, h uint64) {
	mask := uint64(len(c.slots) - 1)
	i := h & mask
	for c.slots[i].id != 0 {
		i = (i + 1) & mask
	}
	c.slots[i] = s
}

// ValidSymbolName reports whether name may be taken from the wire as a
// symbol: valid UTF-8 without control characters (C0, DEL, C1). Symbols are
// written into every output line, and JSON output must be valid UTF-8; a
// name that is not is bad input, not something to repair silently. It does
// not allocate.
func ValidSymbolName(name []byte) bool {
	for i := 0; i < len(name); {
		c := name[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(name[i:])
		if r == utf8.RuneError && size == 1 || r >= 0x80 && r < 0xa0 {
			return false
		}
		i += size
	}
	return true
}
