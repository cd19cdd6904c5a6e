package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"strconv"
	"strings"
	"testing"
)

// TestReceiverMapsOutputsToSends feeds the receiver output lines of the
// engine's and the reference's shapes, in reads that split lines, and
// checks that each maps back to its message: latency from its intended
// time, duplicates and strangers counted, warm-up not recorded.
func TestReceiverMapsOutputsToSends(t *testing.T) {
	sched := OpenLoop{StartNs: 1_000_000, IntervalNs: 100}
	rc := newReceiver(sched, 5, 1)
	var out bytes.Buffer
	for i := int64(0); i < 5; i++ {
		ts := sched.Due(i)
		out.WriteString(`{"seq":` + strconv.FormatInt(i+1, 10) + `,"symbol":"S001","ts":` + strconv.FormatInt(ts, 10) + `,"price":100.5,"vwap":null}` + "\n")
	}
	out.WriteString(`{"seq":9,"symbol":"S001","ts":1000100,"price":1}` + "\n")  // message 1 again
	out.WriteString(`{"seq":10,"symbol":"S001","ts":1000150,"price":1}` + "\n") // between two messages
	out.WriteString(`{"window":"x"}` + "\n")                                    // no ts
	rc.run(&chunked{data: out.Bytes(), n: 7})
	res := E2EResult{Sent: 5}
	rc.fill(&res)
	if res.Received != 5 || res.Drops != 0 || res.Duplicates != 1 || res.Unknown != 2 || res.Warmup != 1 {
		t.Fatalf("received %d drops %d duplicates %d unknown %d warmup %d, want 5 0 1 2 1", res.Received, res.Drops, res.Duplicates, res.Unknown, res.Warmup)
	}
	if res.Latency.Count != 4 {
		t.Fatalf("histogram holds %d, want 4 (the warm-up message is not recorded)", res.Latency.Count)
	}
	if !res.Latency.Ordered() || res.Latency.MaxUs <= 0 {
		t.Fatalf("percentiles %+v", res.Latency)
	}
}

// chunked reads data n bytes at a time.
type chunked struct {
	data []byte
	n    int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[k:]
	return k, nil
}

func TestAppendTradeRoundTrip(t *testing.T) {
	line := AppendTrade(nil, 1234, 1_700_000_000_000_000_007, 100)
	want := `{"type":"trade","symbol":"S034","ts":1700000000000000007,"price":117.5,"volume":5}` + "\n"
	if string(line) != want {
		t.Fatalf("got %s want %s", line, want)
	}
	if ts, ok := lineTs(line); !ok || ts != 1_700_000_000_000_000_007 {
		t.Fatalf("lineTs = %d %v", ts, ok)
	}
}

// TestE2ESVGIsXML checks that the plot is well-formed XML with a curve per
// result.
func TestE2ESVGIsXML(t *testing.T) {
	h := NewLatencyHistogram()
	for i := int64(1); i <= 1000; i++ {
		RecordLatency(h, i*1000)
	}
	rep := &E2EReport{Machine: Machine{CPU: "A & B <cpu>"}}
	for _, target := range []string{TargetReference, TargetEngine} {
		for _, rate := range []int{10_000, 50_000, 100_000} {
			rep.Results = append(rep.Results, E2EResult{Target: target, Wait: "park", Rate: rate, Curve: Curve(h)})
		}
	}
	var b strings.Builder
	if err := WriteE2ESVG(&b, rep); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(strings.NewReader(b.String()))
	lines := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, b.String())
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	if lines != len(rep.Results) {
		t.Fatalf("%d curves, want %d", lines, len(rep.Results))
	}
}
