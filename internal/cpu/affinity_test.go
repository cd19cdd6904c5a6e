package cpu

import (
	"runtime"
	"testing"
)

func TestPinThread(t *testing.T) {
	allowed := Allowed()
	if len(allowed) == 0 {
		t.Fatal("no allowed CPUs")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		target := allowed[len(allowed)-1]
		if err := PinThread(target); err != nil {
			t.Logf("pinning refused here (allowed, not fatal): %v", err)
			return
		}
		got, err := CurrentThreadCPUs()
		if err != nil {
			t.Error(err)
			return
		}
		if len(got) != 1 || got[0] != target {
			t.Errorf("affinity after pin = %v, want [%d]", got, target)
		}
	}()
	<-done
}

func TestPinThreadInvalid(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// Not unlocked: the thread's affinity may have changed, so let it die with the goroutine.
		if err := PinThread(1023); err == nil {
			t.Error("pinning to CPU 1023 succeeded; want an error on this machine")
		}
	}()
	<-done
}
