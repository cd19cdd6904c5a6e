// Command qstream is the one binary of the qstream stream engine: a thin
// layer of flags and wiring over the engine, feeds, operators and sinks.
//
//	qstream run      the engine on live feeds (default: the built-in synthetic market), WAL on
//	qstream replay   a file, capture or WAL through the operators, as JSON Lines
//	qstream wal      inspect a write-ahead log
//	qstream dlq      list, show and re-inject dead letters
//	qstream config   print an example configuration file or check one
//	qstream bench    the benchmark suite: e2e latency, throughput, micro
package main

import (
	"fmt"
	"io"
	"os"
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands []command

func init() {
	commands = []command{
		{"run", "run the engine on a live feed (default: synthetic market) with a status line", cmdRun},
		{"replay", "replay a file or capture through the operators and emit JSON Lines", cmdReplay},
		{"wal", "inspect a WAL directory: segments, LSN ranges, checkpoints, corruption", cmdWAL},
		{"dlq", "list, show and re-inject dead letters", cmdDLQ},
		{"config", "print an example configuration file (example) or validate one (check FILE)", cmdConfig},
		{"bench", "benchmarks: e2e latency, throughput, micro, each beside its same-run baseline", cmdBench},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `qstream: a lock-free, low-latency stream engine for market data.

Usage:
  qstream <command> [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Run 'qstream <command> --help' for the flags of a command.
`)
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "qstream: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}
