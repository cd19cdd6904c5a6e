package news

import (
	"strconv"

	"qstream/internal/jsontext"
)

// AppendJSON appends the DESIGN.md news line of res, without a newline:
//
//	{"id":ID,"ts":TS,"symbols":[...],"entities":[{"text","symbol","start","end"}],
//	 "sentiment":S,"relevance":{"SYM":R},"events":[{"type","evidence"}]}
//
// id is the article id and tsNs its event time in Unix nanoseconds. Strings
// and floats are written by internal/jsontext, as every output line is
// (encoding/json's forms; invalid UTF-8 becomes \ufffd). It does not allocate
// beyond growing dst.
func AppendJSON(dst []byte, id []byte, tsNs int64, res *Result) []byte {
	dst = append(dst, `{"id":`...)
	dst = jsontext.AppendBytes(dst, id)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, tsNs, 10)
	dst = append(dst, `,"symbols":[`...)
	for i, s := range res.Symbols {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsontext.AppendString(dst, s)
	}
	dst = append(dst, `],"entities":[`...)
	for i, e := range res.Entities {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"text":`...)
		dst = jsontext.AppendBytes(dst, res.Text[e.Start:e.End])
		dst = append(dst, `,"symbol":`...)
		dst = jsontext.AppendString(dst, e.Symbol)
		dst = append(dst, `,"start":`...)
		dst = strconv.AppendInt(dst, int64(e.Start), 10)
		dst = append(dst, `,"end":`...)
		dst = strconv.AppendInt(dst, int64(e.End), 10)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"sentiment":`...)
	dst = jsontext.AppendFloat(dst, res.Sentiment)
	dst = append(dst, `,"relevance":{`...)
	for i, s := range res.Symbols {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsontext.AppendString(dst, s)
		dst = append(dst, ':')
		dst = jsontext.AppendFloat(dst, res.Relevance[i])
	}
	dst = append(dst, `},"events":[`...)
	for i, e := range res.Events {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"type":`...)
		dst = jsontext.AppendString(dst, e.Type)
		dst = append(dst, `,"evidence":`...)
		dst = jsontext.AppendBytes(dst, res.Text[e.Start:e.End])
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}
