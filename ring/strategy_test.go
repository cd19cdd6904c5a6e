package ring

import (
	"errors"
	"testing"
)

func TestParseStrategy(t *testing.T) {
	tests := []struct {
		in   string
		want Strategy
		ok   bool
	}{
		{"spin", Spin, true},
		{"yield", Yield, true},
		{"park", Park, true},
		{"PARK", Park, true},
		{" Yield ", Yield, true},
		{"", 0, false},
		{"sleep", 0, false},
		{"spinning", 0, false},
		{"par", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseStrategy(tt.in)
		if tt.ok {
			if err != nil || got != tt.want {
				t.Errorf("ParseStrategy(%q) = %v, %v; want %v, nil", tt.in, got, err, tt.want)
			}
			continue
		}
		if !errors.Is(err, ErrStrategy) {
			t.Errorf("ParseStrategy(%q) error = %v; want one wrapping ErrStrategy", tt.in, err)
		}
	}
}

func TestStrategyStringRoundTrip(t *testing.T) {
	for s := Spin; s < strategyCount; s++ {
		got, err := ParseStrategy(s.String())
		if err != nil || got != s {
			t.Errorf("ParseStrategy(%v.String()) = %v, %v", s, got, err)
		}
	}
	if got := Strategy(9).String(); got != "Strategy(9)" {
		t.Errorf("Strategy(9).String() = %q", got)
	}
}
