//go:build !race

package invariants

// RaceEnabled is true when the race detector is on. Tests use it to scale
// down work that the detector makes slow.
const RaceEnabled = false
