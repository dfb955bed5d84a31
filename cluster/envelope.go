package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"

	"github.com/reverbgo/reverb/pusher"
)

// Version is the envelope format version. A node ignores envelopes of
// another version (and counts them as invalid), so that a rolling upgrade
// that changes the format never delivers garbage.
const Version = 2

// magic is the first byte of every envelope.
const magic = 'R'

// kind is an envelope's type, its third byte.
type kind byte

// Envelope kinds.
const (
	kindEvent     kind = 'e' // an event for the subscribers of a channel; payload: the message
	kindBarrier   kind = 'b' // a node's marker to itself: everything published before it has arrived
	kindJoin      kind = 'j' // a presence user's first connection on the sender; payload: member JSON
	kindLeave     kind = 'l' // a presence user's last connection on the sender left; id: user key
	kindHello     kind = 'h' // a node (re)joined: everyone answers with their sync
	kindSync      kind = 's' // (part of) a node's complete presence state; payload: syncBody JSON
	kindSyncReq   kind = 'r' // to: a node whose presence state the sender found different
	kindPing      kind = 'p' // heartbeat; payload: the sender's presence digest JSON
	kindBye       kind = 'x' // a node is stopping: forget it now
	kindQuery     kind = 'q' // a cluster-wide HTTP API question; id, payload: query JSON
	kindReply     kind = 'a' // a node's answer to a query; id, to, payload: reply JSON
	kindTerminate kind = 't' // close a user's connections; id: user id
	kindRestart   kind = 'X' // every node drains and exits (reverb restart)
	kindCount     kind = 'n' // a channel's cluster-wide subscription count; app, channel, payload: countBody
	kindOnline    kind = 'o' // a user came online or went offline in the cluster; app, id: user id, payload: "1" or "0"
)

// countBody is the payload of a count envelope: the total (int64) and its
// sequence number (uint64), big-endian, 16 bytes.
const countBody = 16

func appendCount(dst []byte, total int64, seq uint64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(total))
	return binary.BigEndian.AppendUint64(dst, seq)
}

// readCount decodes a count envelope's payload (checked by decodeHeader).
func readCount(b []byte) (total int64, seq uint64) {
	return int64(binary.BigEndian.Uint64(b)), binary.BigEndian.Uint64(b[8:])
}

func (k kind) String() string {
	switch k {
	case kindEvent:
		return "event"
	case kindBarrier:
		return "barrier"
	case kindJoin:
		return "join"
	case kindLeave:
		return "leave"
	case kindHello:
		return "hello"
	case kindSync:
		return "sync"
	case kindSyncReq:
		return "syncreq"
	case kindPing:
		return "ping"
	case kindBye:
		return "bye"
	case kindQuery:
		return "query"
	case kindReply:
		return "reply"
	case kindTerminate:
		return "terminate"
	case kindRestart:
		return "restart"
	case kindCount:
		return "count"
	case kindOnline:
		return "online"
	}
	return "unknown"
}

// header is the part of an envelope that is read without decoding its
// payload. Its fields alias the envelope's bytes.
type header struct {
	kind    kind
	node    []byte // the sender's id
	app     []byte // app id, or empty
	channel []byte // Pusher channel name, or empty
	except  []byte // socket id that must not receive an event, or empty
	to      []byte // the node an envelope is for, or empty (everyone)
	id      []byte // query id, barrier id, user key or user id
}

// appendEnvelope encodes an envelope: the magic byte, the version, the
// kind, six length-prefixed header fields and the payload as it is.
func appendEnvelope(dst []byte, h *header, payload []byte) []byte {
	dst = append(dst, magic, Version, byte(h.kind))
	for _, f := range [...][]byte{h.node, h.app, h.channel, h.except, h.to, h.id} {
		dst = binary.AppendUvarint(dst, uint64(len(f)))
		dst = append(dst, f...)
	}
	return append(dst, payload...)
}

// envelopeSize is the encoded size of an envelope.
func envelopeSize(h *header, payload int) int {
	n := 3 + payload
	for _, f := range [...][]byte{h.node, h.app, h.channel, h.except, h.to, h.id} {
		n += uvarintLen(len(f)) + len(f)
	}
	return n
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// Errors of envelope decoding.
var (
	// ErrEnvelopeTooLarge: an envelope over the size limit (not published, or ignored).
	ErrEnvelopeTooLarge = errors.New("cluster: envelope too large")
	// ErrEnvelopeVersion: an envelope of another format version.
	ErrEnvelopeVersion = errors.New("cluster: unknown envelope version")
	// ErrEnvelopeInvalid: an envelope that is truncated or lacks required fields.
	ErrEnvelopeInvalid = errors.New("cluster: invalid envelope")
)

// decodeHeader reads an envelope's header; payload is the rest. Nothing is
// copied. It checks the size, the version and the fields each kind needs.
func decodeHeader(b []byte, max int) (h header, payload []byte, err error) {
	if max > 0 && len(b) > max {
		return h, nil, ErrEnvelopeTooLarge
	}
	if len(b) < 3 || b[0] != magic {
		return h, nil, ErrEnvelopeInvalid
	}
	if b[1] != Version {
		return h, nil, ErrEnvelopeVersion
	}
	h.kind = kind(b[2])
	b = b[3:]
	for _, f := range [...]*[]byte{&h.node, &h.app, &h.channel, &h.except, &h.to, &h.id} {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) || k != uvarintLen(int(n)) {
			return h, nil, ErrEnvelopeInvalid
		}
		*f = b[k : k+int(n) : k+int(n)]
		b = b[k+int(n):]
	}
	payload = b
	if len(h.node) == 0 {
		return h, nil, ErrEnvelopeInvalid
	}
	need := func(ok bool) error {
		if !ok {
			return ErrEnvelopeInvalid
		}
		return nil
	}
	switch h.kind {
	case kindEvent:
		err = need(len(h.app) > 0 && len(h.channel) > 0 && len(payload) > 0)
	case kindBarrier:
		err = need(len(h.to) > 0 && len(h.id) > 0)
	case kindJoin:
		err = need(len(h.app) > 0 && len(h.channel) > 0 && len(payload) > 0)
	case kindLeave:
		err = need(len(h.app) > 0 && len(h.channel) > 0 && len(h.id) > 0)
	case kindSync, kindPing:
		err = need(len(payload) > 0)
	case kindSyncReq:
		err = need(len(h.to) > 0)
	case kindQuery:
		err = need(len(h.app) > 0 && len(h.id) > 0 && len(payload) > 0)
	case kindReply:
		err = need(len(h.to) > 0 && len(h.id) > 0 && len(payload) > 0)
	case kindTerminate:
		err = need(len(h.app) > 0 && len(h.id) > 0)
	case kindCount:
		err = need(len(h.app) > 0 && len(h.channel) > 0 && len(payload) == countBody)
	case kindOnline:
		err = need(len(h.app) > 0 && len(h.id) > 0 && len(payload) == 1 && (payload[0] == '0' || payload[0] == '1'))
	case kindHello, kindBye, kindRestart:
	default:
		err = ErrEnvelopeInvalid
	}
	if err != nil {
		return header{}, nil, err
	}
	return h, payload, nil
}

// syncBody is the payload of a sync envelope: one part of a node's
// presence state.
type syncBody struct {
	Gen     int64        `json:"gen"`
	Part    int          `json:"part"` // 0, 1, ... within a gen
	Last    bool         `json:"last,omitempty"`
	Members []syncMember `json:"members,omitempty"`
}

// syncMember is one presence user in a sync envelope.
type syncMember struct {
	App     string                `json:"app"`
	Channel string                `json:"channel"`
	Member  pusher.PresenceMember `json:"member"`
}

// decodeJSON unmarshals a control payload.
func decodeJSON(b []byte, into any) error {
	if err := json.Unmarshal(b, into); err != nil {
		return ErrEnvelopeInvalid
	}
	return nil
}
