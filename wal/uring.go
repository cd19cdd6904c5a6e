package wal

import (
	"errors"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The flusher's large writes and its fdatasyncs go through an io_uring
// whose completions signal an eventfd that the Go netpoller watches: the
// flusher goroutine parks while the kernel writes and syncs, as it does on
// a socket, instead of blocking its thread in a system call.
//
// Why: a system call that blocks for longer than the runtime monitor's tick
// (20µs; an fdatasync takes 0.1-2ms on this machine's disk) makes the
// monitor take the thread's P away and poll every 20µs until it has been
// idle for a millisecond, and the thread must find a P again when the call
// returns. On two cores that the feed and a shard keep busy, that cost a
// durable `run --rate 0` a quarter of its throughput: 0.75x of the run
// without a WAL, 0.93x through the ring (5M events, 5 interleaved runs).
// With the WAL on tmpfs, where its calls do not block, a durable run
// matched the run without one; replacing its fdatasync by a 500µs
// nanosleep cost it 26%, and by a 500µs time.Sleep (a parked goroutine)
// nothing. The price: a lone synchronous commit (SyncAlways, one record)
// takes a kernel worker's and the netpoller's wake-ups more, 170 instead of
// 140µs here; group commits under load are as fast or faster.
//
// The ring is per open file, made on its first write or sync, with one
// operation in flight at a time (the flusher's calls are sequential). Where
// the kernel refuses io_uring (old kernels, seccomp, io_uring_disabled),
// the file falls back to pwrite(2) and fdatasync(2) for good.

const (
	sysIOUringSetup    = 425
	sysIOUringEnter    = 426
	sysIOUringRegister = 427

	ioringOffSQRing = 0
	ioringOffCQRing = 0x8000000
	ioringOffSQEs   = 0x10000000

	ioringOpFsync = 3
	ioringOpWrite = 23

	ioringFsyncDatasync   = 1
	ioringRegisterEventfd = 4
	ioringFeatSingleMmap  = 1
	iosqeAsync            = 1 << 4 // run in the kernel's workers: io_uring_enter returns at once

	uringEntries = 4
)

type uringSQOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type uringCQOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  uringSQOffsets
	cqOff                                                                  uringCQOffsets
}

type uringSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	_           uint64
}

type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

var (
	_ [64]byte  = [unsafe.Sizeof(uringSQE{})]byte{}
	_ [16]byte  = [unsafe.Sizeof(uringCQE{})]byte{}
	_ [120]byte = [unsafe.Sizeof(uringParams{})]byte{}
)

// uringOff is set when io_uring could not be set up once, or when the
// environment says QSTREAM_WAL_IO_URING=0: every file then uses plain
// system calls. A test may set it to compare the two.
var uringOff atomic.Bool

func init() {
	if os.Getenv("QSTREAM_WAL_IO_URING") == "0" {
		uringOff.Store(true)
	}
}

// errUringUnavailable is setupUring's error when the kernel refuses.
var errUringUnavailable = errors.New("wal: io_uring unavailable")

// uring is one file's ring: a submission queue of uringEntries, its
// completion queue, and the eventfd its completions signal.
type uring struct {
	mu      sync.Mutex
	fd      int
	sqRing  []byte
	cqRing  []byte
	sqes    []byte
	sqHead  *uint32
	sqTail  *uint32
	sqMask  uint32
	sqArray *uint32 // first element
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    unsafe.Pointer // the first completion
	event   *os.File       // the eventfd, non-blocking: Read parks in the netpoller
	evBuf   [8]byte
}

func setupUring() (*uring, error) {
	if uringOff.Load() {
		return nil, errUringUnavailable
	}
	var p uringParams
	fd, _, e := unix.Syscall(sysIOUringSetup, uringEntries, uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		uringOff.Store(true)
		return nil, errUringUnavailable
	}
	u := &uring{fd: int(fd)}
	fail := func(err error) (*uring, error) {
		u.close()
		uringOff.Store(true)
		return nil, err
	}
	if p.features&ioringFeatSingleMmap == 0 {
		return fail(errUringUnavailable)
	}
	size := max(int(p.sqOff.array)+int(p.sqEntries)*4, int(p.cqOff.cqes)+int(p.cqEntries)*int(unsafe.Sizeof(uringCQE{})))
	ring, err := unix.Mmap(u.fd, ioringOffSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail(err)
	}
	u.sqRing, u.cqRing = ring, ring
	sqes, err := unix.Mmap(u.fd, ioringOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(uringSQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail(err)
	}
	u.sqes = sqes
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&ring[off])) }
	u.sqHead, u.sqTail, u.sqMask, u.sqArray = at(p.sqOff.head), at(p.sqOff.tail), *at(p.sqOff.ringMask), at(p.sqOff.array)
	u.cqHead, u.cqTail, u.cqMask = at(p.cqOff.head), at(p.cqOff.tail), *at(p.cqOff.ringMask)
	u.cqes = unsafe.Pointer(&ring[p.cqOff.cqes])
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fail(err)
	}
	u.event = os.NewFile(uintptr(efd), "wal-uring-eventfd")
	if _, _, e := unix.Syscall6(sysIOUringRegister, uintptr(u.fd), ioringRegisterEventfd, uintptr(unsafe.Pointer(&efd)), 1, 0, 0); e != 0 {
		return fail(e)
	}
	return u, nil
}

func (u *uring) close() {
	if u.event != nil {
		u.event.Close()
	}
	if u.sqes != nil {
		_ = unix.Munmap(u.sqes)
	}
	if u.sqRing != nil {
		_ = unix.Munmap(u.sqRing)
	}
	_ = unix.Close(u.fd)
}

// do submits one operation and waits, parked, for its result: the number
// of bytes written, or 0, or a negative errno.
func (u *uring) do(opcode uint8, flags uint8, fd int, off uint64, buf []byte, opFlags uint32) (int32, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	tail := atomic.LoadUint32(u.sqTail)
	idx := tail & u.sqMask
	sqe := (*uringSQE)(unsafe.Pointer(&u.sqes[uintptr(idx)*unsafe.Sizeof(uringSQE{})]))
	*sqe = uringSQE{opcode: opcode, flags: flags, fd: int32(fd), off: off, opFlags: opFlags, userData: uint64(tail)}
	if len(buf) > 0 {
		sqe.addr, sqe.len = uint64(uintptr(unsafe.Pointer(&buf[0]))), uint32(len(buf))
	}
	*(*uint32)(unsafe.Add(unsafe.Pointer(u.sqArray), uintptr(idx)*4)) = idx
	atomic.StoreUint32(u.sqTail, tail+1)
	for {
		n, _, e := unix.Syscall6(sysIOUringEnter, uintptr(u.fd), 1, 0, 0, 0, 0)
		if e == unix.EINTR || e == unix.EAGAIN {
			continue
		}
		if e != 0 {
			return 0, os.NewSyscallError("io_uring_enter", e)
		}
		if n != 1 {
			return 0, errors.New("wal: io_uring_enter submitted nothing")
		}
		break
	}
	for {
		head := atomic.LoadUint32(u.cqHead)
		if head != atomic.LoadUint32(u.cqTail) {
			cqe := (*uringCQE)(unsafe.Add(u.cqes, uintptr(head&u.cqMask)*unsafe.Sizeof(uringCQE{})))
			res, data := cqe.res, cqe.userData
			atomic.StoreUint32(u.cqHead, head+1)
			runtime.KeepAlive(buf)
			if data != uint64(tail) {
				return 0, errors.New("wal: io_uring completed an operation not submitted")
			}
			return res, nil
		}
		// The eventfd counts completions; reading it parks this goroutine
		// in the netpoller until the kernel signals.
		if _, err := u.event.Read(u.evBuf[:]); err != nil {
			return 0, err
		}
	}
}

// writeAt is pwrite(2) of the whole of p at off through the ring.
func (u *uring) writeAt(fd int, p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		res, err := u.do(ioringOpWrite, iosqeAsync, fd, uint64(off)+uint64(n), p[n:], 0)
		if err != nil {
			return n, err
		}
		if res < 0 {
			if e := unix.Errno(-res); e == unix.EINTR || e == unix.EAGAIN {
				continue
			}
			return n, unix.Errno(-res)
		}
		if res == 0 {
			return n, io.ErrShortWrite
		}
		n += int(res)
	}
	return n, nil
}

// datasync is fdatasync(2) through the ring.
func (u *uring) datasync(fd int) error {
	for {
		res, err := u.do(ioringOpFsync, 0, fd, 0, nil, ioringFsyncDatasync)
		if err != nil {
			return err
		}
		if res == -int32(unix.EINTR) {
			continue
		}
		if res < 0 {
			return unix.Errno(-res)
		}
		return nil
	}
}
