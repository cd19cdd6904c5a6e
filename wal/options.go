package wal

import (
	"fmt"
	"log"
	"os"
	"time"
)

// SyncPolicy says when the Writer calls fdatasync. See the package comment.
type SyncPolicy uint8

// Sync policies. The zero value is SyncGroup, the default.
const (
	SyncGroup  SyncPolicy = iota // fdatasync every GroupRecords records or GroupDelay, whichever first
	SyncAlways                   // Append returns after a sync covering its record
	SyncNone                     // the OS decides; durable means written
)

var syncPolicyNames = [...]string{SyncGroup: "group", SyncAlways: "always", SyncNone: "none"}

func (p SyncPolicy) String() string {
	if int(p) < len(syncPolicyNames) {
		return syncPolicyNames[p]
	}
	return fmt.Sprintf("SyncPolicy(%d)", uint8(p))
}

// ParseSyncPolicy parses "always", "group" or "none".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	for i, n := range syncPolicyNames {
		if n == s {
			return SyncPolicy(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown sync policy %q (want always, group or none)", ErrBadOptions, s)
}

// Defaults for Options.
const (
	DefaultGroupRecords = 1024
	DefaultGroupDelay   = 200 * time.Microsecond
	DefaultBufferSize   = 4 << 20
	// MaxBufferSize bounds Options.BufferSize.
	MaxBufferSize = 1 << 30
)

// Options configure a Writer. The zero value gives the defaults.
type Options struct {
	// SegmentSize is the capacity of each segment file, preallocated at
	// creation (default 64 MiB; at most MaxSegmentSize). It must hold at
	// least one record of MaxRecordSize.
	SegmentSize int64
	// MaxRecordSize bounds a payload (default 1 MiB, at most
	// MaxRecordSizeLimit). It is checked by Append and recorded in each
	// segment header so that readers check it too.
	MaxRecordSize int
	// Sync is the sync policy (default SyncGroup).
	Sync SyncPolicy
	// GroupRecords and GroupDelay trigger a group commit: whichever comes
	// first after the oldest unsynced record. Defaults 1024 and 200µs.
	GroupRecords int
	GroupDelay   time.Duration
	// BufferSize is the size of each of the two append buffers (default
	// 4 MiB, at least twice the largest record frame). Append blocks while
	// both are full.
	BufferSize int
	// FS is the file system (default OSFS).
	FS FS
	// OnFatal is called once, on the flusher goroutine, when a write or sync
	// fails. The Writer is then permanently failed; the process must exit
	// and recover. The default logs the error and calls os.Exit(1).
	OnFatal func(error)
	// OnDurable, if set, is called on the flusher goroutine after each
	// advance of DurableLSN with the new value. It must be quick and must
	// not call the Writer's blocking methods (Append, Sync, WaitDurable,
	// Close).
	OnDurable func(durableLSN uint64)
}

func defaultOnFatal(err error) {
	log.Printf("%v", err)
	os.Exit(1)
}

// withDefaults fills in defaults and checks the bounds.
func (o Options) withDefaults() (Options, error) {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.MaxRecordSize == 0 {
		o.MaxRecordSize = DefaultMaxRecordSize
	}
	if o.GroupRecords == 0 {
		o.GroupRecords = DefaultGroupRecords
	}
	if o.GroupDelay == 0 {
		o.GroupDelay = DefaultGroupDelay
	}
	if o.BufferSize == 0 {
		o.BufferSize = DefaultBufferSize
	}
	if o.FS == nil {
		o.FS = OSFS{}
	}
	if o.OnFatal == nil {
		o.OnFatal = defaultOnFatal
	}
	switch {
	case o.MaxRecordSize < 0 || o.MaxRecordSize > MaxRecordSizeLimit:
		return o, fmt.Errorf("%w: MaxRecordSize %d outside [0, %d]", ErrBadOptions, o.MaxRecordSize, MaxRecordSizeLimit)
	case o.SegmentSize > MaxSegmentSize || o.SegmentSize < int64(segHeaderSize+frameSize(o.MaxRecordSize)+sealFrameSize):
		return o, fmt.Errorf("%w: SegmentSize %d must hold one record of MaxRecordSize and be at most %d", ErrBadOptions, o.SegmentSize, int64(MaxSegmentSize))
	case o.BufferSize < 2*(frameSize(o.MaxRecordSize)+sealFrameSize) || o.BufferSize > MaxBufferSize:
		return o, fmt.Errorf("%w: BufferSize %d must be at least twice the largest frame and at most %d", ErrBadOptions, o.BufferSize, MaxBufferSize)
	case o.GroupRecords < 0 || o.GroupDelay < 0:
		return o, fmt.Errorf("%w: negative GroupRecords or GroupDelay", ErrBadOptions)
	case o.Sync > SyncNone:
		return o, fmt.Errorf("%w: unknown sync policy %d", ErrBadOptions, o.Sync)
	}
	return o, nil
}
