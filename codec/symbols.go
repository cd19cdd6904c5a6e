package codec

import (
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
// SymbolTable. Hits are a map lookup keyed by the input bytes, which Go
// performs without converting (and so without allocating) the key.
type SymbolCache struct {
	t   *SymbolTable
	ids map[string]Symbol
}

// NewSymbolCache returns a cache over t.
func NewSymbolCache(t *SymbolTable) *SymbolCache {
	return &SymbolCache{t: t, ids: make(map[string]Symbol, 64)}
}

// Table returns the shared table behind the cache.
func (c *SymbolCache) Table() *SymbolTable { return c.t }

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
	if id, ok := c.ids[string(name)]; ok {
		return id, nil
	}
	return c.internSlow(name)
}

func (c *SymbolCache) internSlow(name []byte) (Symbol, error) {
	if !ValidSymbolName(name) {
		return 0, ErrInvalidSymbol
	}
	id, err := c.t.Intern(name)
	if err != nil {
		return 0, err
	}
	c.ids[string(name)] = id
	return id, nil
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
