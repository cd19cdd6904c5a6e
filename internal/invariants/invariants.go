// Package invariants holds assertions that are checked only in invariants
// builds: under the build tag `invariants` or the race detector (`-race`).
// In release builds Enabled is the constant false, so a check written as
//
//	if invariants.Enabled && k > claimed {
//		invariants.Failf("ring: Publish(%d) with %d claimed", k, claimed)
//	}
//
// is removed by the compiler and costs nothing. Checks must never change
// behaviour: a program that does not violate an invariant runs the same with
// and without them. A violated invariant is a bug in the program, so it
// panics (it is never used for bad input).
package invariants

import "fmt"

// Assert panics with msg when Enabled and cond is false. msg should be a
// constant: building it with fmt would cost even when the check is off.
// Arguments are still evaluated in release builds unless the call is guarded
// by `if invariants.Enabled`; keep them trivial or guard the call.
func Assert(cond bool, msg string) {
	if Enabled && !cond {
		panic(violation(msg))
	}
}

// Failf panics with a formatted invariant violation. Call it only inside an
// `if invariants.Enabled && ...` block so that the arguments are never
// boxed in release builds.
func Failf(format string, args ...any) {
	panic(violation(fmt.Sprintf(format, args...)))
}

// Violation is the panic value of a failed check, so tests can tell an
// invariant violation from other panics.
type Violation string

func (v Violation) Error() string { return "invariant violated: " + string(v) }

func violation(msg string) Violation { return Violation(msg) }
