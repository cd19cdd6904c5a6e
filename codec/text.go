package codec

import (
	"encoding/binary"
	"errors"
	"math"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"

	"qstream/internal/jsontext"
)

// # Event text
//
// An Event is fixed-size and pointer-free, so what does not fit in it (a
// news article's headline and body, a StreamMessage's stream_id,
// message_type and metadata, the payload of a signal, system or custom
// event) travels beside it as its text: a sequence of fields, each
//
//	tag u8 | length u16 little-endian | bytes
//
// The event says how long its text is (Event.TextLen) and is followed, in
// the same ring, WAL and frame stream, by TextChunks(TextLen) KindText
// events that carry the bytes, TextChunkSize per chunk (the last one
// partly). A chunk has the Symbol, Source, TsNs, Seq and routing flags of
// its event and IDHash 0, so it goes wherever its event goes, in order,
// and is never taken for a message of its own. Parser.Text returns the text
// of the event it parsed last; TextFields iterates over one.

// Text field tags.
const (
	TextID          byte = 1  // the article id (news)
	TextSource      byte = 2  // the publisher or StreamMessage source
	TextHeadline    byte = 3  // news headline
	TextBody        byte = 4  // news body / content
	TextSymbol      byte = 5  // a tagged symbol name, repeated, in input order
	TextStreamID    byte = 6  // StreamMessage stream_id
	TextMessageType byte = 7  // StreamMessage message_type
	TextMetadata    byte = 8  // StreamMessage metadata, compact JSON
	TextPayload     byte = 9  // the payload variant's object (signal, system, custom), compact JSON
	TextSentiment   byte = 10 // the producer's sentiment, float64 bits, 8 bytes
	TextMessageID   byte = 11 // StreamMessage message_id
	TextTruncated   byte = 12 // empty: the body was cut to keep the text within MaxText
)

// MaxText bounds an event's text in bytes. A news body that would make it
// longer is cut (at a UTF-8 boundary, with a TextTruncated field); any other
// field that does not fit makes the message ReasonOversize.
const MaxText = 128 << 10

// TextChunkSize is the number of text bytes one KindText event carries: the
// 80 bytes from Price to Aux.
const TextChunkSize = 80

// TextChunks returns the number of KindText events that carry n bytes.
func TextChunks(n int) int { return (n + TextChunkSize - 1) / TextChunkSize }

// chunkBytes is the view of ev's text bytes: Price through Aux.
func chunkBytes(ev *Event) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&ev.Price)), TextChunkSize)
}

// SetTextChunk makes ev the KindText chunk of head's text that starts at
// byte off of text, and returns the bytes it took.
func SetTextChunk(ev, head *Event, text []byte, off int) int {
	*ev = Event{
		Kind:     KindText,
		TsNs:     head.TsNs,
		IngestNs: head.IngestNs,
		Seq:      head.Seq,
		Symbol:   head.Symbol,
		Source:   head.Source,
		Flags:    head.Flags & (FlagBroadcast | FlagPrimary | FlagReplay),
	}
	return copy(chunkBytes(ev), text[off:])
}

// TextChunk returns the TextChunkSize bytes a KindText event carries (the
// last chunk of a text is only partly used). The slice aliases ev.
func TextChunk(ev *Event) []byte { return chunkBytes(ev) }

// AppendTextField appends one field to a text.
func AppendTextField(dst []byte, tag byte, val []byte) []byte {
	dst = append(dst, tag, byte(len(val)), byte(len(val)>>8))
	return append(dst, val...)
}

// ErrTextField is returned by TextFields for a text that is not a sequence
// of whole fields.
var ErrTextField = errors.New("codec: malformed event text")

// TextFields calls fn for each field of text in order, and reports a text
// that does not end on a field boundary. It does not allocate.
func TextFields(text []byte, fn func(tag byte, val []byte)) error {
	for len(text) > 0 {
		if len(text) < 3 {
			return ErrTextField
		}
		n := int(binary.LittleEndian.Uint16(text[1:]))
		if len(text) < 3+n {
			return ErrTextField
		}
		fn(text[0], text[3:3+n])
		text = text[3+n:]
	}
	return nil
}

// TextFloat decodes a TextSentiment value.
func TextFloat(val []byte) (float64, bool) {
	if len(val) != 8 {
		return 0, false
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(val)), true
}

func appendTextFloat(dst []byte, tag byte, f float64) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], math.Float64bits(f))
	return AppendTextField(dst, tag, b[:])
}

// newsText builds the text of the news event ev from p.news; env is the
// StreamMessage envelope (nil for a compact article) and msgID its id.
func (p *Parser) newsText(ev *Event, env *jsonFields, msgID []byte) error {
	a := &p.news
	b := p.evText[:0]
	b = AppendTextField(b, TextID, a.ID)
	if len(a.Source) > 0 {
		b = AppendTextField(b, TextSource, a.Source)
	}
	b = AppendTextField(b, TextHeadline, a.Headline)
	for _, s := range a.Symbols {
		b = AppendTextField(b, TextSymbol, []byte(p.syms.Table().Name(s)))
	}
	if a.HasSentiment {
		b = appendTextFloat(b, TextSentiment, a.Sentiment)
	}
	if env != nil {
		var err error
		if b, err = p.envelopeText(b, env, msgID, false); err != nil {
			return err
		}
	}
	// The body last: it is what gets cut when the text would be too long.
	body := a.Body
	if room := min(MaxText-len(b)-3, math.MaxUint16); len(body) > room {
		if room < 0 {
			return p.fail(ReasonOversize, "headline", "news text longer than MaxText")
		}
		body = body[:utf8Cut(body, room)]
		b = AppendTextField(b, TextTruncated, nil)
	}
	if len(body) > 0 {
		b = AppendTextField(b, TextBody, body)
	}
	p.evText = b
	ev.TextLen = uint32(len(b))
	ev.Flags |= FlagBroadcast
	return nil
}

// eventText builds the text of a signal, system or custom event: the
// envelope's fields and the payload variant's value (key pk of env's
// payload object, given as inner).
func (p *Parser) eventText(ev *Event, env *jsonFields, msgID []byte, inner *fastjson.Value, pk jsonKey) error {
	b, err := p.envelopeText(p.evText[:0], env, msgID, true)
	if err != nil {
		return err
	}
	if inner != nil {
		n := len(b)
		b = append(b, 0, 0, 0)
		b = inner.MarshalTo(b)
		if b, err = p.closeField(b, n, TextPayload, jsonKeyNames[pk]); err != nil {
			return err
		}
	}
	p.evText = b
	ev.TextLen = uint32(len(b))
	return nil
}

// envelopeText appends the StreamMessage envelope's kept fields (its source
// too when withSource: a news article has a source of its own).
func (p *Parser) envelopeText(b []byte, env *jsonFields, msgID []byte, withSource bool) ([]byte, error) {
	b = AppendTextField(b, TextMessageID, msgID)
	for _, f := range [...]struct {
		k   jsonKey
		tag byte
	}{{jkStreamID, TextStreamID}, {jkMessageType, TextMessageType}} {
		v, ok, err := p.text(env, f.k)
		if err != nil {
			return b, err
		}
		if ok {
			if len(v) > math.MaxUint16 {
				return b, p.fail(ReasonOversize, jsonKeyNames[f.k], "longer than 65535 bytes")
			}
			b = AppendTextField(b, f.tag, v)
		}
	}
	if withSource && env.has(jkSource) {
		if v, _, err := p.text(env, jkSource); err != nil {
			return b, err
		} else if len(v) <= math.MaxUint16 {
			b = AppendTextField(b, TextSource, v)
		}
	}
	if env.has(jkMetadata) {
		v := &env.vals[jkMetadata]
		n := len(b)
		b = append(b, 0, 0, 0)
		switch {
		case v.v != nil:
			b = v.v.MarshalTo(b)
		case v.t == fastjson.TypeString:
			b = jsontext.AppendBytes(b, v.raw)
		default: // a number, true or false from the flat scanner
			b = append(b, v.raw...)
		}
		var err error
		if b, err = p.closeField(b, n, TextMetadata, "metadata"); err != nil {
			return b, err
		}
	}
	return b, nil
}

// closeField fills in the header of the field that starts at b[n] and whose
// value was appended after it, checking its length and UTF-8.
func (p *Parser) closeField(b []byte, n int, tag byte, field string) ([]byte, error) {
	l := len(b) - n - 3
	if l > math.MaxUint16 || len(b) > MaxText {
		return b[:n], p.fail(ReasonOversize, field, "longer than 65535 bytes")
	}
	if !utf8.Valid(b[n+3:]) {
		return b[:n], p.fail(ReasonMalformed, field, "not valid UTF-8")
	}
	b[n], b[n+1], b[n+2] = tag, byte(l), byte(l>>8)
	return b, nil
}

// utf8Cut returns the largest n <= max such that b[:n] ends on a UTF-8
// boundary.
func utf8Cut(b []byte, max int) int {
	n := max
	for n > 0 && n < len(b) && !utf8.RuneStart(b[n]) {
		n--
	}
	return n
}
