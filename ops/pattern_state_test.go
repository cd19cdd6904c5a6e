package ops

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"slices"
	"testing"
	"time"
)

// A version 1 pattern snapshot (written by the build before version 2, with
// prices in the ring and no deques: testdata/pattern_state_v1.bin, the
// state after the first 4000 events below) loads, re-encodes as the
// uninterrupted version 2 state and continues identically.
func TestPatternStateReadsVersion1(t *testing.T) {
	v1, err := os.ReadFile("testdata/pattern_state_v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	specs := append(patOracleSpecs(t), mustParsePatterns(t, `[
		{"id":"t1","type":"technical_signal","signal":"ema_cross","fast":3,"slow":8},
		{"id":"t2","type":"technical_signal","signal":"rsi_cross","period":5},
		{"id":"t3","type":"technical_signal","signal":"vwap_cross","symbols":["BBB","CCC"]}]`)...)
	evs := realTradeEvents(t)
	for i := range evs {
		if i%89 == 3 {
			evs[i].TsNs -= int64(time.Second)
		}
	}
	mk := func() *Pipeline {
		p, err := NewPipeline(PipelineConfig{Patterns: specs, PatternOptions: PatternOptions{MaxTradesPerSymbol: 300}, SymbolNames: patNames{}, MaxSymbolID: 64, MaxSlots: 8})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	const cut = 4000
	whole := mk()
	first := runEvents(whole, evs[:cut])
	v2 := whole.pat.AppendState(nil)
	rest := runEvents(whole, evs[cut:])

	p := mk()
	runEvents(p, evs[:cut]) // the slot table and the other operators
	for i := range p.pat.slots {
		p.pat.slots[i] = patSlot{}
	}
	p.pat.loadSyms = slices.Clone(p.syms[:p.nslots])
	if err := p.pat.LoadState(v1); err != nil {
		t.Fatal(err)
	}
	p.pat.loadSyms = nil
	held := 0
	for i := range p.pat.slots {
		if st := &p.pat.slots[i]; len(st.trails) > 0 {
			held += int(st.tail - st.trails[0].head)
		}
	}
	if held < 10 {
		t.Fatalf("the fixture holds %d trades: it proves little", held)
	}
	if got := p.pat.AppendState(nil); string(got) != string(v2) {
		t.Fatalf("version 1 state re-encodes as %d bytes, not as the %d of the uninterrupted run", len(got), len(v2))
	}
	sameOutputs(t, append(first, runEvents(p, evs[cut:])...), append(first, rest...))
}

// Corrupt version 2 deques are refused (the CRC is recomputed, so only the
// structural checks stand between them and the detector).
func TestPatternStateRefusesBadDeques(t *testing.T) {
	specs := patOracleSpecs(t)
	p := patPipeline(t, specs, PatternOptions{})
	runEvents(p, realTradeEvents(t)[:3000])
	good := p.pat.AppendState(nil)
	p.pat.loadSyms = slices.Clone(p.syms[:p.nslots])
	defer func() { p.pat.loadSyms = nil }()
	if err := p.pat.LoadState(good); err != nil {
		t.Fatal(err)
	}
	// The first slot's ring and deques: find a deque of two elements or
	// more by the layout.
	body := good[:len(good)-4]
	off := 4 + 4 + 8 + 4 + 16 // magic, version, config, nslots, stats
	off += 8 + 8 + 8          // flags, lastTs, prevPrice
	ntr := int(binary.LittleEndian.Uint32(body[off:]))
	nprev := int(binary.LittleEndian.Uint32(body[off+4:]))
	off += 8 + 8*nprev
	nents := int(binary.LittleEndian.Uint32(body[off:]))
	off += 8 + 16*nents
	nmax := int(binary.LittleEndian.Uint32(body[off:]))
	nmin := int(binary.LittleEndian.Uint32(body[off+4:]))
	cnt := off // where the count of the deque to corrupt is
	off += 8
	n := nmax
	if nmax < 2 { // the lows, after the highs
		cnt, off, n = cnt+4, off+16*nmax, nmin
	}
	if ntr == 0 || nents == 0 || n < 2 {
		t.Fatalf("slot 0: %d sets, %d trades, %d highs, %d lows: nothing to corrupt", ntr, nents, nmax, nmin)
	}
	for _, tc := range []struct {
		name string
		edit func(b []byte)
	}{
		{"positions not increasing", func(b []byte) { copy(b[off:off+8], b[off+16:off+24]) }},
		{"a price the next would have popped", func(b []byte) { copy(b[off+8:off+16], b[off+24:off+32]) }},
		{"too many elements", func(b []byte) { binary.LittleEndian.PutUint32(b[cnt:], uint32(nents+1)) }},
	} {
		bad := append([]byte(nil), body...)
		tc.edit(bad)
		bad = binary.LittleEndian.AppendUint32(bad, crc32.Checksum(bad, pipeCRCTable))
		if err := p.pat.LoadState(bad); err == nil {
			t.Errorf("%s: loaded", tc.name)
		}
	}
}
