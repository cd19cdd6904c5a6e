package sinks

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"qstream/codec"
	"qstream/engine"
)

// deadLetterOf is the engine's view of a record.
func deadLetterOf(r *DeadLetterRecord) *engine.DeadLetter {
	return &engine.DeadLetter{Reason: r.Reason, Feed: r.Feed, Pos: r.Pos, Err: r.Err, Raw: r.Raw, Event: r.Event, Output: r.Output}
}

// replay's configuration: the first MaxShown on stderr with their position
// (the event's seq for operator-time rejections), the More line once, and
// every dead letter in the file, as DLQWriter writes it.
func TestDeadLettersStderrAndFile(t *testing.T) {
	symbols := codec.NewSymbolTable(16)
	recs := sampleRecords(t, symbols)[:5]
	var stderr, file bytes.Buffer
	d := &DeadLetters{Stderr: &stderr, MaxShown: 3, Prefix: "qstream: ", More: "qstream: further not shown",
		File: NewDLQWriter(&file, symbols)}
	for i := range recs {
		d.HandleDeadLetter(deadLetterOf(&recs[i]))
	}
	wantErr := "qstream: coinbase: line 3: codec: bad_price\n" +
		"qstream: tcp: offset 7: malformed\n" +
		"qstream: synthetic: message 17: late\n" +
		"qstream: further not shown\n"
	if stderr.String() != wantErr {
		t.Fatalf("stderr:\n%s\nwant:\n%s", stderr.String(), wantErr)
	}
	if err := d.File.Flush(); err != nil {
		t.Fatal(err)
	}
	var want []byte
	for i := range recs {
		want = append(AppendDeadLetterJSON(want, &recs[i], symbols), '\n')
	}
	if !bytes.Equal(file.Bytes(), want) {
		t.Fatalf("dead-letter file:\n%s\nwant:\n%s", file.Bytes(), want)
	}
	if d.rec.Raw != nil || d.rec.Event != nil {
		t.Fatal("the handler holds on to the last input after the call")
	}
}

// run's configuration: every dead letter in the DLQ segments and on NATS
// (the real nats-server of `make services`), from several goroutines at
// once; stderr shows MaxShown of them and the More line once.
func TestDeadLettersStoreAndNATS(t *testing.T) {
	const url = "nats://127.0.0.1:4222"
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("nats-server is not reachable at %s (%v): start it with `make services` (scripts/services.sh)", url, err)
	}
	defer nc.Close()
	subject := "qstream.test.deadletters." + time.Now().Format("150405.000000000")
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	symbols := codec.NewSymbolTable(16)
	recs := sampleRecords(t, symbols)[:5]
	dir := t.TempDir()
	store, err := OpenDLQ(dir, DLQOptions{}, symbols)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := NewDLQNATS(nc, subject, symbols)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer // written under the handler's lock
	d := &DeadLetters{Stderr: &stderr, MaxShown: 10, Prefix: "qstream: dead letter: ", More: "qstream: further dead letters not shown",
		Store: store, NATS: pub}
	const workers, each = 4, 50
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				d.HandleDeadLetter(deadLetterOf(&recs[i%len(recs)]))
			}
		}()
	}
	wg.Wait()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	const total = workers * each
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(lines) != 11 || lines[10] != "qstream: further dead letters not shown" || !strings.HasPrefix(lines[0], "qstream: dead letter: ") {
		t.Fatalf("stderr (%d lines):\n%s", len(lines), stderr.String())
	}

	// The segments: every dead letter, each one's reason in the proportion sent.
	r, err := OpenDLQReader(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	byKey := map[uint64]int{}
	var e DLQEntry
	for {
		err := r.Next(&e)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		byKey[e.Key]++
	}
	for i := range recs {
		if n := byKey[DLQKey(&recs[i])]; n != total/len(recs) {
			t.Errorf("record %d (%s) stored %d times, want %d", i, recs[i].Reason, n, total/len(recs))
		}
	}

	// NATS: every dead letter, as DLQWriter's JSON.
	want := map[string]int{}
	for i := range recs {
		want[string(AppendDeadLetterJSON(nil, &recs[i], symbols))] = total / len(recs)
	}
	for i := 0; i < total; i++ {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("NATS message %d of %d: %v", i, total, err)
		}
		want[string(msg.Data)]--
	}
	for js, n := range want {
		if n != 0 {
			t.Errorf("NATS: %d too few of %s", n, js)
		}
	}
	if pub.Sent() != total || pub.Failed() != 0 {
		t.Fatalf("NATS sent %d failed %d, want %d sent", pub.Sent(), pub.Failed(), total)
	}
}
