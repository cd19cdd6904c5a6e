package ops

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseWindowSpecs(t *testing.T) {
	s, ms, m := int64(time.Second), int64(time.Millisecond), int64(time.Minute)
	for _, c := range []struct {
		in   string
		want WindowSpec
	}{
		{"tumbling:1m:vwap", WindowSpec{Type: WindowTumbling, SizeNs: m, HopNs: m, Agg: Aggregation{Kind: AggVWAP}}},
		{"tumbling:250ms:count", WindowSpec{Type: WindowTumbling, SizeNs: 250 * ms, HopNs: 250 * ms, Agg: Aggregation{Kind: AggCount}}},
		{"tumbling:1h+15m:avg:volume", WindowSpec{Type: WindowTumbling, SizeNs: 60 * m, HopNs: 60 * m, OffsetNs: 15 * m,
			Agg: Aggregation{Kind: AggAvg}, Field: FieldVolume}},
		{"tumbling:1d+5h:ohlcv", WindowSpec{Type: WindowTumbling, SizeNs: 24 * 60 * m, HopNs: 24 * 60 * m, OffsetNs: 300 * m,
			Agg: Aggregation{Kind: AggOHLCV}}},
		{"hopping:5m/1s:avg:volume", WindowSpec{Type: WindowHopping, SizeNs: 5 * m, HopNs: s, Agg: Aggregation{Kind: AggAvg}, Field: FieldVolume}},
		{"hopping:1m30s/30s:sum", WindowSpec{Type: WindowHopping, SizeNs: 90 * s, HopNs: 30 * s, Agg: Aggregation{Kind: AggSum}}},
		{"sliding:5m:max", WindowSpec{Type: WindowSliding, SizeNs: 5 * m, Agg: Aggregation{Kind: AggMax}}},
		{"sliding:5m/1s:min:bid", WindowSpec{Type: WindowSliding, SizeNs: 5 * m, HopNs: s, Agg: Aggregation{Kind: AggMin}, Field: FieldBid}},
		{"session:30s:twap", WindowSpec{Type: WindowSession, SizeNs: 30 * s, Agg: Aggregation{Kind: AggTWAP}}},
		{"count:100:stddev", WindowSpec{Type: WindowCount, Count: 100, Agg: Aggregation{Kind: AggStdDev}}},
		{"count:1:stddev_samp:spread", WindowSpec{Type: WindowCount, Count: 1, Agg: Aggregation{Kind: AggStdDevSample}, Field: FieldSpread}},
		{"tumbling:1s:p95", WindowSpec{Type: WindowTumbling, SizeNs: s, HopNs: s, Agg: Aggregation{Kind: AggPercentile, PercentileMilli: 95000}}},
		{"tumbling:1s:p99.9", WindowSpec{Type: WindowTumbling, SizeNs: s, HopNs: s, Agg: Aggregation{Kind: AggPercentile, PercentileMilli: 99900}}},
		{"tumbling:1s:p0.001", WindowSpec{Type: WindowTumbling, SizeNs: s, HopNs: s, Agg: Aggregation{Kind: AggPercentile, PercentileMilli: 1}}},
		{"tumbling:1s:p100:ask", WindowSpec{Type: WindowTumbling, SizeNs: s, HopNs: s, Agg: Aggregation{Kind: AggPercentile, PercentileMilli: 100000}, Field: FieldAsk}},
		{"tumbling:1s:range:mid", WindowSpec{Type: WindowTumbling, SizeNs: s, HopNs: s, Agg: Aggregation{Kind: AggCustom, Name: "range"}, Field: FieldMid}},
		{"tumbling:1s:band(-2.5)", WindowSpec{Type: WindowTumbling, SizeNs: s, HopNs: s, Agg: Aggregation{Kind: AggCustom, Name: "band", Params: [4]float64{-2.5}, NParams: 1}}},
	} {
		got, err := ParseWindowSpecs(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		c.want.Raw = c.in
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("%s:\n got  %+v\n want %+v", c.in, got, c.want)
			continue
		}
		if got[0].String() != c.in {
			t.Errorf("%s: String() = %q", c.in, got[0].String())
		}
		// The canonical rendering parses back to the same spec.
		canon := got[0].canonical()
		again, err := ParseWindowSpec(canon)
		if err != nil {
			t.Errorf("%s: canonical %q: %v", c.in, canon, err)
			continue
		}
		again.Raw = c.in
		if again != got[0] {
			t.Errorf("%s: canonical %q parses to %+v", c.in, canon, again)
		}
	}
	specs, err := ParseWindowSpecs(" tumbling:1m:vwap , hopping:5m/1s:avg:volume,tumbling:1s:band(1;),count:3:ohlcv")
	if err == nil {
		t.Fatalf("band(1;) accepted: %v", specs)
	}
	specs, err = ParseWindowSpecs(" tumbling:1m:vwap , hopping:5m/1s:avg:volume,count:3:ohlcv")
	if err != nil || len(specs) != 3 || specs[0].String() != "tumbling:1m:vwap" || specs[2].String() != "count:3:ohlcv" ||
		!specs[2].ValueIsObject() || specs[0].ValueIsObject() {
		t.Fatalf("list: %v %+v", err, specs)
	}
	if specs, err := ParseWindowSpecs(""); err != nil || specs != nil {
		t.Fatalf("empty: %v %v", specs, err)
	}
}

func TestParseWindowSpecsErrors(t *testing.T) {
	for _, c := range []struct{ in, msg string }{
		{"tumbling:1m", "want TYPE:PARAMS:AGG"},
		{"tumbling:1m:avg:price:x", "want TYPE:PARAMS:AGG"},
		{"rolling:1m:avg", "unknown window type"},
		{"tumbling:1x:avg", "bad duration"},
		{"tumbling:60:avg", "missing unit"},
		{"tumbling:0s:avg", "outside"},
		{"tumbling:-1s:avg", "bad duration"},
		{"tumbling:400d:avg", "bad duration"},
		{"tumbling:1m:median", "unknown aggregation"},
		{"tumbling:1m:p0", "bad percentile"},
		{"tumbling:1m:p101", "bad percentile"},
		{"tumbling:1m:p99.9999", "bad percentile"},
		{"tumbling:1m:avg:last", "unknown field"},
		{"tumbling:1m+1m:avg", "offset must be in [0, hop)"},
		{"sliding:1m+1s:avg", "bad duration"},
		{"hopping:5m:avg", "SIZE/HOP"},
		{"hopping:5m/0s:avg", "outside"},
		{"count:0:avg", "count"},
		{"count:x:avg", "count"},
		{"count:2000000:avg", "count"},
		{"session:1m:band", "one parameter"},
		{"session:1m:band(1;2)", "one parameter"},
		{"session:1m:range(1)", "no parameters"},
		{"session:1m:band(x)", "bad parameter"},
		{"session:1m:band(1", "unbalanced"},
		{"tumbling:1m:avg,tumbling:1m:avg", "duplicate"},
		{"tumbling:1m:avg,,count:2:sum", "empty item"},
	} {
		_, err := ParseWindowSpecs(c.in)
		if err == nil {
			t.Errorf("%q: accepted", c.in)
			continue
		}
		if !errors.Is(err, ErrBadWindowSpec) || !strings.HasPrefix(err.Error(), "ops: ") || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: error %q, want ErrBadWindowSpec mentioning %q", c.in, err, c.msg)
		}
		// The message names the bad item.
		bad := c.in
		if i := strings.IndexByte(c.in, ','); i >= 0 && c.msg != "empty item" {
			bad = c.in[i+1:]
		}
		if c.msg != "empty item" && !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: error %q does not name the item", c.in, err)
		}
	}
	many := strings.Repeat("count:1:sum,", MaxWindowSpecs) + "count:2:sum"
	if _, err := ParseWindowSpecs(many); err == nil {
		t.Error("more than MaxWindowSpecs accepted")
	}
}

func TestNewWindowSpec(t *testing.T) {
	spec, err := HoppingWindowSpec(int64(5*time.Minute), int64(time.Second), Aggregation{Kind: AggAvg}, FieldVolume)
	if err != nil || spec.String() != "hopping:5m/1s:avg:volume" {
		t.Fatalf("%v %q", err, spec.String())
	}
	spec, err = CountWindowSpec(10, Aggregation{Kind: AggPercentile, PercentileMilli: 99900}, FieldPrice)
	if err != nil || spec.String() != "count:10:p99.9" {
		t.Fatalf("%v %q", err, spec.String())
	}
	spec, err = SlidingWindowSpec(int64(1500*time.Millisecond), 0, Aggregation{Kind: AggCustom, Name: "band", Params: [4]float64{2}, NParams: 1}, FieldPrice)
	if err != nil || spec.String() != "sliding:1500ms:band(2)" {
		t.Fatalf("%v %q", err, spec.String())
	}
	if _, err := TumblingWindowSpec(0, Aggregation{Kind: AggAvg}, FieldPrice); !errors.Is(err, ErrBadWindowSpec) {
		t.Fatalf("zero size: %v", err)
	}
	if _, err := SessionWindowSpec(int64(time.Second), Aggregation{Kind: AggCustom, Name: "nope"}, FieldPrice); err == nil {
		t.Fatal("unknown custom accepted")
	}
	if FormatWindowDuration(int64(90*time.Second)) != "90s" || FormatWindowDuration(1500) != "1500ns" ||
		FormatWindowDuration(int64(2*24*time.Hour)) != "2d" || FormatWindowDuration(int64(3*time.Microsecond)) != "3us" {
		t.Fatal("FormatWindowDuration")
	}
}

func TestRegisterAggregation(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{{"avg", false}, {"range", false}, {"p9", false}, {"P1", false}, {"1x", false}, {"", false},
		{strings.Repeat("a", 33), false}, {"a-b", false}} {
		err := RegisterAggregation(c.name, func([]float64) (AggregationFunc, error) { return nil, nil })
		if (err == nil) != c.ok {
			t.Errorf("%q: %v", c.name, err)
		}
	}
	if err := RegisterAggregation("range", func([]float64) (AggregationFunc, error) { return nil, nil }); !errors.Is(err, ErrAggregationExists) {
		t.Errorf("re-register: %v", err)
	}
	if err := RegisterAggregation("zz_nil", nil); err == nil {
		t.Error("nil factory accepted")
	}
	names := RegisteredAggregations()
	if len(names) < 2 || names[0] > names[1] {
		t.Errorf("RegisteredAggregations = %v", names)
	}
}

// FuzzParseWindowSpecs: the parser never panics; what it accepts is valid,
// renders to a canonical text that parses back to the same spec, and its
// String is the input item.
func FuzzParseWindowSpecs(f *testing.F) {
	for _, s := range []string{"tumbling:1m:vwap", "hopping:5m/1s:avg:volume", "sliding:5m/1s:p99.9:spread",
		"session:30s:twap", "count:100:ohlcv", "tumbling:1h+15m:band(2):mid", "tumbling:1m:vwap,count:3:sum",
		"tumbling:1m:band(1;2", "hopping:1.5s/500ms:range", "tumbling:1d:p0.001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		specs, err := ParseWindowSpecs(in)
		if err != nil {
			if !errors.Is(err, ErrBadWindowSpec) {
				t.Fatalf("%q: error %v does not wrap ErrBadWindowSpec", in, err)
			}
			return
		}
		for _, s := range specs {
			if err := s.validate(); err != nil {
				t.Fatalf("%q: accepted invalid spec: %v", in, err)
			}
			again, err := ParseWindowSpec(s.canonical())
			if err != nil {
				t.Fatalf("%q: canonical %q: %v", in, s.canonical(), err)
			}
			again.Raw = s.Raw
			if again != s {
				t.Fatalf("%q: canonical %q parses to %+v, want %+v", in, s.canonical(), again, s)
			}
			if !strings.Contains(in, s.String()) {
				t.Fatalf("%q: String %q is not the user's text", in, s.String())
			}
		}
	})
}
