package sinks

import (
	"fmt"
	"io"
	"sync"

	"qstream/engine"
)

// DeadLetters is an engine.DeadLetterHandler that fans every dead letter out
// to where the operator looks for it: a line on Stderr for the first
// MaxShown of them (then More, once), and every one of them into the DLQ
// segments (Store), a dead-letter file (File) and NATS (NATS), each when
// set. `qstream run` uses the segments and NATS, `qstream replay` the file.
//
// Set the fields before the engine starts; they are not changed after.
// HandleDeadLetter is safe for concurrent use (feed goroutines report
// parse-time rejections, the collector operator-time ones and poison
// outputs). Write errors are not returned (the handler has no way to):
// the store's and the file's are sticky and come back from their Close and
// Flush, NATS counts its failures (DLQNATS.Failed).
type DeadLetters struct {
	// Stderr gets "<Prefix><feed>: <where>: <error or reason>" for the
	// first MaxShown dead letters, then More on a line of its own. Nil:
	// nothing is shown.
	Stderr   io.Writer
	MaxShown int
	Prefix   string
	More     string

	Store *DLQStore  // the DLQ segments (`qstream dlq`); nil: none
	File  *DLQWriter // a JSON Lines dead-letter file; nil: none
	NATS  *DLQNATS   // a live copy on a NATS subject; nil: none

	mu    sync.Mutex
	shown int
	rec   DeadLetterRecord // reused: the store, file and NATS encode it during the call
}

// HandleDeadLetter implements engine.DeadLetterHandler.
func (d *DeadLetters) HandleDeadLetter(dl *engine.DeadLetter) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.Stderr != nil && d.shown < d.MaxShown {
		d.shown++
		msg := dl.Reason.String()
		if dl.Err != nil {
			msg = dl.Err.Error()
		}
		where := dl.Pos.String()
		if dl.Event != nil {
			where = fmt.Sprintf("message %d", dl.Event.Seq)
		}
		fmt.Fprintf(d.Stderr, "%s%s: %s: %s\n", d.Prefix, dl.Feed, where, msg)
		if d.shown == d.MaxShown && d.More != "" {
			fmt.Fprintln(d.Stderr, d.More)
		}
	}
	if d.Store == nil && d.File == nil && d.NATS == nil {
		return
	}
	d.rec = DeadLetterRecord{Reason: dl.Reason, Feed: dl.Feed, Pos: dl.Pos, Err: dl.Err, Raw: dl.Raw, Event: dl.Event, Output: dl.Output}
	if d.Store != nil {
		_ = d.Store.Write(&d.rec) // sticky; reported at close
	}
	if d.File != nil {
		_ = d.File.Write(&d.rec) // sticky; reported at flush
	}
	if d.NATS != nil {
		_ = d.NATS.Write(&d.rec) // counted; the segments hold the record
	}
	d.rec = DeadLetterRecord{} // holds no input past the call
}
