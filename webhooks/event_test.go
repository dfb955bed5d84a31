package webhooks

import (
	"encoding/json"
	"testing"
)

func TestAppendEvent(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"channel_occupied", Event{Name: ChannelOccupied, Channel: "private-a", UserID: "u"},
			`{"name":"channel_occupied","channel":"private-a"}`},
		{"channel_vacated", Event{Name: ChannelVacated, Channel: "a", SocketID: "1.2"},
			`{"name":"channel_vacated","channel":"a"}`},
		{"cache_miss", Event{Name: CacheMiss, Channel: "cache-a", Data: "x"},
			`{"name":"cache_miss","channel":"cache-a"}`},
		{"member_added", Event{Name: MemberAdded, Channel: "presence-a", UserID: "42"},
			`{"name":"member_added","channel":"presence-a","user_id":"42"}`},
		{"member_removed", Event{Name: MemberRemoved, Channel: "presence-a", UserID: "42"},
			`{"name":"member_removed","channel":"presence-a","user_id":"42"}`},
		{"client_event on private: no user_id",
			Event{Name: ClientEvent, Channel: "private-a", Event: "client-typing", Data: `{"x":1}`, SocketID: "123.456", UserID: "ignored"},
			`{"name":"client_event","channel":"private-a","event":"client-typing","data":"{\"x\":1}","socket_id":"123.456"}`},
		{"client_event on presence: user_id",
			Event{Name: ClientEvent, Channel: "presence-a", Event: "client-typing", Data: "hi", SocketID: "123.456", UserID: "42"},
			`{"name":"client_event","channel":"presence-a","event":"client-typing","data":"hi","socket_id":"123.456","user_id":"42"}`},
		{"client_event on presence without user", Event{Name: ClientEvent, Channel: "presence-a", Event: "client-x", Data: "", SocketID: "1.1"},
			`{"name":"client_event","channel":"presence-a","event":"client-x","data":"","socket_id":"1.1"}`},
		{"subscription_count", Event{Name: SubscriptionCount, Channel: "a", SubscriptionCount: 10},
			`{"name":"subscription_count","channel":"a","subscription_count":10}`},
		{"subscription_count zero", Event{Name: SubscriptionCount, Channel: "a"},
			`{"name":"subscription_count","channel":"a","subscription_count":0}`},
		{"escaping", Event{Name: MemberAdded, Channel: "presence-\"q\"\\", UserID: "é\n\u2028<>&"},
			`{"name":"member_added","channel":"presence-\"q\"\\","user_id":"é\n\u2028<>&"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, ok := kindOf(tt.ev.Name)
			if !ok {
				t.Fatalf("kindOf(%q) failed", tt.ev.Name)
			}
			got := string(appendEvent(nil, k, &tt.ev))
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

func TestAppendBody(t *testing.T) {
	items := []*item{
		{kOccupied, Event{Channel: "a"}},
		{kSubCount, Event{Channel: "a", SubscriptionCount: 3}},
	}
	got := string(appendBody(nil, 1327078148132, items))
	want := `{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"a"},{"name":"subscription_count","channel":"a","subscription_count":3}]}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestFilterMatch(t *testing.T) {
	tests := []struct {
		f       Filter
		channel string
		want    bool
	}{
		{Filter{}, "anything", true},
		{Filter{}, "", true},
		{Filter{ChannelNameStartsWith: "private-"}, "private-a", true},
		{Filter{ChannelNameStartsWith: "private-"}, "presence-a", false},
		{Filter{ChannelNameEndsWith: "-orders"}, "private-orders", true},
		{Filter{ChannelNameEndsWith: "-orders"}, "private-orders-2", false},
		{Filter{ChannelNameStartsWith: "private-", ChannelNameEndsWith: "-orders"}, "private-eu-orders", true},
		{Filter{ChannelNameStartsWith: "private-", ChannelNameEndsWith: "-orders"}, "presence-eu-orders", false},
		{Filter{ChannelNameStartsWith: "private-", ChannelNameEndsWith: "-orders"}, "private-eu-users", false},
	}
	for _, tt := range tests {
		if got := tt.f.Match(tt.channel); got != tt.want {
			t.Errorf("%+v.Match(%q) = %v, want %v", tt.f, tt.channel, got, tt.want)
		}
	}
}
