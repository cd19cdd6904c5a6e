package sinks

import (
	"strconv"

	"qstream/ops"
)

// appendMovement writes a price movement (ops.OutMovement) as
//
//	{"movement":"5m:1%","symbol":"X","ts":NS,"price":P,"reference_price":R,
//	 "reference_ts":NS,"change_pct":x,"direction":"up"|"down"}
//
// change_pct is the move in percent, signed; reference_ts is exact (the
// output's StartNs). The spec is named from the output itself
// (ops.MovementSpecOf), so every sink writes it without configuration. It
// allocates nothing beyond growing dst.
func (j *JSONLWriter) appendMovement(dst []byte, o *ops.Output) []byte {
	dst = append(dst, `{"movement":"`...)
	dst = ops.MovementSpecOf(o).AppendTo(dst) // digits, units, ':', '.', '%': nothing to escape
	dst = append(dst, `","symbol":`...)
	dst = AppendString(dst, j.symbol(o.Symbol))
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, o.TsNs, 10)
	dst = append(dst, `,"price":`...)
	dst = AppendFloat(dst, o.Price)
	dst = append(dst, `,"reference_price":`...)
	dst = AppendFloat(dst, o.Values[0])
	dst = append(dst, `,"reference_ts":`...)
	dst = strconv.AppendInt(dst, ops.MovementRefTs(o), 10)
	dst = append(dst, `,"change_pct":`...)
	dst = AppendFloat(dst, o.Value*100)
	if o.Value < 0 {
		return append(dst, `,"direction":"down"}`...)
	}
	return append(dst, `,"direction":"up"}`...)
}
