package cluster

import (
	"encoding/json"
	"errors"

	"github.com/reverbgo/reverb/pusher"
)

// Version is the envelope format version. A node ignores envelopes of
// another version (and counts them), so that a rolling upgrade that changes
// the format never delivers garbage.
const Version = 1

// Envelope types.
const (
	typeEvent     = "event"     // an event for the subscribers of a channel
	typeJoin      = "join"      // a presence user's first connection on the sender
	typeLeave     = "leave"     // a presence user's last connection on the sender left
	typeHello     = "hello"     // a node (re)joined: everyone answers with their sync
	typeSync      = "sync"      // (part of) a node's complete presence state
	typePing      = "ping"      // heartbeat
	typeBye       = "bye"       // a node is stopping: forget it now
	typeQuery     = "query"     // a cluster-wide HTTP API question
	typeReply     = "reply"     // a node's answer to a query
	typeTerminate = "terminate" // close a user's connections
	typeRestart   = "restart"   // every node drains and exits (reverb restart)
)

// Envelope is what nodes publish on the Redis channel, as JSON. It never
// carries app secrets: apps are named by id, and each node uses its own
// configuration of that app. See the README for the format.
type Envelope struct {
	V    int    `json:"v"`
	Node string `json:"node"`
	Type string `json:"type"`
	App  string `json:"app,omitempty"`
	// event
	Channel string          `json:"channel,omitempty"`
	Msg     json.RawMessage `json:"msg,omitempty"`
	Except  string          `json:"except,omitempty"`
	// join, leave
	Member *pusher.PresenceMember `json:"member,omitempty"`
	Key    string                 `json:"key,omitempty"`
	// sync
	Gen     int64        `json:"gen,omitempty"`
	Part    int          `json:"part,omitempty"` // 0, 1, ... within a gen
	Last    bool         `json:"last,omitempty"`
	Members []syncMember `json:"members,omitempty"`
	// query, reply
	ID    string        `json:"id,omitempty"`
	To    string        `json:"to,omitempty"`
	Query *pusher.Query `json:"query,omitempty"`
	Reply *pusher.Reply `json:"reply,omitempty"`
	// terminate
	User string `json:"user,omitempty"`
}

// syncMember is one presence user in a sync envelope.
type syncMember struct {
	App     string                `json:"app"`
	Channel string                `json:"channel"`
	Member  pusher.PresenceMember `json:"member"`
}

// Errors of envelope decoding.
var (
	// ErrEnvelopeTooLarge: an envelope over the size limit (not published, or ignored).
	ErrEnvelopeTooLarge = errors.New("cluster: envelope too large")
	// ErrEnvelopeVersion: an envelope of another format version.
	ErrEnvelopeVersion = errors.New("cluster: unknown envelope version")
	// ErrEnvelopeInvalid: an envelope that is not valid JSON or lacks required fields.
	ErrEnvelopeInvalid = errors.New("cluster: invalid envelope")
)

// decodeEnvelope parses and checks an envelope.
func decodeEnvelope(b []byte, max int) (*Envelope, error) {
	if max > 0 && len(b) > max {
		return nil, ErrEnvelopeTooLarge
	}
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, ErrEnvelopeInvalid
	}
	if e.V != Version {
		return nil, ErrEnvelopeVersion
	}
	if e.Node == "" || e.Type == "" {
		return nil, ErrEnvelopeInvalid
	}
	switch e.Type {
	case typeEvent:
		if e.App == "" || e.Channel == "" || len(e.Msg) == 0 {
			return nil, ErrEnvelopeInvalid
		}
	case typeJoin:
		if e.App == "" || e.Channel == "" || e.Member == nil || e.Member.Key == "" {
			return nil, ErrEnvelopeInvalid
		}
	case typeLeave:
		if e.App == "" || e.Channel == "" || e.Key == "" {
			return nil, ErrEnvelopeInvalid
		}
	case typeQuery:
		if e.App == "" || e.ID == "" || e.Query == nil {
			return nil, ErrEnvelopeInvalid
		}
	case typeReply:
		if e.ID == "" || e.To == "" || e.Reply == nil {
			return nil, ErrEnvelopeInvalid
		}
	case typeTerminate:
		if e.App == "" || e.User == "" {
			return nil, ErrEnvelopeInvalid
		}
	}
	return &e, nil
}
