package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"slices"
	"testing"

	"qstream/codec"
)

func TestControlRecordsRoundTrip(t *testing.T) {
	for _, c := range []struct {
		sym  codec.Symbol
		name string
	}{{1, "A"}, {65535, "BTC-USD"}, {1 << 20, string(bytes.Repeat([]byte("x"), codec.MaxSymbolLen))}} {
		sym, name, err := DecodeSymbolRecord(AppendSymbolRecord(nil, c.sym, c.name))
		if err != nil || sym != c.sym || string(name) != c.name {
			t.Fatalf("symbol %d %q: got %d %q %v", c.sym, c.name, sym, name, err)
		}
	}
	for _, c := range []struct {
		src int
		wm  int64
		seq uint64
	}{{0, 0, 0}, {65535, math.MinInt64, math.MaxUint64}, {3, 1_700_000_000_123_456_789, 42}} {
		src, wm, seq, err := DecodeWatermarkRecord(AppendWatermarkRecord(nil, c.src, c.wm, c.seq))
		if err != nil || src != c.src || wm != c.wm || seq != c.seq {
			t.Fatalf("watermark %+v: got %d %d %d %v", c, src, wm, seq, err)
		}
	}
	id, name, err := DecodeSourceRecord(AppendSourceRecord(nil, 7, "tcp:127.0.0.1:9000"))
	if err != nil || id != 7 || string(name) != "tcp:127.0.0.1:9000" {
		t.Fatalf("source: %d %q %v", id, name, err)
	}
	for _, bad := range [][]byte{nil, {1, 0, 0, 0}, {0, 0, 0, 0, 'A'}, bytes.Repeat([]byte{1}, 4+codec.MaxSymbolLen+1)} {
		if _, _, err := DecodeSymbolRecord(bad); !errors.Is(err, &codec.Error{Reason: codec.ReasonMalformed}) {
			t.Errorf("symbol record %x: err %v", bad, err)
		}
	}
	wm := AppendWatermarkRecord(nil, 1, 2, 3)
	wm[3] = 1
	if _, _, _, err := DecodeWatermarkRecord(wm); err == nil {
		t.Error("watermark record with reserved bytes set accepted")
	}
	if _, _, err := DecodeSourceRecord([]byte{1, 0, 2, 0}); err == nil {
		t.Error("source record with reserved bytes set accepted")
	}
	// The flags: bit 0 is sourceOffsetIDs, pinned as bytes; the flagless
	// record of AppendSourceRecord is the one older builds wrote.
	if got := appendSourceRecord(nil, 7, sourceOffsetIDs, "syn"); !bytes.Equal(got, []byte{7, 0, 1, 0, 's', 'y', 'n'}) {
		t.Fatalf("source record with offset ids: %v", got)
	}
	if got := AppendSourceRecord(nil, 7, "syn"); !bytes.Equal(got, []byte{7, 0, 0, 0, 's', 'y', 'n'}) {
		t.Fatalf("source record: %v", got)
	}
	if id, flags, name, err := decodeSourceRecord([]byte{7, 0, 1, 0, 's'}); err != nil || id != 7 || flags != sourceOffsetIDs || string(name) != "s" {
		t.Fatalf("source record with offset ids: %d %d %q %v", id, flags, name, err)
	}
}

func sampleEngineState() *engineState {
	return &engineState{shards: 3, symbols: []string{"AAPL", "MSFT", "BTC-USD"}, sources: []sourceState{
		{id: 0, name: "synthetic", lsn: 1000, offset: 99, maxTsNs: 1700000000000000000, sentWmNs: 1699999999000000000, holds: true},
		{id: 2, name: "tcp", closed: true, lsn: 12, offset: 5, maxTsNs: math.MinInt64, sentWmNs: math.MinInt64},
	}}
}

func TestEngineStateRoundTrip(t *testing.T) {
	st := sampleEngineState()
	b := appendEngineState(nil, st)
	got, err := decodeEngineState(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.shards != st.shards || len(got.sources) != 2 || got.sources[1] != st.sources[1] || got.sources[0] != st.sources[0] ||
		len(got.symbols) != 3 || got.symbols[2] != "BTC-USD" {
		t.Fatalf("round trip: %+v", got)
	}
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 0x40
		if _, err := decodeEngineState(c); !errors.Is(err, ErrCheckpointState) {
			t.Fatalf("bit flip at %d accepted", i)
		}
	}
	if _, err := decodeEngineState(b[:len(b)-1]); err == nil {
		t.Fatal("truncated engine state accepted")
	}
}

// TestEngineStateVersions: a source's offset-ids flag (bit 2 of its flags)
// round-trips in a version 2 section, which is written only when a source
// has it; a version 1 section, as builds before it wrote (the bytes are
// written down), still loads, and in version 1 the bit is refused.
func TestEngineStateVersions(t *testing.T) {
	le := binary.LittleEndian
	v1 := []byte("QENG\x01\x00\x00\x00" + // magic, version 1, reserved
		"\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00" + // 1 shard, 1 source, 1 symbol, reserved
		"\x03\x00\x02\x00\x03\x00\x00\x00" + // id 3, flags holds, name length 3
		"\x0a\x00\x00\x00\x00\x00\x00\x00\x63\x00\x00\x00\x00\x00\x00\x00" + // lsn 10, offset 99
		"\x05\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00" + // maxTs 5, sentWm 4
		"syn\x04AAPL")
	v1 = le.AppendUint32(v1, crc32.Checksum(v1, stateCRC))
	st, err := decodeEngineState(v1)
	if err != nil {
		t.Fatal(err)
	}
	want := sourceState{id: 3, name: "syn", holds: true, lsn: 10, offset: 99, maxTsNs: 5, sentWmNs: 4}
	if st.version != 1 || len(st.sources) != 1 || st.sources[0] != want || st.symbols[0] != "AAPL" {
		t.Fatalf("version 1 section: %+v", st)
	}
	if again := appendEngineState(nil, &engineState{shards: 1, sources: []sourceState{want}, symbols: []string{"AAPL"}}); !bytes.Equal(again, v1) {
		t.Fatalf("a section without offset ids is not written as version 1:\n%x\n%x", again, v1)
	}
	flagged := slices.Clone(v1[:len(v1)-4])
	flagged[26] |= 4 // offset ids, in version 1
	flagged = le.AppendUint32(flagged, crc32.Checksum(flagged, stateCRC))
	if _, err := decodeEngineState(flagged); !errors.Is(err, ErrCheckpointState) {
		t.Fatalf("version 1 with the offset-ids flag: %v", err)
	}
	want.offsetIDs = true
	b := appendEngineState(nil, &engineState{shards: 1, sources: []sourceState{want}, symbols: []string{"AAPL"}})
	if le.Uint16(b[4:]) != 2 || le.Uint16(b[engStateHeader+2:]) != 6 {
		t.Fatalf("a section with offset ids: version %d, flags %d", le.Uint16(b[4:]), le.Uint16(b[engStateHeader+2:]))
	}
	if st, err := decodeEngineState(b); err != nil || st.version != 2 || st.sources[0] != want {
		t.Fatalf("version 2 round trip: %+v %v", st, err)
	}
}

func TestShardStateDecodeRejects(t *testing.T) {
	s := &shard{id: 1, e: &Engine{shards: make([]*shard, 2)}, strs: []*shardStream{{proc: nopProc{}, wmNs: 12345}}, dedup: newDedupSet(8)}
	s.dedup.seen(77)
	b := s.appendSnapshot(nil)
	st, err := decodeShardState(b)
	if err != nil || st.shard != 1 || st.shards != 2 || st.wmNs != 12345 || len(st.proc) != 0 || len(st.dedup) != 16 {
		t.Fatalf("decode: %+v %v", st, err)
	}
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 1
		if _, err := decodeShardState(c); err == nil {
			t.Fatalf("bit flip at %d accepted", i)
		}
	}
}

// FuzzEngineCheckpointState: the decoders of the engine's checkpoint
// sections and WAL control records never panic and never allocate beyond
// what their input describes; whatever the engine-section decoder accepts
// re-encodes to the same bytes. Seeded with real encodings.
func FuzzEngineCheckpointState(f *testing.F) {
	f.Add(appendEngineState(nil, sampleEngineState()))
	f.Add(appendEngineState(nil, &engineState{shards: 1}))
	f.Add(appendEngineState(nil, &engineState{shards: 1, sources: []sourceState{{name: "syn", offset: 7, offsetIDs: true}}}))
	s := &shard{id: 0, e: &Engine{shards: make([]*shard, 1)}, strs: []*shardStream{{proc: nopProc{}}}, dedup: newDedupSet(4)}
	s.dedup.seen(1)
	s.dedup.seen(2)
	f.Add(s.appendSnapshot(nil))
	f.Add(AppendWatermarkRecord(nil, 1, 2, 3))
	f.Add(AppendSymbolRecord(nil, 9, "ETH-USD"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if st, err := decodeEngineState(b); err == nil {
			if again := appendEngineState(nil, st); !bytes.Equal(again, b) {
				t.Fatalf("accepted engine state re-encodes differently")
			}
		}
		if st, err := decodeShardState(b); err == nil {
			d := newDedupSet(16)
			_ = d.loadState(st.dedup)
		}
		DecodeWatermarkRecord(b)
		DecodeSymbolRecord(b)
		DecodeSourceRecord(b)
	})
}
