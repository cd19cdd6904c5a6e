//go:build !invariants && !race

package invariants

// Enabled is true in invariants builds (build tag `invariants`, or -race).
const Enabled = false
