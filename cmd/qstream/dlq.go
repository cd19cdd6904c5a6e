package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"qstream/codec"
	"qstream/sinks"
)

func cmdDLQ(args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintf(stderr, `Usage: qstream dlq list|show|replay [flags]

  list    one line per dead letter: LSN, key, reason, feed, position, detail
  show    dead letters as JSON Lines (all, or the LSNs given as arguments)
  replay  re-inject dead letters: their input as it arrived (parse-time
          rejections) or as a generic JSON tick (operator-time ones), one
          per line and once per key, to --output or a TCP feed (--tcp)

With --tcp, replay reads the feed's acks (run it with --tcp-ack) and waits
until they cover every line sent, at most --ack-timeout without a new ack;
it reports what was acknowledged and exits 1 when a line was not (timeout,
connection error, fewer acked than sent). Against a feed without acks give
--no-ack: the lines are sent and the connection closed once the feed has
read them all, but delivery is unconfirmed (exit 0 says only "sent").

Run 'qstream dlq <command> --help' for the flags.
`)
	}
	if len(args) == 0 {
		usage()
		return 2
	}
	switch args[0] {
	case "list", "show", "replay":
	case "-h", "--help", "help":
		usage()
		return 0
	default:
		usage()
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", defaultDLQDir, "DLQ directory")
	reason := fs.String("reason", "", "only dead letters with this reason (e.g. bad_price, late, duplicate)")
	feed := fs.String("feed", "", "only dead letters of this feed")
	fromLSN := fs.Uint64("from-lsn", 0, "start at this DLQ record")
	limit := fs.Int("limit", 0, "stop after this many (0: all)")
	output := fs.String("output", "-", "replay: where to write the re-injected lines (- for standard output)")
	tcpAddr := fs.String("tcp", "", "replay: send the lines to a JSON-lines TCP feed at this address instead, and wait for its acks")
	ackTimeout := fs.Duration("ack-timeout", sinks.DefaultTCPAckTimeout, "replay --tcp: give up (exit 1) when the feed sends no new ack for this long, or a write makes no progress")
	noAck := fs.Bool("no-ack", false, "replay --tcp: the feed sends no acks (no --tcp-ack): send and close without confirmation")
	fs.Usage = func() {
		usage()
		fmt.Fprintf(stderr, "\nFlags of dlq %s:\n", sub)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var wantReason codec.Reason
	if *reason != "" {
		r, ok := codec.ParseReason(*reason)
		if !ok {
			fmt.Fprintf(stderr, "qstream dlq: unknown reason %q\n", *reason)
			return 2
		}
		wantReason = r
	}
	lsns := map[uint64]bool{}
	for _, a := range fs.Args() {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || sub != "show" {
			fmt.Fprintf(stderr, "qstream dlq %s: unexpected argument %q\n", sub, a)
			return 2
		}
		lsns[n] = true
	}
	rd, err := sinks.OpenDLQReader(*dir, *fromLSN)
	if err != nil {
		fmt.Fprintf(stderr, "qstream dlq: %v\n", err)
		return 1
	}
	defer rd.Close()

	var out io.Writer = stdout
	var tcp *sinks.TCPLineSender
	switch {
	case sub == "replay" && *tcpAddr != "":
		tcp, err = sinks.DialTCPLines(*tcpAddr, sinks.TCPLineOptions{NoAck: *noAck, AckTimeout: *ackTimeout, DialTimeout: 5 * time.Second})
		if err != nil {
			fmt.Fprintf(stderr, "qstream dlq replay: %v\n", err)
			return 1
		}
		defer tcp.Abort() // on early returns; the normal path closes below
	case sub == "replay" && *output != "-" && *output != "":
		f, err := os.Create(*output)
		if err != nil {
			fmt.Fprintf(stderr, "qstream dlq replay: %v\n", err)
			return 1
		}
		defer f.Close()
		out = f
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	tw := tabwriter.NewWriter(bw, 2, 8, 2, ' ', 0)
	if sub == "list" {
		fmt.Fprintln(tw, "lsn\tkey\treason\tfeed\tposition\tdetail")
	}
	byReason := map[string]int{}
	seen := map[uint64]bool{}
	var e sinks.DLQEntry
	var buf []byte
	n, skipped, dups := 0, 0, 0
	for *limit == 0 || n < *limit {
		err := rd.Next(&e)
		if err == io.EOF {
			break
		}
		if err != nil {
			bw.Flush()
			fmt.Fprintf(stderr, "qstream dlq: %v\n", err)
			return 1
		}
		if (*reason != "" && e.Reason != wantReason) || (*feed != "" && e.Feed != *feed) || (len(lsns) > 0 && !lsns[e.LSN]) {
			continue
		}
		n++
		byReason[e.Reason.String()]++
		switch sub {
		case "list":
			fmt.Fprintf(tw, "%d\t%016x\t%s\t%s\t%s\t%s\n", e.LSN, e.Key, e.Reason, e.Feed, position(&e), detail(&e))
		case "show":
			buf = append(e.AppendJSON(buf[:0]), '\n')
			bw.Write(buf)
		case "replay":
			if seen[e.Key] {
				dups++
				continue
			}
			seen[e.Key] = true
			buf = e.AppendInput(buf[:0])
			if len(buf) == 0 {
				skipped++
				continue
			}
			if tcp != nil {
				if err := tcp.Send(buf); err != nil {
					res, _ := tcp.Close()
					fmt.Fprintf(stderr, "qstream dlq replay: FAILED: %d of %d lines sent to %s were acknowledged: %v\n", res.Acked, res.Sent, *tcpAddr, err)
					return 1
				}
				continue
			}
			bw.Write(append(buf, '\n'))
		}
	}
	tw.Flush()
	if err := bw.Flush(); err != nil {
		fmt.Fprintf(stderr, "qstream dlq %s: %v\n", sub, err)
		return 1
	}
	reasons := make([]string, 0, len(byReason))
	for r := range byReason {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	summary := fmt.Sprintf("qstream dlq %s: %d dead letters", sub, n)
	for _, r := range reasons {
		summary += fmt.Sprintf(", %s %d", r, byReason[r])
	}
	if sub == "replay" {
		summary += fmt.Sprintf("; re-injected %d, %d repeated keys skipped, %d without an input (poison outputs)", n-dups-skipped, dups, skipped)
	}
	if tcp == nil {
		fmt.Fprintln(stderr, summary)
		return 0
	}
	res, err := tcp.Close()
	switch {
	case err != nil:
		fmt.Fprintln(stderr, summary)
		fmt.Fprintf(stderr, "qstream dlq replay: FAILED: %d of %d lines sent to %s were acknowledged: %v\n", res.Acked, res.Sent, *tcpAddr, err)
		return 1
	case res.Confirmed:
		summary += fmt.Sprintf("; %s acknowledged %d of %d lines sent", *tcpAddr, res.Acked, res.Sent)
	default:
		summary += fmt.Sprintf("; sent %d lines to %s, which read them all; delivery unconfirmed (--no-ack: the feed sends no acks)", res.Sent, *tcpAddr)
	}
	fmt.Fprintln(stderr, summary)
	return 0
}

func position(e *sinks.DLQEntry) string {
	switch {
	case e.Pos.Line > 0:
		return "line " + strconv.FormatInt(e.Pos.Line, 10)
	case e.Pos.Offset >= 0:
		return "offset " + strconv.FormatInt(e.Pos.Offset, 10)
	case e.HasEvent:
		return "message " + strconv.FormatUint(e.Event.Seq, 10)
	case e.HasOutput:
		return "output " + strconv.FormatUint(e.Output.Seq, 10)
	}
	return "-"
}

func detail(e *sinks.DLQEntry) string {
	d := e.Err
	if d == "" && e.HasEvent {
		d = fmt.Sprintf("%s %s ts %d", e.Event.Kind, e.Symbol, e.Event.TsNs)
	}
	if len(d) > 80 {
		d = d[:77] + "..."
	}
	return d
}
