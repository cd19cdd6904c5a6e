package codec

import (
	"errors"
	"fmt"
)

// Reason classifies why an input was rejected. It is what the dead-letter
// output records and what the error counters are keyed by, so its names are
// part of the output contract.
type Reason uint8

// Rejection reasons.
const (
	ReasonNone          Reason = iota
	ReasonMalformed            // not parseable at all (bad JSON, bad CSV row, short frame)
	ReasonMissingField         // a required field is absent
	ReasonBadType              // a field has the wrong JSON type
	ReasonBadNumber            // NaN, ±Inf, or a number that does not parse
	ReasonBadPrice             // price <= 0
	ReasonBadVolume            // volume < 0
	ReasonBadTimestamp         // a timestamp that does not parse or is out of range
	ReasonOversize             // a message, frame or record over its size limit
	ReasonUnknownKind          // a message type this codec does not know
	ReasonUnknownSymbol        // a symbol outside the configured universe, or the table is full
	ReasonLate                 // an event behind the watermark by more than the allowed lateness
	ReasonDuplicate            // a message id seen before within the dedup horizon
	ReasonChecksum             // a frame or record whose checksum does not match
	ReasonSequenceGap          // a sequence gap reported by a feed
	reasonCount
)

// ReasonCount is the number of reasons; counters index by Reason.
const ReasonCount = int(reasonCount)

var reasonNames = [reasonCount]string{
	ReasonNone:          "none",
	ReasonMalformed:     "malformed",
	ReasonMissingField:  "missing_field",
	ReasonBadType:       "bad_type",
	ReasonBadNumber:     "bad_number",
	ReasonBadPrice:      "bad_price",
	ReasonBadVolume:     "bad_volume",
	ReasonBadTimestamp:  "bad_timestamp",
	ReasonOversize:      "oversize",
	ReasonUnknownKind:   "unknown_kind",
	ReasonUnknownSymbol: "unknown_symbol",
	ReasonLate:          "late",
	ReasonDuplicate:     "duplicate",
	ReasonChecksum:      "checksum",
	ReasonSequenceGap:   "sequence_gap",
}

// String returns the snake_case name used in DLQ records and metrics.
func (r Reason) String() string {
	if r < reasonCount {
		return reasonNames[r]
	}
	return "unknown"
}

// ParseReason is the inverse of Reason.String.
func ParseReason(s string) (Reason, bool) {
	for i, n := range reasonNames {
		if n == s {
			return Reason(i), true
		}
	}
	return ReasonNone, false
}

// Error is a rejection with a reason code. Parsers return a pointer to an
// Error they own and reuse, so rejecting bad input does not allocate; the
// *Error is valid until the parser's next call. Copy it (the struct is a
// value) to keep it.
type Error struct {
	Reason Reason
	Field  string // the offending field, if any (a constant string, never input bytes)
	Detail string // a constant description, never built from input
	Offset int    // byte offset within the message, or -1
}

func (e *Error) Error() string {
	switch {
	case e.Field != "" && e.Detail != "":
		return fmt.Sprintf("codec: %s: field %q: %s", e.Reason, e.Field, e.Detail)
	case e.Field != "":
		return fmt.Sprintf("codec: %s: field %q", e.Reason, e.Field)
	case e.Detail != "":
		return fmt.Sprintf("codec: %s: %s", e.Reason, e.Detail)
	}
	return "codec: " + e.Reason.String()
}

// Is lets errors.Is match on the reason: errors.Is(err, &codec.Error{Reason: codec.ReasonBadPrice}).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason
}

// ReasonOf returns the Reason carried by err, ReasonMalformed for any other
// non-nil error, and ReasonNone for nil.
func ReasonOf(err error) Reason {
	if err == nil {
		return ReasonNone
	}
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ReasonMalformed
}

// set fills e and returns it, for the "return p.fail(...)" idiom in parsers.
func (e *Error) set(r Reason, field, detail string) *Error {
	e.Reason, e.Field, e.Detail, e.Offset = r, field, detail, -1
	return e
}
