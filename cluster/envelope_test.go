package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// allKinds are the envelope kinds and the header fields and payload each
// requires; a header with only these set is valid.
var allKinds = []struct {
	k       kind
	fields  string // of "acxti": app, channel, except, to, id
	payload bool
	body    []byte // the payload the kind requires exactly, or nil (any)
}{
	{kindEvent, "ac", true, nil},
	{kindBarrier, "ti", false, nil},
	{kindJoin, "ac", true, nil},
	{kindLeave, "aci", false, nil},
	{kindHello, "", false, nil},
	{kindSync, "", true, nil},
	{kindSyncReq, "t", false, nil},
	{kindPing, "", true, nil},
	{kindBye, "", false, nil},
	{kindQuery, "ai", true, nil},
	{kindReply, "ti", true, nil},
	{kindTerminate, "ai", false, nil},
	{kindRestart, "", false, nil},
	{kindCount, "ac", true, appendCount(nil, 7, 1<<40)},
	{kindOnline, "ai", true, []byte("1")},
}

// payloadOf is the payload of a valid envelope of tc: its fixed body, or
// generic.
func payloadOf(body, generic []byte) []byte {
	if body != nil {
		return body
	}
	return generic
}

// requiredHeader returns a header of kind k with the node and the fields
// in fields set.
func requiredHeader(k kind, fields string) header {
	h := header{kind: k, node: []byte("node-1")}
	for _, f := range fields {
		switch f {
		case 'a':
			h.app = []byte("app-1")
		case 'c':
			h.channel = []byte("presence-room")
		case 'x':
			h.except = []byte("1.2")
		case 't':
			h.to = []byte("node-2")
		case 'i':
			h.id = []byte("id-1")
		}
	}
	return h
}

func sameHeader(a, b header) bool {
	return a.kind == b.kind && bytes.Equal(a.node, b.node) && bytes.Equal(a.app, b.app) &&
		bytes.Equal(a.channel, b.channel) && bytes.Equal(a.except, b.except) &&
		bytes.Equal(a.to, b.to) && bytes.Equal(a.id, b.id)
}

func TestEnvelopeRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 300) // a two-byte length
	for _, tc := range allKinds {
		type variant struct {
			h       header
			payload []byte
		}
		variants := map[string]variant{}
		var payload []byte
		if tc.payload {
			payload = payloadOf(tc.body, []byte(`{"k":1}`))
		}
		variants["required"] = variant{requiredHeader(tc.k, tc.fields), payload}
		full := requiredHeader(tc.k, "acxti")
		full.channel = []byte(long)
		variants["every field"] = variant{full, payloadOf(tc.body, append([]byte(long), payload...))}
		for name, v := range variants {
			t.Run(tc.k.String()+"/"+name, func(t *testing.T) {
				b := appendEnvelope([]byte("prefix"), &v.h, v.payload)
				if !bytes.HasPrefix(b, []byte("prefix")) {
					t.Fatal("appendEnvelope lost dst")
				}
				b = b[len("prefix"):]
				if got := envelopeSize(&v.h, len(v.payload)); got != len(b) {
					t.Errorf("envelopeSize = %d, encoded %d bytes", got, len(b))
				}
				if b[0] != 'R' || b[1] != Version || kind(b[2]) != tc.k {
					t.Errorf("prefix % x", b[:3])
				}
				h, p, err := decodeHeader(b, len(b))
				if err != nil {
					t.Fatalf("decodeHeader: %v", err)
				}
				if !sameHeader(h, v.h) {
					t.Errorf("decoded %+v, want %+v", h, v.h)
				}
				if !bytes.Equal(p, v.payload) {
					t.Errorf("payload %q, want %q", p, v.payload)
				}
				// The fields alias the envelope and cannot grow into what
				// follows them.
				if len(h.node) > 0 && cap(h.node) != len(h.node) {
					t.Errorf("node field has spare capacity %d", cap(h.node)-len(h.node))
				}
			})
		}
	}
	if s := kind('?').String(); s != "unknown" {
		t.Errorf("unknown kind String() = %q", s)
	}
}

// decodeCase is an input decodeHeader must refuse.
type decodeCase struct {
	name string
	b    []byte
	max  int
	want error
}

func TestEnvelopeDecodeInvalid(t *testing.T) {
	valid := func(k kind) []byte {
		for _, tc := range allKinds {
			if tc.k == k {
				h := requiredHeader(k, tc.fields)
				var p []byte
				if tc.payload {
					p = payloadOf(tc.body, []byte("{}"))
				}
				return appendEnvelope(nil, &h, p)
			}
		}
		panic("no kind")
	}
	ev := valid(kindEvent)
	with := func(b []byte, i int, v byte) []byte {
		b = bytes.Clone(b)
		b[i] = v
		return b
	}
	tests := []decodeCase{
		{"empty", nil, 0, ErrEnvelopeInvalid},
		{"magic only", []byte("R"), 0, ErrEnvelopeInvalid},
		{"no kind", []byte{'R', Version}, 0, ErrEnvelopeInvalid},
		{"no fields", []byte{'R', Version, 'h'}, 0, ErrEnvelopeInvalid},
		{"wrong magic", with(ev, 0, 'r'), 0, ErrEnvelopeInvalid},
		{"older version", with(ev, 1, Version-1), 0, ErrEnvelopeVersion},
		{"newer version", with(ev, 1, Version+1), 0, ErrEnvelopeVersion},
		{"unknown kind", with(valid(kindHello), 2, 'Z'), 0, ErrEnvelopeInvalid},
		{"oversize", ev, len(ev) - 1, ErrEnvelopeTooLarge},
		{"oversize before anything else", []byte("garbage"), 3, ErrEnvelopeTooLarge},
		{"length past the end", []byte{'R', Version, 'h', 7, 'n'}, 0, ErrEnvelopeInvalid},
		{"huge length", append([]byte{'R', Version, 'h'}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), 0, ErrEnvelopeInvalid},
		{"varint overflow", append([]byte{'R', Version, 'h'}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), 0, ErrEnvelopeInvalid},
		{"unterminated varint", []byte{'R', Version, 'h', 0x80}, 0, ErrEnvelopeInvalid},
		{"no node", appendEnvelope(nil, &header{kind: kindHello}, nil), 0, ErrEnvelopeInvalid},
	}
	// Every truncation inside the header fields.
	hello := valid(kindHello)
	for i := 3; i < len(hello); i++ {
		tests = append(tests, decodeCase{fmt.Sprintf("hello truncated to %d bytes", i), hello[:i], 0, ErrEnvelopeInvalid})
	}
	withoutPayload := ev[:len(ev)-2]
	tests = append(tests, decodeCase{"event without payload", withoutPayload, 0, ErrEnvelopeInvalid})
	// Every kind without the node, and without each field it requires.
	for _, tc := range allKinds {
		var p []byte
		if tc.payload {
			p = payloadOf(tc.body, []byte("{}"))
		}
		h := requiredHeader(tc.k, tc.fields)
		h.node = nil
		tests = append(tests, decodeCase{tc.k.String() + " without node", appendEnvelope(nil, &h, p), 0, ErrEnvelopeInvalid})
		for i, f := range tc.fields {
			h := requiredHeader(tc.k, tc.fields[:i]+tc.fields[i+1:])
			tests = append(tests, decodeCase{tc.k.String() + " without " + string(f), appendEnvelope(nil, &h, p), 0, ErrEnvelopeInvalid})
		}
		if tc.payload {
			h := requiredHeader(tc.k, tc.fields)
			tests = append(tests, decodeCase{tc.k.String() + " without payload", appendEnvelope(nil, &h, nil), 0, ErrEnvelopeInvalid})
		}
	}
	// Kinds whose payload has a fixed form, with another.
	count := requiredHeader(kindCount, "ac")
	online := requiredHeader(kindOnline, "ai")
	for name, b := range map[string][]byte{
		"count payload short":  appendEnvelope(nil, &count, appendCount(nil, 1, 2)[:15]),
		"count payload long":   appendEnvelope(nil, &count, append(appendCount(nil, 1, 2), 0)),
		"count payload json":   appendEnvelope(nil, &count, []byte(`{"total":1}`)),
		"online payload 2":     appendEnvelope(nil, &online, []byte("2")),
		"online payload true":  appendEnvelope(nil, &online, []byte("true")),
		"online payload empty": appendEnvelope(nil, &online, nil),
	} {
		tests = append(tests, decodeCase{name, b, 0, ErrEnvelopeInvalid})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, p, err := decodeHeader(tt.b, tt.max); !errors.Is(err, tt.want) || p != nil {
				t.Fatalf("decodeHeader(% x) = payload %q, error %v; want error %v", tt.b, p, err, tt.want)
			}
		})
	}
	// At the limit exactly is accepted; max 0 is no limit.
	if _, _, err := decodeHeader(ev, len(ev)); err != nil {
		t.Errorf("envelope of exactly max bytes: %v", err)
	}
	if _, _, err := decodeHeader(ev, 0); err != nil {
		t.Errorf("max 0: %v", err)
	}
}

// TestDecodeHeaderRejectsOverlongLength: a field length must be encoded in
// as few bytes as it takes, so that every envelope has one encoding (what
// FuzzDecodeHeader checks). 0x80 0x00 is an overlong zero.
// TestCountBodyRoundTrip: a count envelope's payload keeps negative totals
// and the whole range of seq.
func TestCountBodyRoundTrip(t *testing.T) {
	for _, c := range []struct {
		total int64
		seq   uint64
	}{{0, 0}, {1, 1}, {-3, 1 << 63}, {1<<63 - 1, 1<<64 - 1}} {
		b := appendCount(nil, c.total, c.seq)
		if len(b) != countBody {
			t.Fatalf("%d bytes", len(b))
		}
		if total, seq := readCount(b); total != c.total || seq != c.seq {
			t.Errorf("readCount(appendCount(%d, %d)) = %d, %d", c.total, c.seq, total, seq)
		}
	}
}

func TestDecodeHeaderRejectsOverlongLength(t *testing.T) {
	b := []byte{'R', Version, byte(kindHello), 1, 'n', 0x80, 0x00, 0, 0, 0, 0}
	h, p, err := decodeHeader(b, 0)
	if err == nil {
		t.Fatalf("accepted an overlong field length: header %+v payload %q re-encodes to % x, not % x",
			h, p, appendEnvelope(nil, &h, p), b)
	}
}

// FuzzDecodeHeader: decoding never panics, and what it accepts is exactly
// what appendEnvelope produces for the decoded header and payload.
func FuzzDecodeHeader(f *testing.F) {
	for _, tc := range allKinds {
		var p []byte
		if tc.payload {
			p = payloadOf(tc.body, []byte(`{"gen":1,"part":0,"last":true}`))
		}
		h := requiredHeader(tc.k, tc.fields)
		f.Add(appendEnvelope(nil, &h, p), 0)
		full := requiredHeader(tc.k, "acxti")
		full.id = bytes.Repeat([]byte("i"), 200)
		f.Add(appendEnvelope(nil, &full, p), 1<<10)
	}
	f.Add([]byte{}, 0)
	f.Add([]byte{'R', Version, 'h', 0x80}, 0)
	f.Add([]byte{'R', Version + 1, 'h', 1, 'n', 0, 0, 0, 0, 0}, 0)
	f.Add([]byte{'R', Version, 'e', 1, 'n', 1, 'a', 1, 'c', 0, 0, 0, 'x'}, 8)
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		h, p, err := decodeHeader(b, max)
		if err != nil {
			if !errors.Is(err, ErrEnvelopeInvalid) && !errors.Is(err, ErrEnvelopeVersion) && !errors.Is(err, ErrEnvelopeTooLarge) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if max > 0 && len(b) > max {
			t.Fatalf("accepted %d bytes over max %d", len(b), max)
		}
		if len(h.node) == 0 || h.kind.String() == "unknown" {
			t.Fatalf("accepted header %+v", h)
		}
		if again := appendEnvelope(nil, &h, p); !bytes.Equal(again, b) {
			t.Fatalf("% x decodes to %+v / %q, which encodes to % x", b, h, p, again)
		}
		if envelopeSize(&h, len(p)) != len(b) {
			t.Fatalf("envelopeSize %d for %d bytes", envelopeSize(&h, len(p)), len(b))
		}
	})
}
