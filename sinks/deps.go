package sinks

// The sinks' client libraries, named here until their writers land so that
// go.mod lists them for every branch (removed once the writers import them).
import (
	_ "github.com/klauspost/compress/zstd"
)
