package clock

import "testing"

func TestMonoNsIncreases(t *testing.T) {
	a := MonoNs()
	if a <= 0 {
		t.Fatalf("MonoNs() = %d, want > 0", a)
	}
	for i := 0; i < 1000; i++ {
		b := MonoNs()
		if b < a {
			t.Fatalf("MonoNs went backwards: %d then %d", a, b)
		}
		a = b
	}
}
