// Package wal is qstream's write-ahead log: segmented, preallocated files of
// checksummed records with group commit, an open-time check that tells a torn
// tail from corruption, a zero-allocation reader for replay, and an inspector.
//
// # Files
//
// A WAL is a directory of segments named <firstLSN as 16 lower-case hex
// digits>.wal, e.g. 0000000000000001.wal. A segment is preallocated to its
// capacity (Options.SegmentSize, default 64 MiB) with fallocate(2), falling
// back to a sparse ftruncate where the file system does not support it, so
// the bytes after the last record read as zeros. A segment starts with a
// 32-byte header (little-endian):
//
//	0  magic     "QWAL"
//	4  version   u16 (1)
//	6  hdrLen    u16 (32)
//	8  firstLSN  u64, equal to the number in the file name
//	16 capacity  u64, the preallocated size
//	24 maxRecord u32, the maximum payload size the writer enforced
//	28 crc       u32, CRC-32C (Castagnoli) of bytes 0..27
//
// A new segment is written as <name>.tmp, synced, renamed and the directory
// synced, so a segment that exists under its final name always has a valid
// header. Leftover .tmp files are removed by Open.
//
// # Records
//
// Records follow the header, each 8-byte aligned:
//
//	0  length    u32, payload bytes (0..maxRecord)
//	4  crc       u32, CRC-32C of bytes 8..end of padding, then of bytes 0..3
//	8  lsn       u64
//	16 type      u8 (RecordType)
//	17 reserved  7 bytes, zero
//	24 payload   length bytes
//	   padding   zero bytes up to the next multiple of 8
//
// The checksum covers every byte of the record except itself: the length,
// LSN, type, reserved bytes, payload and padding, so a flipped bit anywhere in
// a record is detected. A length above the segment's maxRecord is corruption
// and is never used to size an allocation. LSNs are dense: the records of a
// WAL carry 1, 2, 3, ... with no gaps across segments. A segment that is full
// ends with a seal record (an internal type, length 0) whose LSN field is the
// first LSN of the next segment; it consumes no LSN. Bytes after the seal are
// zero.
//
// # Durability and group commit
//
// Append copies a record into an in-memory buffer and returns its LSN. A
// single flusher goroutine writes buffers to the segment and, per
// Options.Sync, calls fdatasync:
//
//   - SyncGroup (the default): after GroupRecords records or GroupDelay,
//     whichever comes first; records that arrive while a sync is in flight
//     are committed by the next one. Append does not wait.
//   - SyncAlways: Append returns only after a sync that covers its record
//     (concurrent producers share syncs).
//   - SyncNone: the OS decides when data reaches the disk; a record counts as
//     durable once written to the file. Sync and Close still fsync.
//
// DurableLSN reports the highest LSN covered by a completed sync (under
// SyncNone: written). Upstream acknowledgements (webhook 202, JetStream ack,
// TCP ack frame) must be released only after WaitDurable returns nil or
// Options.OnDurable reports an LSN at or past the message's record; the
// callback lets a feed keep one ordered queue of pending acks instead of a
// goroutine per waiter.
//
// On OSFS the flusher's large writes and its fdatasyncs go through a
// per-segment io_uring (uring.go) and park the flusher goroutine in the
// netpoller until they complete, so a sync never blocks a thread of the Go
// runtime; QSTREAM_WAL_IO_URING=0 or a kernel without io_uring gives
// pwrite(2) and fdatasync(2).
//
// Memory is bounded: two buffers of Options.BufferSize. When both are in use
// Append blocks until the flusher frees one; that is the backpressure a feed
// turns into not reading from its socket.
//
// A failed write or fsync is never retried: after a failed fsync the kernel
// may have dropped the dirty pages, so a retry could report success for data
// that is gone. The Writer enters a sticky failed state: every blocked and
// future call returns an error wrapping ErrFailed, DurableLSN stops, and
// Options.OnFatal is called once (by default it logs and exits the process
// with status 1). The process must exit; Open on restart runs recovery.
//
// # Recovery (Open)
//
// Open scans every segment. All but the last must be complete: a valid
// header, records with the expected LSNs and checksums, a seal, and zeros
// after it. In the last segment the first invalid spot X (a partial header or
// payload, a checksum mismatch, a zero header followed by non-zero bytes) is a
// torn tail when no valid record with a higher LSN lies after it: a crashed
// process leaves at most the unfinished end of its last write. The bytes from
// X to the last non-zero byte are copied to <segment>.torn-<X>, synced, and
// the segment is cut back to X. Anything else - a bad record elsewhere, a bad
// record in the last segment followed by a valid later record, a checksum-
// valid record with the wrong LSN, a missing or misnamed segment - refuses to
// start with a *CorruptionError naming the segment file and byte offset.
//
// What cannot be told apart: damage confined to the last record of the last
// segment looks exactly like a torn write, so it is truncated (with the copy
// kept) rather than refused. A power failure that persisted a later page of
// an unsynced write but not an earlier one leaves a hole followed by valid,
// never-acknowledged records; Open refuses that state rather than guess, and
// Inspect shows the offsets for an operator to decide.
//
// # Reading and replay
//
// OpenReader iterates records from an LSN with no allocation per record;
// payloads are opaque to this package. Replay from a point in time is the
// caller's business because only the caller can decode the time in a payload:
// open a reader at the checkpoint's LSN (or 0) and call SkipUntil with a
// predicate such as "payload event time >= T"; records are in append order,
// not event-time order, so the predicate sees every record until it matches.
//
// # Retention
//
// DeleteBefore(lsn) removes whole segments whose records all have LSNs below
// lsn. Call it with the LSN of the oldest checkpoint that may still be loaded
// plus one, after that checkpoint is durable (see package checkpoint).
package wal
