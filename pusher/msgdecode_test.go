package pusher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// The reference: how client messages were decoded with encoding/json. The
// scanner must agree with it on every input.

type refInbound struct {
	Event   json.RawMessage `json:"event"`
	Channel json.RawMessage `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

type refData struct {
	Channel     json.RawMessage `json:"channel"`
	Auth        json.RawMessage `json:"auth"`
	ChannelData json.RawMessage `json:"channel_data"`
	UserData    json.RawMessage `json:"user_data"`
}

// refObjectData is the data of a pusher:* message as a JSON object: an
// object as sent or a JSON string holding one.
func refObjectData(raw json.RawMessage) (json.RawMessage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false
	}
	if raw[0] == '"' {
		var str string
		if json.Unmarshal(raw, &str) != nil {
			return nil, false
		}
		raw = bytes.TrimSpace([]byte(str))
	}
	if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
		return nil, false
	}
	return raw, true
}

// decoded is what a decoder made of a message, for comparison.
type decoded struct {
	ok                   bool
	event, channel, data string
	objOK                bool
	dChannel, dAuth      string
	dChannelData, dUser  string
}

func (d decoded) String() string { return fmt.Sprintf("%+v", struct{ decoded }{d}) }

func trimmed(b []byte) string {
	if b == nil {
		return "<nil>"
	}
	return string(bytes.TrimSpace(b))
}

func refDecode(msg []byte) decoded {
	var m refInbound
	if json.Unmarshal(msg, &m) != nil {
		return decoded{}
	}
	if t := bytes.TrimSpace(msg); len(t) == 0 || t[0] != '{' {
		return decoded{} // null: no fields, rejected all the same
	}
	out := decoded{ok: true, event: trimmed(m.Event), channel: trimmed(m.Channel), data: trimmed(m.Data)}
	if obj, ok := refObjectData(m.Data); ok {
		var d refData
		if json.Unmarshal(obj, &d) == nil {
			out.objOK = true
			out.dChannel, out.dAuth = trimmed(d.Channel), trimmed(d.Auth)
			out.dChannelData, out.dUser = trimmed(d.ChannelData), trimmed(d.UserData)
		}
	}
	return out
}

func scanDecode(msg []byte) decoded {
	var m clientMsg
	if !m.parse(msg) {
		return decoded{}
	}
	out := decoded{ok: true, event: trimmed(m.event), channel: trimmed(m.channel), data: trimmed(m.data)}
	if d, ok := m.dataObject(); ok {
		out.objOK = true
		out.dChannel, out.dAuth = trimmed(d.channel), trimmed(d.auth)
		out.dChannelData, out.dUser = trimmed(d.channelData), trimmed(d.userData)
	}
	return out
}

func checkDecode(t *testing.T, msg []byte) {
	t.Helper()
	want, got := refDecode(msg), scanDecode(msg)
	if got != want {
		t.Fatalf("decoding %q:\n got  %v\n want %v", msg, got, want)
	}
}

var decodeCases = []struct {
	msg  string
	ok   bool   // parses
	obj  bool   // data object found
	ch   string // data's channel (trimmed raw), when obj
	auth string
}{
	{msg: `{"event":"pusher:subscribe","data":{"channel":"x"}}`, ok: true, obj: true, ch: `"x"`, auth: "<nil>"},
	{msg: ` {"event":"pusher:subscribe","data":{"auth":"a:b","channel":"private-x","channel_data":"{}"}} `, ok: true, obj: true, ch: `"private-x"`, auth: `"a:b"`},
	{msg: `{"event":"pusher:subscribe","data":"{\"channel\":\"x\"}"}`, ok: true, obj: true, ch: `"x"`, auth: "<nil>"},
	{msg: `{"event":"pusher:subscribe","data":" \u00a0{\"channel\":\"x\"}\n"}`, ok: true, obj: true, ch: `"x"`, auth: "<nil>"},
	{msg: `{"event":"pusher:subscribe","data":"{\"channel\":\"x\"} x"}`, ok: true},
	{msg: `{"EVENT":"pusher:subscribe","Data":{"CHANNEL":"x","AuTh":null}}`, ok: true, obj: true, ch: `"x"`, auth: "null"},
	{msg: `{"\u0065vent":"e","data":{"\u0063hannel":"x"}}`, ok: true, obj: true, ch: `"x"`, auth: "<nil>"},
	{msg: `{"event":"e","data":{"user_data":"u","uſer_data":"v"}}`, ok: true, obj: true, ch: "<nil>", auth: "<nil>"},
	{msg: `{"data":{"channel":"a"},"data":{"auth":"b"}}`, ok: true, obj: true, ch: "<nil>", auth: `"b"`},
	{msg: `{"data":{"channel":"a"},"data":5}`, ok: true},
	{msg: `{"data":{"channel":"a"},"data":[{"channel":"b"}]}`, ok: true},
	{msg: `{"data":{"channel":{"channel":"deep"}}}`, ok: true, obj: true, ch: `{"channel":"deep"}`, auth: "<nil>"},
	{msg: `{"event":"e","data":{}}`, ok: true, obj: true, ch: "<nil>", auth: "<nil>"},
	{msg: `{}`, ok: true},
	{msg: `{"a":[1,-2.5e+3,true,false,null,"s",{"b":[]},[[]]],"event":"e"}`, ok: true},
	{msg: `null`},
	{msg: `[]`},
	{msg: `"x"`},
	{msg: `1`},
	{msg: ``},
	{msg: `{`},
	{msg: `{"event":"e",}`},
	{msg: `{"event":"e"} {}`},
	{msg: `{"event":"e"}x`},
	{msg: `{"event":01}`},
	{msg: `{"event":1.}`},
	{msg: `{"event":-}`},
	{msg: `{"event":1e}`},
	{msg: `{"event":tru}`},
	{msg: `{"event":nul}`},
	{msg: `{"event":"a` + "\x01" + `"}`},
	{msg: `{"event":"\x"}`},
	{msg: `{"event":"\u12"}`},
	{msg: `{"event":"e","data":{"channel":"x",}}`},
	{msg: `{"event":"e","data":[1,]}`},
	{msg: `{"event":"e","data":{"a" 1}}`},
	{msg: `{"event" "e"}`},
	{msg: `{event:"e"}`},
	{msg: `{"event":"e"` + "\v" + `}`},
	{msg: `{"event":"` + "\xff" + `"}`, ok: true},
	// encoding/json allows 10000 levels of nesting, the message's object being the first.
	{msg: `{"event":"e","data":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`, ok: true},
	{msg: `{"event":"e","data":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`},
	{msg: `{"event":"e","data":{"a":` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `}}`, ok: true, obj: true, ch: "<nil>", auth: "<nil>"},
	{msg: `{"event":"e","data":{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}}`},
	{msg: `{"event":"e","data":"{\"a\":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}"}`, ok: true, obj: true, ch: "<nil>", auth: "<nil>"},
	{msg: `{"event":"e","data":"{\"a\":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}"}`, ok: true},
}

func TestClientMsgDecode(t *testing.T) {
	for _, c := range decodeCases {
		got := scanDecode([]byte(c.msg))
		name := c.msg
		if len(name) > 80 {
			name = name[:80] + "..."
		}
		if got.ok != c.ok || got.objOK != c.obj {
			t.Errorf("%q: ok %v obj %v, want %v %v", name, got.ok, got.objOK, c.ok, c.obj)
			continue
		}
		if c.obj && (got.dChannel != c.ch || got.dAuth != c.auth) {
			t.Errorf("%q: data channel %s auth %s, want %s %s", name, got.dChannel, got.dAuth, c.ch, c.auth)
		}
		checkDecode(t, []byte(c.msg))
	}
}

// Every cut of a message is decoded as encoding/json decodes it: as a
// prefix, as a suffix, and with the parts swapped.
func TestClientMsgDecodeSplit(t *testing.T) {
	for _, c := range decodeCases {
		if len(c.msg) > 200 {
			continue
		}
		b := []byte(c.msg)
		for i := 0; i <= len(b); i++ {
			checkDecode(t, b[:i])
			checkDecode(t, b[i:])
			checkDecode(t, append(append([]byte(nil), b[i:]...), b[:i]...))
		}
	}
}

func FuzzClientMsgDecode(f *testing.F) {
	for _, c := range decodeCases {
		if len(c.msg) < 200 {
			f.Add([]byte(c.msg), uint16(len(c.msg)/2))
		}
	}
	f.Add([]byte(`{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\"id\":\"1\"}"}}`), uint16(20))
	f.Add([]byte(`{"event":"client-x","channel":"private-a","data":"{\"a\":1}"}`), uint16(9))
	f.Fuzz(func(t *testing.T, msg []byte, cut uint16) {
		checkDecode(t, msg)
		// The message cut at a random point: both parts, and swapped.
		i := int(cut) % (len(msg) + 1)
		checkDecode(t, msg[:i])
		checkDecode(t, msg[i:])
		checkDecode(t, append(append([]byte(nil), msg[i:]...), msg[:i]...))
	})
}

func BenchmarkDecodeSubscribe(b *testing.B) {
	msg := []byte(`{"event":"pusher:subscribe","data":{"auth":"reverb-key:7a0b1d6a5b3c6d0e2f1a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e","channel":"private-chat"}}`)
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m refInbound
			if json.Unmarshal(msg, &m) != nil {
				b.Fatal("bad")
			}
			if ev, ok := jsonString(m.Event); !ok || ev != "pusher:subscribe" {
				b.Fatal("event")
			}
			obj, ok := refObjectData(m.Data)
			var d refData
			if !ok || json.Unmarshal(obj, &d) != nil {
				b.Fatal("data")
			}
			if _, ok := jsonString(d.Channel); !ok {
				b.Fatal("channel")
			}
			if _, ok := optString(d.Auth); !ok {
				b.Fatal("auth")
			}
		}
	})
	b.Run("scanner", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m clientMsg
			if !m.parse(msg) {
				b.Fatal("bad")
			}
			if ev, ok := jsonStringBytes(m.event); !ok || string(ev) != "pusher:subscribe" {
				b.Fatal("event")
			}
			d, ok := m.dataObject()
			if !ok {
				b.Fatal("data")
			}
			if _, ok := jsonString(d.channel); !ok {
				b.Fatal("channel")
			}
			if _, ok := optString(d.auth); !ok {
				b.Fatal("auth")
			}
		}
	})
}

// checkString compares jsonStringBytes with encoding/json on raw.
func checkString(t *testing.T, raw []byte) {
	t.Helper()
	got, ok := jsonStringBytes(raw)
	var want string
	tr := bytes.TrimSpace(raw)
	wantOK := len(tr) > 0 && tr[0] == '"' && json.Unmarshal(tr, &want) == nil
	if ok != wantOK || (ok && string(got) != want) {
		t.Fatalf("jsonStringBytes(%q) = %q, %v; encoding/json: %q, %v", raw, got, ok, want, wantOK)
	}
}

var stringCases = []string{
	`"abc"`, ` "a b" `, `"é"`, `"\u00e9"`, `"a\"b"`, `"` + "\xff" + `"`, `"a` + "\xe2\x82" + `b"`,
	`"\ud800"`, `"\ud800x"`, `"\ud800\u0041"`, `"\ud83d\ude00"`, `"\ude00\ud83d"`, `"\ud83d\\ude00"`,
	`"\b\f\n\r\t\/\\\""`, `"\u0000\u001f\uFFFF\uabcd"`, `"\u12"`, `"\x"`, `"\"`, `"\`,
	`"`, `""`, `"a`, `a"`, `1`, `null`, `"a"b"`, "\"\x01\"", `"a" `, `"a" "b"`, "\u00a0\"a\"",
}

func TestJSONStringBytes(t *testing.T) {
	for _, in := range stringCases {
		checkString(t, []byte(in))
	}
}

func FuzzJSONString(f *testing.F) {
	for _, in := range stringCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkString(t, raw)
		checkString(t, append(append([]byte{'"'}, raw...), '"'))
	})
}

// checkChannelData compares scanChannelData with json.Valid and
// json.Unmarshal into the member fields.
func checkChannelData(t *testing.T, b []byte) {
	t.Helper()
	f, valid, object := scanChannelData(b)
	if valid != json.Valid(b) {
		t.Fatalf("scanChannelData(%q): valid %v, json.Valid %v", b, valid, !valid)
	}
	if !valid {
		return
	}
	var cd struct {
		UserID   json.RawMessage `json:"user_id"`
		UserInfo json.RawMessage `json:"user_info"`
	}
	err := json.Unmarshal(b, &cd)
	isObject := err == nil && bytes.TrimSpace(b)[0] == '{'
	if object != isObject {
		t.Fatalf("scanChannelData(%q): object %v, encoding/json %v (%v)", b, object, isObject, err)
	}
	if object && (trimmed(f.userID) != trimmed(cd.UserID) || trimmed(f.userInfo) != trimmed(cd.UserInfo)) {
		t.Fatalf("scanChannelData(%q): %s %s, encoding/json %s %s", b, f.userID, f.userInfo, cd.UserID, cd.UserInfo)
	}
}

var channelDataCases = []string{
	`{"user_id":1}`, `{"user_id":"1","user_info":{"name":"a"}}`, ` {"USER_ID":"x","User_Info":[1,2]} `,
	`{"user_id":1,"user_id":2}`, `{"user_\u0069d":3}`, `{"user_id":null}`, `{}`, `null`, `5`, `"x"`, `[]`,
	`[{"user_id":1}]`, `{"user_id":1,}`, `{"user_id":1} x`, ``, ` `, `{"user_info":{"user_id":1}}`,
	`{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
	`{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

func TestScanChannelData(t *testing.T) {
	for _, c := range channelDataCases {
		checkChannelData(t, []byte(c))
	}
	for _, c := range channelDataCases[:17] {
		for i := 0; i <= len(c); i++ {
			checkChannelData(t, []byte(c[:i]))
			checkChannelData(t, []byte(c[i:]))
		}
	}
}

func FuzzChannelData(f *testing.F) {
	for _, c := range channelDataCases[:17] {
		f.Add([]byte(c), uint16(len(c)/2))
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		checkChannelData(t, b)
		i := int(cut) % (len(b) + 1)
		checkChannelData(t, b[:i])
		checkChannelData(t, b[i:])
	})
}
