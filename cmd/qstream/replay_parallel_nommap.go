//go:build !unix

package main

import "os"

// mapInput does not map files on this platform: the caller reads them.
func mapInput(*os.File) ([]byte, func() error) { return nil, nil }
