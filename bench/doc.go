// Package bench holds qstream's cross-package benchmarks (the in-process
// pipeline, end-to-end paths) and the load generators they use. Nothing in
// the product imports it. Per-package micro-benchmarks live next to their
// code; BENCHMARKS.md records a run of `make bench`.
package bench
