package ops

import (
	"strconv"
	"unsafe"

	"qstream/codec"
	"qstream/internal/jsontext"
	"qstream/ops/news"
)

// This file handles the events that carry text (codec/text.go): news
// articles, analysed into the news line (DESIGN.md "News") and into the
// news_impact patterns' state, and signal, system and custom events, which
// become event lines. Both leave the pipeline as output groups (OutNews,
// OutEvent followed by OutText; see output.go).

// MaxOutputText bounds the text of one output (its JSON line): 64 KiB, so a
// group always fits the engine's output batches. A news line is kept within
// it by capping entities and evidence; a longer event line is refused
// (ReasonOversize).
const MaxOutputText = 64 << 10

// Caps that keep a news line within MaxOutputText whatever the article.
const (
	maxNewsEntities = 256
	maxEvidence     = 512
)

// textState is the pipeline's scratch for text events, reused.
type textState struct {
	res    news.Result
	tagged []string
	line   []byte
	fields articleFields
}

// articleFields are the fields of an event's text, aliasing it.
type articleFields struct {
	id, headline, body, msgID, streamID, msgType, source, metadata, payload []byte
	symbols                                                                 [codec.MaxNewsSymbols][]byte
	nsym                                                                    int
	truncated                                                               bool
}

func (f *articleFields) parse(text []byte) error {
	*f = articleFields{}
	return codec.TextFields(text, func(tag byte, v []byte) {
		switch tag {
		case codec.TextID:
			f.id = v
		case codec.TextHeadline:
			f.headline = v
		case codec.TextBody:
			f.body = v
		case codec.TextMessageID:
			f.msgID = v
		case codec.TextStreamID:
			f.streamID = v
		case codec.TextMessageType:
			f.msgType = v
		case codec.TextSource:
			f.source = v
		case codec.TextMetadata:
			f.metadata = v
		case codec.TextPayload:
			f.payload = v
		case codec.TextSymbol:
			if f.nsym < len(f.symbols) {
				f.symbols[f.nsym] = v
				f.nsym++
			}
		case codec.TextTruncated:
			f.truncated = true
		}
	})
}

// bytesString views b as a string without copying; the string must not
// outlive b's contents.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// OnText runs an event that carries text (engine.TextProcessor): a news
// article is analysed when the pipeline has an analyser (PipelineConfig.News)
// into the news line, emitted by the primary copy of the article (see
// codec.FlagPrimary), and into the news_impact patterns' state of every copy;
// a signal, system or custom event becomes an event line when
// PipelineConfig.Events is set. Other events go to OnEvent.
func (p *Pipeline) OnText(ev *codec.Event, text []byte, watermarkNs int64, dst []Output) ([]Output, codec.Reason) {
	if p.flt != nil {
		p.xfEv = *ev // the filter sees a copy (see prefilter)
		if !p.flt.Pass(&p.xfEv, p.cfg.SymbolNames) {
			p.nfilt++
			return dst, codec.ReasonNone
		}
	}
	switch ev.Kind {
	case codec.KindNews:
		if p.cfg.News == nil {
			return dst, codec.ReasonNone
		}
		return p.onNews(ev, text, dst)
	case codec.KindSignal, codec.KindSystem, codec.KindCustom:
		if !p.cfg.Events {
			return dst, codec.ReasonNone
		}
		return p.onEventText(ev, text, dst)
	}
	return p.OnEvent(ev, watermarkNs, dst)
}

func (p *Pipeline) onNews(ev *codec.Event, text []byte, dst []Output) ([]Output, codec.Reason) {
	t := &p.text
	f := &t.fields
	if f.parse(text) != nil {
		return dst, codec.ReasonMalformed
	}
	t.tagged = t.tagged[:0]
	for _, s := range f.symbols[:f.nsym] {
		t.tagged = append(t.tagged, bytesString(s))
	}
	p.cfg.News.Analyze(&t.res, f.headline, f.body, t.tagged)
	res := &t.res
	if len(res.Entities) > maxNewsEntities {
		res.Entities = res.Entities[:maxNewsEntities]
	}
	for i := range res.Events {
		if e := &res.Events[i]; e.End-e.Start > maxEvidence {
			e.End = e.Start + maxEvidence
			for e.End > e.Start && e.End < len(res.Text) && res.Text[e.End]&0xC0 == 0x80 {
				e.End-- // a rune boundary
			}
		}
	}
	if p.nimp != nil {
		dst = p.nimp.onNews(p, ev, res, dst)
	}
	if ev.Flags&codec.FlagBroadcast != 0 && ev.Flags&codec.FlagPrimary == 0 {
		return dst, codec.ReasonNone // another shard's copy writes the line
	}
	t.line = news.AppendJSON(t.line[:0], f.id, ev.TsNs, res)
	if len(t.line) > MaxOutputText {
		return dst, codec.ReasonOversize
	}
	head := Output{Kind: OutNews, Symbol: ev.Symbol, Seq: ev.Seq, Key: p.inputKey(OutNews, 0, ev),
		TsNs: ev.TsNs, Value: res.Sentiment, IngestNs: ev.IngestNs}
	return AppendTextGroup(dst, &head, t.line), codec.ReasonNone
}

// EventLine is the JSON line of a signal, system or custom event:
//
//	{"event":"signal","symbol":"AAPL","ts":NS,"message_id":"m1","stream_id":"s1",
//	 "message_type":"...","source":"...","payload":{...},"metadata":{...}}
//
// with the StreamMessage's fields as given (absent ones left out; "symbol"
// null when the event has none) and "payload" the variant's value.
func (p *Pipeline) onEventText(ev *codec.Event, text []byte, dst []Output) ([]Output, codec.Reason) {
	t := &p.text
	f := &t.fields
	if f.parse(text) != nil {
		return dst, codec.ReasonMalformed
	}
	b := append(t.line[:0], `{"event":"`...)
	b = append(b, ev.Kind.String()...)
	b = append(b, `","symbol":`...)
	if ev.Symbol != 0 && p.cfg.SymbolNames != nil {
		b = jsontext.AppendString(b, p.cfg.SymbolNames.Name(ev.Symbol))
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ev.TsNs, 10)
	for _, kv := range [...]struct {
		key string
		v   []byte
	}{{`,"message_id":`, f.msgID}, {`,"stream_id":`, f.streamID}, {`,"message_type":`, f.msgType}, {`,"source":`, f.source}} {
		if kv.v != nil {
			b = append(b, kv.key...)
			b = jsontext.AppendBytes(b, kv.v)
		}
	}
	if f.payload != nil {
		b = append(append(b, `,"payload":`...), f.payload...)
	}
	if f.metadata != nil {
		b = append(append(b, `,"metadata":`...), f.metadata...)
	}
	b = append(b, '}')
	t.line = b
	if len(b) > MaxOutputText {
		return dst, codec.ReasonOversize
	}
	head := Output{Kind: OutEvent, Symbol: ev.Symbol, Seq: ev.Seq, Key: p.inputKey(OutEvent, 0, ev),
		TsNs: ev.TsNs, Price: ev.Price, Volume: ev.Volume, IngestNs: ev.IngestNs}
	return AppendTextGroup(dst, &head, b), codec.ReasonNone
}
