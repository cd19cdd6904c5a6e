package codec

import "fmt"

// Position locates a record in its input, for error reports and dead-letter
// records.
type Position struct {
	Line   int64 // 1-based line number for line-oriented inputs, else 0
	Offset int64 // byte offset of the record in the input (or the packet index for pcap), -1 if unknown
}

func (p Position) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d", p.Line)
	}
	return fmt.Sprintf("offset %d", p.Offset)
}
