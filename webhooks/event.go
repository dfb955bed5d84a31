package webhooks

import (
	"strconv"
	"strings"

	"github.com/reverbgo/reverb/internal/jsonstr"
)

// The event names, as Event.Name, Endpoint.EventTypes and the "name" of an
// event in the body.
const (
	ChannelOccupied   = "channel_occupied"
	ChannelVacated    = "channel_vacated"
	MemberAdded       = "member_added"
	MemberRemoved     = "member_removed"
	ClientEvent       = "client_event"
	CacheMiss         = "cache_miss"
	SubscriptionCount = "subscription_count"
)

// Event is one webhook event. Which fields are sent depends on Name:
//
//	channel_occupied, channel_vacated, cache_miss  name, channel
//	member_added, member_removed                   name, channel, user_id
//	client_event                                   name, channel, event, data, socket_id,
//	                                               and user_id on presence channels
//	subscription_count                             name, channel, subscription_count
//
// The other fields are ignored.
type Event struct {
	Name     string // one of the event names above
	Channel  string // the channel's full name
	UserID   string // member_added, member_removed; client_event on a presence channel
	Event    string // client_event: the client event's name (client-...)
	Data     string // client_event: its data, as the client sent it (JSON text for an object)
	SocketID string // client_event: the sender's socket id

	// SubscriptionCount is the channel's subscription count, for
	// subscription_count.
	SubscriptionCount int
}

// kind is an event name as a small number, and a bit in an event mask.
type kind uint8

const (
	kOccupied kind = iota
	kVacated
	kAdded
	kRemoved
	kClient
	kCacheMiss
	kSubCount
	numKinds
)

var eventNames = [numKinds]string{
	ChannelOccupied, ChannelVacated, MemberAdded, MemberRemoved,
	ClientEvent, CacheMiss, SubscriptionCount,
}

func (k kind) bit() uint8 { return 1 << k }

func (k kind) String() string { return eventNames[k] }

// kindOf maps an event name to its kind, without allocating.
func kindOf(name string) (kind, bool) {
	switch name {
	case ChannelOccupied:
		return kOccupied, true
	case ChannelVacated:
		return kVacated, true
	case MemberAdded:
		return kAdded, true
	case MemberRemoved:
		return kRemoved, true
	case ClientEvent:
		return kClient, true
	case CacheMiss:
		return kCacheMiss, true
	case SubscriptionCount:
		return kSubCount, true
	}
	return 0, false
}

// pairBits maps each kind to the kinds whose Emit matters for it: the delay
// rule needs channel_occupied to cancel a pending channel_vacated and the
// reverse, and the same for member_added and member_removed.
var pairBits = [numKinds]uint8{
	kOccupied:  kOccupied.bit() | kVacated.bit(),
	kVacated:   kOccupied.bit() | kVacated.bit(),
	kAdded:     kAdded.bit() | kRemoved.bit(),
	kRemoved:   kAdded.bit() | kRemoved.bit(),
	kClient:    kClient.bit(),
	kCacheMiss: kCacheMiss.bit(),
	kSubCount:  kSubCount.bit(),
}

const (
	prefixPresence = "presence-"
	prefixPrivate  = "private-"
)

// allowed reports whether the event can exist on its channel: member events
// only on presence channels, client events only on private and presence
// channels, subscription counts never on presence channels.
func allowed(k kind, channel string) bool {
	switch k {
	case kAdded, kRemoved:
		return strings.HasPrefix(channel, prefixPresence)
	case kClient:
		return strings.HasPrefix(channel, prefixPresence) || strings.HasPrefix(channel, prefixPrivate)
	case kSubCount:
		return !strings.HasPrefix(channel, prefixPresence)
	}
	return true
}

// appendEvent appends the event's JSON object, its fields in the order of
// Pusher's documentation.
func appendEvent(b []byte, k kind, ev *Event) []byte {
	b = append(b, `{"name":`...)
	b = jsonstr.Append(b, eventNames[k])
	b = append(b, `,"channel":`...)
	b = jsonstr.Append(b, ev.Channel)
	switch k {
	case kAdded, kRemoved:
		b = append(b, `,"user_id":`...)
		b = jsonstr.Append(b, ev.UserID)
	case kClient:
		b = append(b, `,"event":`...)
		b = jsonstr.Append(b, ev.Event)
		b = append(b, `,"data":`...)
		b = jsonstr.Append(b, ev.Data)
		b = append(b, `,"socket_id":`...)
		b = jsonstr.Append(b, ev.SocketID)
		if ev.UserID != "" && strings.HasPrefix(ev.Channel, prefixPresence) {
			b = append(b, `,"user_id":`...)
			b = jsonstr.Append(b, ev.UserID)
		}
	case kSubCount:
		b = append(b, `,"subscription_count":`...)
		b = strconv.AppendInt(b, int64(ev.SubscriptionCount), 10)
	}
	return append(b, '}')
}

// appendBody appends {"time_ms":...,"events":[...]}.
func appendBody(b []byte, timeMS int64, items []*item) []byte {
	b = append(b, `{"time_ms":`...)
	b = strconv.AppendInt(b, timeMS, 10)
	b = append(b, `,"events":[`...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendEvent(b, it.kind, &it.ev)
	}
	return append(b, "]}"...)
}
