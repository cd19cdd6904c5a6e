package feeds

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"qstream/codec"
)

// The fuzz seeds stay small, so that minimising what grows from them takes
// seconds rather than the whole -fuzzminimizetime, and still are lines of
// the real recordings that decode to events.
func TestCaptureFuzzSeeds(t *testing.T) {
	seeds := captureFuzzSeeds(t)
	var events uint64
	if len(seeds) < 10 {
		t.Fatalf("%d seeds; are the recordings there (%s)?", len(seeds), captureDir)
	}
	for i, s := range seeds {
		if len(s) > captureFuzzMaxSeed {
			t.Errorf("seed %d: %d bytes, over %d", i, len(s), captureFuzzMaxSeed)
		}
		if i == len(seeds)-1 {
			continue
		}
		r, err := NewCaptureReader(bytes.NewReader(s), CaptureOptions{Symbols: codec.NewSymbolTable(256)})
		if err != nil {
			t.Fatal(err)
		}
		var ev codec.Event
		for {
			err := r.Next(&ev)
			var rec *RecordError
			if err == io.EOF {
				break
			}
			if err != nil && !errors.As(err, &rec) {
				t.Fatalf("seed %d: %v", i, err)
			}
		}
		st := r.Stats()
		if st.Lines == 0 || st.Errors != 0 {
			t.Errorf("seed %d: %d lines, %d errors; want some, 0", i, st.Lines, st.Errors)
		}
		events += st.Events
	}
	if events == 0 {
		t.Errorf("the seeds decode to no event")
	}
}
