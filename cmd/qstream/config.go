package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"qstream/config"
	"qstream/engine"
	"qstream/ring"
)

// cmdConfig is `qstream config example|check`.
func cmdConfig(args []string, stdout, stderr io.Writer) int {
	usage := func(w io.Writer) {
		fmt.Fprint(w, `Usage:
  qstream config example         print a complete commented configuration (every field, its default)
  qstream config check FILE|-    validate a configuration file (- reads standard input):
                                 "FILE: ok (N streams)", or the errors with their lines and exit 2

qstream run --config FILE runs its stream; flags after --config override the file.
`)
	}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	case "example":
		if len(args) != 1 {
			usage(stderr)
			return 2
		}
		fmt.Fprint(stdout, config.Example)
		return 0
	case "check":
		if len(args) != 2 {
			usage(stderr)
			return 2
		}
		c, err := config.Load(args[1])
		if err == nil {
			err = checkRunFlags(c)
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		n := len(c.Streams)
		fmt.Fprintf(stdout, "%s: ok (%d stream%s)\n", c.File(), n, plural(n))
		return 0
	}
	fmt.Fprintf(stderr, "qstream config: unknown subcommand %q\n\n", args[0])
	usage(stderr)
	return 2
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// checkRunFlags puts every stream's RunArgs through run's own flag set and
// the checks run makes before it opens anything, so that a file that
// checks also starts.
func checkRunFlags(c *config.Config) error {
	defer c.Cleanup()
	var errs config.Errors
	for i, s := range c.Streams {
		args, err := c.RunArgs(i)
		if err == nil {
			err = checkRunArgs(args)
		}
		if err != nil {
			errs = append(errs, &config.Error{File: c.File(), Path: fmt.Sprintf("streams[%d] (%s)", i, s.Name), Err: err})
		}
	}
	if len(errs) == 0 && len(c.Streams) > 1 {
		// The streams after the first share its engine.
		var f runFlags
		args, _ := c.RunArgs(0)
		if err := runFlagSet(&f, io.Discard).Parse(args); err == nil {
			if f.streams, err = configStreams(c); err == nil {
				err = checkStreams(&f)
			}
			if err != nil {
				errs = append(errs, &config.Error{File: c.File(), Path: "streams", Err: err})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// checkRunArgs parses args as `run` does and makes run's checks that need
// no feed, file or server (run begins with the same ones).
func checkRunArgs(args []string) error {
	var f runFlags
	fs := runFlagSet(&f, io.Discard)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := ring.ParseStrategy(f.wait); err != nil {
		return fmt.Errorf("--wait: %w", err)
	}
	if _, err := engine.ParseMode(f.mode); err != nil {
		return fmt.Errorf("--mode: %w", err)
	}
	if _, err := parsePins(f.pin); err != nil {
		return err
	}
	emit, err := parseEmit(f.emit)
	if err != nil || (emit.stats && f.emit != "all") {
		return fmt.Errorf("--emit: %q: want a list of indicators, windows, patterns, movements, news, events (or all)", f.emit)
	}
	_, err = f.ops.parse(f.maxSymbols, true)
	return err
}

// repeatableRunFlags are run's flags that add to a list: given after
// --config, they replace the file's list instead of adding to it.
var repeatableRunFlags = []string{"sink", "ws-subscribe"}

// expandRunConfig replaces `--config FILE` in run's arguments by the flags
// of the file's stream (config.RunArgs), in place: flags after it override
// the file's values, as flags given twice do. A list flag (--sink,
// --ws-subscribe) after it replaces the file's list, and --feed after it
// drops the file's settings of the feeds it does not select. args without
// --config are returned as they are. cleanup removes the files RunArgs
// wrote; call it when run returns.
//
// A file of several streams runs them all in one engine: the first as
// above, the others as extras, the engine definitions that the run's
// streamHost builds (streams.go); the first stream is then named after
// its name (--stream-name, which a flag after --config overrides).
func expandRunConfig(args []string) (out []string, extras []engine.StreamConfig, cleanup func(), err error) {
	cleanup = func() {}
	at, file, n, err := findConfigFlag(args)
	if err != nil || at < 0 {
		return args, nil, cleanup, err
	}
	c, err := config.Load(file)
	if err != nil {
		return nil, nil, cleanup, err
	}
	fileArgs, err := c.RunArgs(0)
	if err != nil {
		c.Cleanup()
		return nil, nil, cleanup, err
	}
	if len(c.Streams) > 1 {
		if extras, err = configStreams(c); err != nil {
			c.Cleanup()
			return nil, nil, cleanup, err
		}
		fileArgs = append(fileArgs, "--stream-name="+c.Streams[0].Name)
	}
	after := args[at+n:]
	fileArgs = overriddenByFlags(fileArgs, after)
	out = append(append(append([]string(nil), args[:at]...), fileArgs...), after...)
	return out, extras, c.Cleanup, nil
}

// findConfigFlag finds --config in run's arguments: its index, its value
// and how many arguments it takes (1 for --config=FILE, 2 for --config
// FILE); at is -1 without it. It reads args as the flag package does:
// values of non-boolean flags are skipped, and the first non-flag or "--"
// ends the flags.
func findConfigFlag(args []string) (at int, file string, n int, err error) {
	fs := runFlagSet(&runFlags{}, io.Discard)
	at = -1
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if name == "config" {
			if at >= 0 {
				return 0, "", 0, usageError{errors.New("--config given twice")}
			}
			at, n = i, 1
			if !hasValue {
				if i+1 == len(args) {
					return 0, "", 0, usageError{errors.New("--config needs a file (qstream config example prints one)")}
				}
				value, n = args[i+1], 2
				i++
			}
			file = value
			continue
		}
		if hasValue {
			continue
		}
		if fl := fs.Lookup(name); fl != nil {
			if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				continue
			}
			i++ // its value
		}
	}
	return at, file, n, nil
}

// overriddenByFlags drops from the file's arguments the list flags that
// after gives again, and with --feed in after, the settings of the feeds
// that it does not select. An after that does not parse is left to run's
// own parse, which reports it.
func overriddenByFlags(fileArgs, after []string) []string {
	var f runFlags
	fs := runFlagSet(&f, io.Discard)
	if fs.Parse(after) != nil {
		return fileArgs
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	var feeds []string
	if set["feed"] {
		for _, name := range strings.Split(f.feeds.list, ",") {
			feeds = append(feeds, strings.ToLower(strings.TrimSpace(name)))
		}
	}
	var out []string
	for _, a := range fileArgs {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if set[name] && slices.Contains(repeatableRunFlags, name) {
			continue
		}
		if owner, ok := feedFlagOwners[name]; ok && set["feed"] && !slices.Contains(feeds, owner) {
			continue
		}
		out = append(out, a)
	}
	return out
}
