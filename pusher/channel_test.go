package pusher

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		wantKind  ChannelKind
		wantCache bool
	}{
		{name: "test-channel", wantKind: KindPublic, wantCache: false},
		{name: "foo", wantKind: KindPublic, wantCache: false},
		{name: "private-foo", wantKind: KindPrivate, wantCache: false},
		{name: "private-encrypted-foo", wantKind: KindPrivate, wantCache: false},
		{name: "presence-foo", wantKind: KindPresence, wantCache: false},
		{name: "cache-foo", wantKind: KindPublic, wantCache: true},
		{name: "private-cache-foo", wantKind: KindPrivate, wantCache: true},
		{name: "private-encrypted-cache-foo", wantKind: KindPrivate, wantCache: true},
		{name: "presence-cache-foo", wantKind: KindPresence, wantCache: true},
		{name: "#server-to-user-42", wantKind: KindUser, wantCache: false},
		{name: "private", wantKind: KindPublic, wantCache: false},
		{name: "presence", wantKind: KindPublic, wantCache: false},
		{name: "public-private-foo", wantKind: KindPublic, wantCache: false},
		{name: "private-cachefoo", wantKind: KindPrivate, wantCache: false},
		{name: "presence-private-foo", wantKind: KindPresence, wantCache: false},
		{name: "Private-foo", wantKind: KindPublic, wantCache: false},
		{name: "", wantKind: KindPublic, wantCache: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, cache := Classify(tt.name)
			if kind != tt.wantKind || cache != tt.wantCache {
				t.Errorf("Classify(%q) = %v, %v; want %v, %v", tt.name, kind, cache, tt.wantKind, tt.wantCache)
			}
		})
	}
}

func TestChannelKindString(t *testing.T) {
	tests := []struct {
		kind ChannelKind
		want string
	}{
		{kind: KindPublic, want: "public"},
		{kind: KindPrivate, want: "private"},
		{kind: KindPresence, want: "presence"},
		{kind: KindUser, want: "user"},
	}
	for _, tt := range tests {
		if got := tt.kind.String(); got != tt.want {
			t.Errorf("%d.String() = %q, want %q", tt.kind, got, tt.want)
		}
	}
}

func TestValidChannelName(t *testing.T) {
	tests := []struct {
		name string
		max  int
		want bool
	}{
		{name: "test-channel", max: 200, want: true},
		{name: "private-App.Models.User.1", max: 200, want: true},
		{name: "#server-to-user-1", max: 200, want: true},
		{name: "", max: 200, want: false},
		{name: "a b", max: 200, want: false},
		{name: "a\"b", max: 200, want: false},
		{name: "a\\b", max: 200, want: false},
		{name: "a\x7fb", max: 200, want: false},
		{name: "a\nb", max: 200, want: false},
		{name: strings.Repeat("x", 200), max: 200, want: true},
		{name: strings.Repeat("x", 201), max: 200, want: false},
	}
	for _, tt := range tests {
		if got := validChannelName(tt.name, tt.max); got != tt.want {
			t.Errorf("validChannelName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
