package ops

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
)

func TestParseIndicators(t *testing.T) {
	tests := []struct {
		in    string
		want  []IndicatorSpec
		names string // the JSON keys, comma-joined
	}{
		{DefaultIndicators, []IndicatorSpec{{IndSMA, 5}, {IndSMA, 20}, {IndEMA, 12}, {IndRSI, 14}, {IndVWAP, 0}}, "sma_5,sma_20,ema_12,rsi_14,vwap"},
		{"sma:5,sma:20,ema:12,rsi:14,vwap,vwap:14", []IndicatorSpec{{IndSMA, 5}, {IndSMA, 20}, {IndEMA, 12}, {IndRSI, 14}, {IndVWAP, 0}, {IndVWAPN, 14}}, "sma_5,sma_20,ema_12,rsi_14,vwap,vwap_14"},
		{" vwap:1 , rsi:100000 ", []IndicatorSpec{{IndVWAPN, 1}, {IndRSI, 100000}}, "vwap_1,rsi_100000"},
		{"ema:1", []IndicatorSpec{{IndEMA, 1}}, "ema_1"},
		{"sma:007", []IndicatorSpec{{IndSMA, 7}}, "sma_7"},
	}
	for _, tc := range tests {
		got, err := ParseIndicators(tc.in)
		if err != nil {
			t.Errorf("ParseIndicators(%q): %v", tc.in, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseIndicators(%q) = %v, want %v", tc.in, got, tc.want)
		}
		var names []string
		for _, s := range got {
			names = append(names, s.Name())
			if b := s.AppendName([]byte("x")); string(b) != "x"+s.Name() {
				t.Errorf("AppendName = %q, want %q", b, "x"+s.Name())
			}
		}
		if j := strings.Join(names, ","); j != tc.names {
			t.Errorf("ParseIndicators(%q) names %s, want %s", tc.in, j, tc.names)
		}
	}
}

func TestParseIndicatorsErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"", "empty indicator list"},
		{"   ", "empty indicator list"},
		{"sma", `"sma": missing period`},
		{"sma:", `"sma:": period must be`},
		{"sma:0", `"sma:0": period must be`},
		{"sma:100001", `"sma:100001": period must be`},
		{"sma:-5", `"sma:-5": period must be`},
		{"sma:+5", `"sma:+5": period must be`},
		{"sma:5x", `"sma:5x": period must be`},
		{"sma:99999999999999999999", `period must be`},
		{"macd:12", `"macd:12": unknown indicator`},
		{"SMA:5", `"SMA:5": unknown indicator`},
		{"sma:5,,ema:3", "empty item"},
		{"sma:5,", "empty item"},
		{"sma:5,sma:5", `"sma:5": duplicate`},
		{"vwap,vwap", `"vwap": duplicate`},
		{"vwap:3, vwap:3", `" vwap:3": duplicate`},
		{strings.Repeat("sma:1,", MaxValues) + "sma:2", "17 indicators, at most 16"},
	}
	for _, tc := range tests {
		got, err := ParseIndicators(tc.in)
		if err == nil {
			t.Errorf("ParseIndicators(%q) = %v, want an error", tc.in, got)
			continue
		}
		if !errors.Is(err, ErrIndicatorSpec) || !strings.HasPrefix(err.Error(), "ops: ") || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseIndicators(%q) error %q, want ErrIndicatorSpec mentioning %q", tc.in, err, tc.msg)
		}
	}
	// Exactly MaxValues is fine.
	var items []string
	for i := 1; i <= MaxValues; i++ {
		items = append(items, fmt.Sprintf("sma:%d", i))
	}
	if got, err := ParseIndicators(strings.Join(items, ",")); err != nil || len(got) != MaxValues {
		t.Errorf("%d indicators: %v, %v", MaxValues, len(got), err)
	}
}

func TestIndicatorSpecString(t *testing.T) {
	for _, s := range []IndicatorSpec{{IndSMA, 5}, {IndEMA, 12}, {IndRSI, 14}, {IndVWAP, 0}, {IndVWAPN, 14}} {
		back, err := ParseIndicators(s.String())
		if err != nil || len(back) != 1 || back[0] != s {
			t.Errorf("ParseIndicators(%q) = %v, %v; want %v", s.String(), back, err, s)
		}
	}
	if got := IndicatorKind(0).String(); got != "invalid" {
		t.Errorf("IndicatorKind(0) = %q", got)
	}
}

func TestParseEMASeed(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want EMASeed
		ok   bool
	}{{"sma", EMASeedSMA, true}, {"first", EMASeedFirst, true}, {"", 0, false}, {"SMA", 0, false}, {"ema", 0, false}} {
		got, err := ParseEMASeed(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseEMASeed(%q) = %v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrIndicatorSpec) {
			t.Errorf("ParseEMASeed(%q) error %v does not wrap ErrIndicatorSpec", tc.in, err)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("EMASeed(%d).String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}

func TestIndicatorOptionsNormalize(t *testing.T) {
	const day = DefaultSessionLengthNs
	tests := []struct {
		in      IndicatorOptions
		len, of int64
		ok      bool
	}{
		{IndicatorOptions{}, day, 0, true},
		{IndicatorOptions{SessionOffsetNs: 3600e9}, day, 3600e9, true},
		{IndicatorOptions{SessionOffsetNs: -3600e9}, day, day - 3600e9, true},
		{IndicatorOptions{SessionOffsetNs: day + 5}, day, 5, true},
		{IndicatorOptions{SessionLengthNs: 10, SessionOffsetNs: -25}, 10, 5, true},
		{IndicatorOptions{SessionLengthNs: MaxSessionLengthNs, SessionOffsetNs: math.MinInt64}, MaxSessionLengthNs, 0, true},
		{IndicatorOptions{SessionLengthNs: -1}, 0, 0, false},
		{IndicatorOptions{SessionLengthNs: MaxSessionLengthNs + 1}, 0, 0, false},
		{IndicatorOptions{EMASeed: 2}, 0, 0, false},
	}
	for _, tc := range tests {
		got, err := tc.in.normalize()
		if (err == nil) != tc.ok {
			t.Errorf("%+v: error %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if err == nil && (got.SessionLengthNs != tc.len || got.SessionOffsetNs != tc.of) {
			t.Errorf("%+v: got %+v, want length %d offset %d", tc.in, got, tc.len, tc.of)
		}
		if err != nil && !errors.Is(err, ErrIndicatorSpec) {
			t.Errorf("%+v: error %v does not wrap ErrIndicatorSpec", tc.in, err)
		}
	}
}

func TestNewIndicatorSetErrors(t *testing.T) {
	def, _ := ParseIndicators(DefaultIndicators)
	if got := IndicatorStateBytes(def, 1); got != 360 {
		t.Errorf("default set: %d bytes per slot, documented 360", got)
	}
	big := []IndicatorSpec{{IndVWAPN, MaxIndicatorPeriod}, {IndSMA, MaxIndicatorPeriod}}
	per := IndicatorStateBytes(big, 1)
	if want := int64(8*(8+2*MaxIndicatorPeriod+4+MaxIndicatorPeriod) + 4*3 + 24); per != want {
		t.Errorf("IndicatorStateBytes = %d, want %d", per, want)
	}
	fit := int(MaxIndicatorStateBytes / per)
	if fit < 1 {
		t.Fatal("test assumes one big slot fits")
	}
	tests := []struct {
		specs []IndicatorSpec
		opts  IndicatorOptions
		slots int
		want  error // nil: any error
	}{
		{nil, IndicatorOptions{}, 1, ErrIndicatorSpec},
		{[]IndicatorSpec{{IndSMA, 0}}, IndicatorOptions{}, 1, ErrIndicatorSpec},
		{[]IndicatorSpec{{IndVWAP, 3}}, IndicatorOptions{}, 1, ErrIndicatorSpec},
		{[]IndicatorSpec{{0, 3}}, IndicatorOptions{}, 1, ErrIndicatorSpec},
		{[]IndicatorSpec{{IndRSI, 3}, {IndRSI, 3}}, IndicatorOptions{}, 1, ErrIndicatorSpec},
		{make([]IndicatorSpec, MaxValues+1), IndicatorOptions{}, 1, ErrIndicatorSpec},
		{def, IndicatorOptions{SessionLengthNs: -5}, 1, ErrIndicatorSpec},
		{def, IndicatorOptions{}, 0, nil},
		{big, IndicatorOptions{}, fit + 1, ErrIndicatorStateTooLarge},
		{def, IndicatorOptions{}, math.MaxInt, ErrIndicatorStateTooLarge},
	}
	for i, tc := range tests {
		s, err := NewIndicatorSet(tc.specs, tc.opts, tc.slots)
		if err == nil {
			t.Errorf("case %d: got a set of %d slots, want an error", i, s.MaxSlots())
			continue
		}
		if !strings.HasPrefix(err.Error(), "ops: ") || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("case %d: error %q, want %v", i, err, tc.want)
		}
	}
	if testing.Short() {
		return
	}
	// The largest allowed configuration is accepted (and allocates ~1 GiB,
	// so only in the long form).
	if os.Getenv("QSTREAM_STRESS") != "" {
		if _, err := NewIndicatorSet(big, IndicatorOptions{}, fit); err != nil {
			t.Errorf("%d slots of %d bytes: %v", fit, per, err)
		}
	}
}

func FuzzParseIndicators(f *testing.F) {
	for _, s := range []string{DefaultIndicators, "sma:5,sma:20,ema:12,rsi:14,vwap,vwap:14", "vwap:1", "sma:", ",", "rsi:100000,ema:007", "sma:5,sma:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		specs, err := ParseIndicators(s)
		if err != nil {
			if !errors.Is(err, ErrIndicatorSpec) {
				t.Fatalf("error %v does not wrap ErrIndicatorSpec", err)
			}
			return
		}
		// What parses is a valid set configuration and prints back to itself.
		if _, err := NewIndicatorSet(specs, IndicatorOptions{}, 1); err != nil {
			t.Fatalf("parsed %v but NewIndicatorSet: %v", specs, err)
		}
		var items []string
		for _, sp := range specs {
			items = append(items, sp.String())
		}
		back, err := ParseIndicators(strings.Join(items, ","))
		if err != nil || fmt.Sprint(back) != fmt.Sprint(specs) {
			t.Fatalf("round trip of %v: %v, %v", specs, back, err)
		}
	})
}

func ExampleParseIndicators() {
	specs, err := ParseIndicators("sma:5,ema:12,rsi:14,vwap,vwap:14")
	if err != nil {
		panic(err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name()) // the JSON keys
	}
	fmt.Println(strings.Join(names, " "))
	_, err = ParseIndicators("sma:5,macd:12")
	fmt.Println(err)
	// Output:
	// sma_5 ema_12 rsi_14 vwap vwap_14
	// ops: bad indicator spec: "macd:12": unknown indicator (want sma:N, ema:N, rsi:N, vwap or vwap:N)
}

func ExampleIndicatorSet() {
	specs, _ := ParseIndicators("sma:3,ema:3,rsi:2,vwap,vwap:2")
	set, err := NewIndicatorSet(specs, IndicatorOptions{}, 2) // two symbols
	if err != nil {
		panic(err)
	}
	out := make([]float64, len(specs))
	trades := []struct{ price, volume float64 }{{10, 100}, {11, 300}, {10.5, 0}, {12, 100}}
	for i, tr := range trades {
		set.Update(0, int64(i)*1e9, tr.price, tr.volume, out) // slot 0; slot 1 is untouched
		fmt.Printf("%5.2f\n", out)
	}
	// Output:
	// [  NaN   NaN   NaN 10.00   NaN]
	// [  NaN   NaN   NaN 10.75 10.75]
	// [10.50 10.50 66.67 10.75 11.00]
	// [11.17 11.25 88.89 11.00 12.00]
}
