package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"qstream/codec"
	"qstream/ops"
	"qstream/ops/news"
	"qstream/sinks"
)

// operatorFlags are the operator settings that `run` and `replay` share:
// indicators, windows and their limits.
type operatorFlags struct {
	indicators, emaSeed                   string
	vwapSession, vwapSessionOffset        time.Duration
	windows, windowEmit                   string
	earlyEveryN                           int
	earlyEvery                            time.Duration // processing time; run only
	maxOpenWindows, maxBuffered, pctExact int
	symbolTTL, allowedLateness            time.Duration
	patterns                              string
	patternMaxTrades                      int
	movements                             string
	movementMaxTrades                     int
	newsEntities, newsLexicon, newsEvents string
}

// register adds the flags to fs. live adds those that only make sense on a
// live stream (processing-time triggers).
func (o *operatorFlags) register(fs *flag.FlagSet, live bool) {
	fs.StringVar(&o.indicators, "indicators", ops.DefaultIndicators, "indicators computed on every trade: comma-separated sma:N, ema:N, rsi:N, vwap (session), vwap:N (last N trades); empty for none")
	fs.StringVar(&o.emaSeed, "ema-seed", "sma", "EMA seed: sma (TA-Lib: SMA of the first N inputs) or first (MetaStock/Tulip: the first input)")
	fs.DurationVar(&o.vwapSession, "vwap-session", 24*time.Hour, "length of the session that resets the session VWAP")
	fs.DurationVar(&o.vwapSessionOffset, "vwap-session-offset", 0, "start of the VWAP session after UTC midnight (e.g. 14h30m)")
	fs.StringVar(&o.windows, "windows", "", "event-time windows over trades, comma-separated TYPE:PARAMS:AGG[:FIELD]: tumbling:1m:vwap, hopping:5m/1m:avg, sliding:30s[/5s]:max, session:10s:count, count:100:ohlcv; AGG count|sum|avg|min|max|stddev|stddev_samp|pNN|vwap|twap|ohlcv; FIELD price|volume|bid|ask|spread; +OFFSET after the size shifts the epoch alignment (tumbling:1h+15m:avg)")
	fs.StringVar(&o.windowEmit, "window-emit", "updates", "window emit mode: updates (on-time result, then late re-firings within the allowed lateness) or final (one result per window once it can no longer change)")
	fs.IntVar(&o.earlyEveryN, "early-every-n", 0, "also fire a symbol's open windows early after every N of its trades (timing early); 0 disables")
	if live {
		fs.DurationVar(&o.earlyEvery, "early-every", 0, "also fire open windows early every this much processing time (timing early); 0 disables")
	}
	fs.IntVar(&o.maxOpenWindows, "max-open-windows", ops.DefaultMaxOpenWindowsPerSymbol, "open windows (or sessions) held per symbol; a trade beyond it is dead-lettered as oversize")
	fs.IntVar(&o.maxBuffered, "max-buffered", ops.DefaultMaxBufferedEventsPerSymbol, "raw trades kept per symbol by sliding, TWAP and percentile windows")
	fs.IntVar(&o.pctExact, "percentile-exact-max", ops.DefaultPercentileExactMax, "windows with at most this many trades get exact percentiles; larger ones a sketch with 1% relative error")
	fs.DurationVar(&o.symbolTTL, "symbol-ttl", 0, "release a symbol's window state when its last trade is this far behind the watermark and nothing is left to fire; 0 keeps it")
	fs.DurationVar(&o.allowedLateness, "allowed-lateness", 0, "events behind the watermark by at most this update their windows (late firings); later ones are dead-lettered as late")
	fs.StringVar(&o.patterns, "patterns", "", "pattern file: a JSON or YAML (.yaml, .yml) list of price_breakout, volume_spike, technical_signal, news_impact and sequence patterns (see README \"Patterns\"); matches are the patterns output")
	fs.StringVar(&o.newsEntities, "news-entities", "", "news analysis: the entity dictionary file (the format of ops/news/data/entities.txt); empty: the built-in one")
	fs.StringVar(&o.newsLexicon, "news-lexicon", "", "news analysis: the sentiment lexicon file (the format of ops/news/data/lexicon.txt); empty: the built-in one")
	fs.StringVar(&o.newsEvents, "news-events", "", "news analysis: the event rules file (the format of ops/news/data/events.txt); empty: the built-in one")
	fs.IntVar(&o.patternMaxTrades, "pattern-max-trades", ops.DefaultMaxPatternTradesPerSymbol, "trades kept per symbol in each pattern timeframe; beyond it the oldest leave early (counted)")
	fs.StringVar(&o.movements, "movements", "", "price movements over trades, comma-separated HORIZON:THRESHOLD (5m:1%,1h:2%): an event when a trade's price moved by at least THRESHOLD against the latest trade at or before HORIZON earlier, once until the move falls back below half the threshold; the movements output")
	fs.IntVar(&o.movementMaxTrades, "movement-max-trades", ops.DefaultMaxMovementTrades, "trades kept per symbol and movement horizon; beyond it older ones are thinned (see README \"Movements\")")
}

// operators is the parsed form of operatorFlags.
type operators struct {
	news    *news.Analyzer // the analyser of --emit news and news_impact
	pipe    ops.PipelineConfig
	specs   []ops.IndicatorSpec
	windows []ops.WindowSpec
}

// parse validates the flags and returns the pipeline configuration for a
// symbol table of maxSymbols. Indicators are computed only when they are
// emitted (they are still validated). Errors are usage errors.
func (o *operatorFlags) parse(maxSymbols int, emitIndicators bool) (*operators, error) {
	var specs []ops.IndicatorSpec
	var err error
	if o.indicators != "" {
		if specs, err = ops.ParseIndicators(o.indicators); err != nil {
			return nil, usageError{fmt.Errorf("--indicators: %w", err)}
		}
	}
	if !emitIndicators {
		specs = nil
	}
	seed, err := ops.ParseEMASeed(o.emaSeed)
	if err != nil {
		return nil, usageError{fmt.Errorf("--ema-seed: %w", err)}
	}
	var windows []ops.WindowSpec
	if o.windows != "" {
		if windows, err = ops.ParseWindowSpecs(o.windows); err != nil {
			return nil, usageError{fmt.Errorf("--windows: %w", err)}
		}
	}
	var emit ops.EmitMode
	switch o.windowEmit {
	case "updates":
		emit = ops.EmitUpdates
	case "final":
		emit = ops.EmitFinal
	default:
		return nil, usageError{fmt.Errorf("--window-emit: %q is not updates or final", o.windowEmit)}
	}
	var patterns []ops.PatternSpec
	if o.patterns != "" {
		data, err := os.ReadFile(o.patterns)
		if err != nil {
			return nil, usageError{fmt.Errorf("--patterns: %w", err)}
		}
		if patterns, err = ops.ParsePatternsFile(o.patterns, data); err != nil {
			return nil, usageError{fmt.Errorf("--patterns: %w", err)} // the error names the file (and the YAML line)
		}
	}
	var movements []ops.MovementSpec
	if o.movements != "" {
		if movements, err = ops.ParseMovements(o.movements); err != nil {
			return nil, usageError{fmt.Errorf("--movements: %w", err)}
		}
	}
	cfg := ops.PipelineConfig{
		Movements:        movements,
		MovementOptions:  ops.MovementOptions{MaxTradesPerSymbol: o.movementMaxTrades},
		Patterns:         patterns,
		PatternOptions:   ops.PatternOptions{MaxTradesPerSymbol: o.patternMaxTrades},
		Indicators:       specs,
		IndicatorOptions: ops.IndicatorOptions{EMASeed: seed, SessionLengthNs: int64(o.vwapSession), SessionOffsetNs: int64(o.vwapSessionOffset)},
		EmitIndicators:   emitIndicators,
		MaxSymbolID:      maxSymbols,
		Windows:          windows,
		WindowOptions: ops.WindowOptions{
			AllowedLatenessNs:          int64(o.allowedLateness),
			MaxOpenWindowsPerSymbol:    o.maxOpenWindows,
			MaxBufferedEventsPerSymbol: o.maxBuffered,
			PercentileExactMax:         o.pctExact,
			IdleSymbolTTLNs:            int64(o.symbolTTL),
			WindowTrigger:              ops.WindowTrigger{EarlyEveryN: o.earlyEveryN, EarlyEveryNs: int64(o.earlyEvery), Emit: emit},
		},
	}
	analyzer := news.Default()
	if o.newsEntities != "" || o.newsLexicon != "" || o.newsEvents != "" {
		if analyzer, err = news.NewFromFiles(o.newsEntities, o.newsLexicon, o.newsEvents); err != nil {
			return nil, usageError{fmt.Errorf("--news-entities/--news-lexicon/--news-events: %w", err)}
		}
	}
	if slices.ContainsFunc(patterns, func(s ops.PatternSpec) bool { return s.Type == ops.PatNewsImpact }) {
		cfg.News = analyzer // news_impact joins on the analysis of articles
	}
	check := cfg
	check.SymbolNames = codec.NewSymbolTable(1) // pipeline() gives the engine's
	if _, err := ops.NewPipeline(check); err != nil {
		return nil, usageError{err} // a configuration the operators refuse (too much state, ...)
	}
	return &operators{pipe: cfg, specs: specs, windows: windows, news: analyzer}, nil
}

// withText turns on the analysis of news articles for the news lines (the
// news_impact patterns turned it on already) and the event lines of signal,
// system and custom events.
func (o *operators) withText(newsLines, events bool) {
	if newsLines {
		o.pipe.News = o.news
	}
	o.pipe.Events = events
}

// pipeline returns the pipeline configuration with the engine's symbol
// table, which patterns restricted to symbols name them by.
func (o *operators) pipeline(symbols *codec.SymbolTable) ops.PipelineConfig {
	cfg := o.pipe
	cfg.SymbolNames = symbols
	return cfg
}

// jsonl returns the encoder configuration naming these operators' outputs.
func (o *operators) jsonl() sinks.JSONLConfig {
	var cfg sinks.JSONLConfig
	for _, s := range o.specs {
		cfg.Indicators = append(cfg.Indicators, s.Name())
	}
	for _, w := range o.windows {
		cfg.Windows = append(cfg.Windows, sinks.WindowMeta{Name: w.String(), Object: w.ValueIsObject()})
	}
	cfg.Patterns = sinks.PatternMetas(o.pipe.Patterns)
	return cfg
}
