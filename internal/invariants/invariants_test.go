package invariants

import (
	"errors"
	"strings"
	"testing"
)

// catch runs f and returns what it panicked with (nil if it did not).
func catch(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

func TestEnabledFollowsRace(t *testing.T) {
	// -race implies invariants; the reverse need not hold.
	if RaceEnabled && !Enabled {
		t.Fatal("race build without invariants enabled")
	}
}

func TestAssert(t *testing.T) {
	if v := catch(func() { Assert(true, "never") }); v != nil {
		t.Fatalf("Assert(true) panicked: %v", v)
	}
	v := catch(func() { Assert(false, "k <= claimed") })
	if !Enabled {
		if v != nil {
			t.Fatalf("release build: Assert(false) panicked: %v", v)
		}
		return
	}
	var viol Violation
	err, _ := v.(error)
	if !errors.As(err, &viol) || string(viol) != "k <= claimed" {
		t.Fatalf("Assert(false) panicked with %#v, want Violation(\"k <= claimed\")", v)
	}
	if got := viol.Error(); got != "invariant violated: k <= claimed" {
		t.Fatalf("Error() = %q", got)
	}
}

func TestFailf(t *testing.T) {
	v := catch(func() { Failf("ring: Publish(%d) with %d claimed", 5, 3) })
	viol, ok := v.(Violation)
	if !ok || !strings.Contains(string(viol), "Publish(5) with 3 claimed") {
		t.Fatalf("Failf panicked with %#v", v)
	}
}

func TestAssertDoesNotAllocate(t *testing.T) {
	n := 0
	if a := testing.AllocsPerRun(100, func() { n++; Assert(n > 0, "positive") }); a != 0 {
		t.Fatalf("Assert allocates %v times per call", a)
	}
}
