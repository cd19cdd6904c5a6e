package wal_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"qstream/wal"
)

// Example shows the write path (append, then acknowledge upstream only once
// durable) and a replay from an LSN.
func Example() {
	dir, err := os.MkdirTemp("", "wal-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	w, err := wal.Open(dir, wal.Options{Sync: wal.SyncGroup, SegmentSize: 4 << 20})
	if err != nil {
		panic(err)
	}
	var last uint64
	for _, msg := range []string{"AAPL 189.23", "MSFT 402.10", "AAPL 189.25"} {
		if last, err = w.Append(wal.TypeData, []byte(msg)); err != nil {
			panic(err)
		}
	}
	// A feed releases its upstream acknowledgement only now.
	if err := w.WaitDurable(context.Background(), last); err != nil {
		panic(err) // the Writer failed: exit and recover on restart
	}
	fmt.Println("durable through LSN", w.DurableLSN())
	if err := w.Close(); err != nil {
		panic(err)
	}

	r, err := wal.OpenReader(dir, 2)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		fmt.Println(rec.LSN, string(rec.Payload))
	}
	// Output:
	// durable through LSN 3
	// 2 MSFT 402.10
	// 3 AAPL 189.25
}

// ExampleReader_SkipUntil replays from the first record whose payload
// matches, as replay from an event time does with a decoded timestamp.
func ExampleReader_SkipUntil() {
	dir, err := os.MkdirTemp("", "wal-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	w, err := wal.Open(dir, wal.Options{SegmentSize: 4 << 20})
	if err != nil {
		panic(err)
	}
	for _, msg := range []string{"ts=100 a", "ts=200 b", "ts=300 c"} {
		if _, err := w.Append(wal.TypeData, []byte(msg)); err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	r, err := wal.OpenReader(dir, 0)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	err = r.SkipUntil(func(rec wal.Record) bool { return strings.HasPrefix(string(rec.Payload), "ts=2") })
	if err != nil {
		panic(err)
	}
	for rec, err := r.Next(); err == nil; rec, err = r.Next() {
		fmt.Println(rec.LSN, string(rec.Payload))
	}
	// Output:
	// 2 ts=200 b
	// 3 ts=300 c
}
