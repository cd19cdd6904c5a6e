package sinks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/coder/websocket"

	"qstream/codec"
	"qstream/ops"
)

// The client protocol of WSServer (DESIGN.md, "Sinks"). A client sends JSON
// text messages of at most max_msg bytes:
//
//	{"op":"subscribe","channels":["indicators","windows"],"symbols":["AAPL","MSFT"]}
//	{"op":"unsubscribe","channels":["windows"],"symbols":["*"]}
//
// channels are indicators, windows, patterns, news, or "*" for all four;
// symbols are names, or "*" for every symbol (present and future). Both lists
// are required. A client gets an output when it subscribed to its channel
// with "*" or with the output's symbol (once, if both). Unsubscribing "*"
// removes the wildcard and every named symbol of those channels;
// unsubscribing a name leaves the wildcard. A client holds at most
// max_symbols named symbols.
//
// Replies, in the order of the requests and before any output the request
// lets through: {"op":"subscribed"|"unsubscribed","channels":[...],
// "symbols":[...]} echoing the request, or {"error":"..."} for a request that
// changed nothing (malformed JSON, unknown fields, op or channel, an invalid
// symbol name, too many symbols, a binary message). Outputs are text
// messages: the output's JSON line (JSONLWriter.AppendGroup) with
// "channel":"<channel>" added as its last member.

// wsChannels is the number of channels; channel c carries output kind c+1.
const wsChannels = 6

// wsKinds is the highest output kind the server publishes.
const wsKinds = ops.OutMovement

var wsChannelNames = [wsChannels]string{"indicators", "windows", "patterns", "news", "events", "movements"}

const wsAllChannels = uint8(1)<<wsChannels - 1

// wsSubState is a client's subscriptions.
type wsSubState struct {
	all  [wsChannels]bool // "*" per channel
	syms map[string]uint8 // named symbols: a bit per channel
}

// wsSubs are the clients subscribed to one symbol by name, per channel.
type wsSubs struct {
	lists    [wsChannels][]*wsClient
	resolved bool // held in byID: kept for the life of the server
}

// wsIndex finds the subscribers of an output in two slice reads: the
// wildcard subscribers of its channel, and the named subscribers of its
// symbol (byID, by symbol id, filled from the symbol table the first time an
// id is seen). Entries of names no output has carried yet are deleted when
// their last subscriber leaves, so byName is bounded by the symbol table plus
// max_clients * max_symbols. Guarded by WSServer.mu.
type wsIndex struct {
	all    [wsChannels][]*wsClient
	byName map[string]*wsSubs
	byID   []*wsSubs
}

func (x *wsIndex) entry(name string) *wsSubs {
	ss := x.byName[name]
	if ss == nil {
		ss = &wsSubs{}
		x.byName[name] = ss
	}
	return ss
}

func wsRemove(list []*wsClient, cl *wsClient) []*wsClient {
	for i, c := range list {
		if c == cl {
			last := len(list) - 1
			list[i] = list[last]
			list[last] = nil
			return list[:last]
		}
	}
	return list
}

// subscribe applies a subscription (syms deduplicated). It changes nothing
// when the client would hold more than maxSymbols names.
func (x *wsIndex) subscribe(cl *wsClient, mask uint8, star bool, syms []string, maxSymbols int) error {
	if cl.sub.syms == nil {
		cl.sub.syms = make(map[string]uint8)
	}
	fresh := 0
	for _, name := range syms {
		if _, ok := cl.sub.syms[name]; !ok {
			fresh++
		}
	}
	if n := len(cl.sub.syms) + fresh; n > maxSymbols {
		return fmt.Errorf("too many symbols: the client would hold %d, max_symbols is %d", n, maxSymbols)
	}
	for ch := range wsChannels {
		bit := uint8(1) << ch
		if mask&bit == 0 {
			continue
		}
		if star && !cl.sub.all[ch] {
			cl.sub.all[ch] = true
			x.all[ch] = append(x.all[ch], cl)
		}
		for _, name := range syms {
			bits := cl.sub.syms[name]
			if bits&bit != 0 {
				continue
			}
			ss := x.entry(name)
			ss.lists[ch] = append(ss.lists[ch], cl)
			cl.sub.syms[name] = bits | bit
		}
	}
	return nil
}

func (x *wsIndex) unsubscribe(cl *wsClient, mask uint8, star bool, syms []string) {
	for ch := range wsChannels {
		bit := uint8(1) << ch
		if mask&bit == 0 {
			continue
		}
		if star {
			if cl.sub.all[ch] {
				cl.sub.all[ch] = false
				x.all[ch] = wsRemove(x.all[ch], cl)
			}
			for name, bits := range cl.sub.syms {
				if bits&bit != 0 {
					x.drop(cl, name, ch, bits&^bit)
				}
			}
		}
		for _, name := range syms {
			if bits := cl.sub.syms[name]; bits&bit != 0 {
				x.drop(cl, name, ch, bits&^bit)
			}
		}
	}
}

// drop removes cl from name's subscribers of channel ch; bits are the
// channels cl keeps for name.
func (x *wsIndex) drop(cl *wsClient, name string, ch int, bits uint8) {
	if bits == 0 {
		delete(cl.sub.syms, name)
	} else {
		cl.sub.syms[name] = bits
	}
	ss := x.byName[name]
	if ss == nil {
		return
	}
	ss.lists[ch] = wsRemove(ss.lists[ch], cl)
	if ss.resolved {
		return
	}
	for _, l := range ss.lists {
		if len(l) > 0 {
			return
		}
	}
	delete(x.byName, name)
}

func (x *wsIndex) removeClient(cl *wsClient) {
	x.unsubscribe(cl, wsAllChannels, true, nil)
}

type wsRequest struct {
	Op       string   `json:"op"`
	Channels []string `json:"channels"`
	Symbols  []string `json:"symbols"`
}

type wsReply struct {
	Op       string   `json:"op,omitempty"`
	Channels []string `json:"channels,omitempty"`
	Symbols  []string `json:"symbols,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// parseWSRequest validates a request; syms are the named symbols,
// deduplicated, and star says whether "*" was among them.
func parseWSRequest(typ websocket.MessageType, data []byte, maxSymbols int) (req wsRequest, mask uint8, star bool, syms []string, err error) {
	if typ != websocket.MessageText {
		return req, 0, false, nil, errors.New("binary message: send JSON text")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, 0, false, nil, fmt.Errorf("malformed request: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, 0, false, nil, errors.New("malformed request: data after the JSON object")
	}
	switch req.Op {
	case "subscribe", "unsubscribe":
	case "":
		return req, 0, false, nil, errors.New(`missing "op": want subscribe or unsubscribe`)
	default:
		return req, 0, false, nil, fmt.Errorf("unknown op %q: want subscribe or unsubscribe", wsTrim(req.Op))
	}
	if len(req.Channels) == 0 {
		return req, 0, false, nil, errors.New(`missing "channels": want a list of indicators, windows, patterns, news or "*"`)
	}
	if len(req.Channels) > wsChannels {
		return req, 0, false, nil, fmt.Errorf("too many channels: %d > %d", len(req.Channels), wsChannels)
	}
	for _, c := range req.Channels {
		switch c {
		case "*":
			mask |= wsAllChannels
			continue
		}
		found := false
		for ch, name := range wsChannelNames {
			if c == name {
				mask |= 1 << ch
				found = true
			}
		}
		if !found {
			return req, 0, false, nil, fmt.Errorf(`unknown channel %q: want indicators, windows, patterns, news or "*"`, wsTrim(c))
		}
	}
	if len(req.Symbols) == 0 {
		return req, 0, false, nil, errors.New(`missing "symbols": want a list of symbols or "*"`)
	}
	if len(req.Symbols) > maxSymbols+1 { // +1: "*" among them
		return req, 0, false, nil, fmt.Errorf("too many symbols: %d, max_symbols is %d", len(req.Symbols), maxSymbols)
	}
	seen := make(map[string]bool, len(req.Symbols))
	for _, name := range req.Symbols {
		if name == "*" {
			star = true
			continue
		}
		if len(name) == 0 || len(name) > codec.MaxSymbolLen || !codec.ValidSymbolName([]byte(name)) {
			return req, 0, false, nil, fmt.Errorf("invalid symbol %q", wsTrim(name))
		}
		if !seen[name] {
			seen[name] = true
			syms = append(syms, name)
		}
	}
	if len(syms) > maxSymbols {
		return req, 0, false, nil, fmt.Errorf("too many symbols: %d, max_symbols is %d", len(syms), maxSymbols)
	}
	return req, mask, star, syms, nil
}

// wsTrim bounds what an error reply echoes of the client's input.
func wsTrim(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// handleRequest applies one client request and queues its reply.
func (s *WSServer) handleRequest(cl *wsClient, typ websocket.MessageType, data []byte) {
	req, mask, star, syms, err := parseWSRequest(typ, data, s.cfg.maxSymbols)
	s.mu.Lock()
	if err == nil {
		if req.Op == "subscribe" {
			err = s.idx.subscribe(cl, mask, star, syms, s.cfg.maxSymbols)
		} else {
			s.idx.unsubscribe(cl, mask, star, syms)
		}
	}
	var r wsReply
	if err != nil {
		s.badReqs.Add(1)
		r.Error = err.Error()
	} else {
		r.Op, r.Channels, r.Symbols = req.Op+"d", req.Channels, req.Symbols
	}
	b, _ := json.Marshal(&r) // strings and string lists: cannot fail
	ok := cl.reply(b)
	s.mu.Unlock()
	if ok {
		cl.wake()
	} else {
		cl.closeSlow("slow consumer: too many unread replies")
	}
}
