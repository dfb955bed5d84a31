package pusher

import (
	"bytes"
	"encoding/json"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Client messages are decoded in one pass over their bytes by a small
// scanner, not by encoding/json (which took five or six passes on the
// subscribe path). It is exactly as strict as
//
//	json.Unmarshal(msg, &struct{ Event, Channel, Data json.RawMessage })
//
// followed, for a data object, by the same into
// struct{ Channel, Auth, ChannelData, UserData json.RawMessage }:
//
//   - the whole message must be valid JSON (RFC 8259 as encoding/json
//     reads it: its whitespace, number grammar, escapes; control characters
//     in strings rejected, invalid UTF-8 accepted; at most 10000 levels of
//     nesting) and its value an object (null, accepted by encoding/json,
//     has no event either: both end in ErrInvalidMessage);
//   - keys match field names as encoding/json matches them: exactly or
//     else case-insensitively by Unicode simple folding, after unescaping;
//     of repeated keys the last wins; other keys are ignored;
//   - a field's value is kept as its raw bytes, as json.RawMessage would
//     hold it.
//
// The data object's fields are read in the same pass when data is an
// object; when it is a JSON string holding one (as some clients send), that
// string is unquoted and its object scanned once more.

// maxJSONDepth is encoding/json's limit on nesting.
const maxJSONDepth = 10000

// clientMsg is a client message's envelope. The slices point into the
// message (or, for data sent as a string, into its unquoted copy): valid
// only while the message is.
type clientMsg struct {
	event, channel, data []byte // raw JSON values; nil when absent
	obj                  dataFields
	objOK                bool // data is an object and obj holds its fields
}

// dataFields are the fields of a pusher:* message's data object.
type dataFields struct {
	channel, auth, channelData, userData []byte // raw JSON values; nil when absent
}

// The fields, by object level.
const (
	fieldNone = iota
	fieldEvent
	fieldChannel
	fieldData
	fieldAuth
	fieldChannelData
	fieldUserData
	fieldUserID
	fieldUserInfo
)

const (
	levelTop    = iota // the message: event, channel, data
	levelData          // the data object: channel, auth, channel_data, user_data
	levelMember        // a presence channel_data: user_id, user_info
)

// parse decodes a client message. It reports false where json.Unmarshal
// into the envelope fails or the message is not an object.
func (m *clientMsg) parse(b []byte) bool {
	*m = clientMsg{}
	s := jsonScan{b: b}
	s.ws()
	if !s.at('{') || !s.object(1, levelTop, m, &m.obj, nil) {
		return false
	}
	s.ws()
	return s.i == len(b)
}

// dataObject returns the fields of the data of a pusher:* message: an
// object as sent, or a JSON string holding one (surrounding white space,
// Unicode's too, allowed inside the string). ok is false otherwise.
func (m *clientMsg) dataObject() (d *dataFields, ok bool) {
	if m.objOK {
		return &m.obj, true
	}
	if len(m.data) == 0 || m.data[0] != '"' {
		return nil, false
	}
	str, ok := jsonStringBytes(m.data)
	if !ok {
		return nil, false
	}
	str = bytes.TrimSpace(str)
	m.obj = dataFields{}
	s := jsonScan{b: str}
	if !s.at('{') || !s.object(1, levelData, nil, &m.obj, nil) {
		return nil, false
	}
	s.ws()
	if s.i != len(str) {
		return nil, false
	}
	m.objOK = true
	return &m.obj, true
}

// memberFields are the fields of a presence channel_data.
type memberFields struct {
	userID, userInfo []byte // raw JSON values; nil when absent
}

// scanChannelData reads a channel_data in one pass: valid reports what
// json.Valid would; object whether it is an object, whose user_id and
// user_info are then read as json.Unmarshal into
// struct{ UserID, UserInfo json.RawMessage } would.
func scanChannelData(b []byte) (f memberFields, valid, object bool) {
	s := jsonScan{b: b}
	s.ws()
	if s.at('{') {
		if !s.object(1, levelMember, nil, nil, &f) {
			return memberFields{}, false, false
		}
		object = true
	} else if !s.value(0) {
		return memberFields{}, false, false
	}
	s.ws()
	if s.i != len(b) {
		return memberFields{}, false, false
	}
	return f, true, object
}

// appendUnquoted appends what encoding/json decodes from inner, the bytes
// between the quotes of a JSON string that jsonScan.str accepted: escapes
// decoded (a \u escape of a lone or mismatched surrogate as U+FFFD) and
// invalid UTF-8 replaced by U+FFFD.
func appendUnquoted(dst, inner []byte) []byte {
	for i := 0; i < len(inner); {
		c := inner[i]
		switch {
		case c == '\\':
			switch e := inner[i+1]; e {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(inner[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					if i+6 <= len(inner) && inner[i] == '\\' && inner[i+1] == 'u' {
						if dec := utf16.DecodeRune(r, hex4(inner[i+2:])); dec != unicode.ReplacementChar {
							dst = utf8.AppendRune(dst, dec)
							i += 6
							continue
						}
					}
					r = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, e)
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, n := utf8.DecodeRune(inner[i:])
			if r == utf8.RuneError && n == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, inner[i:i+n]...)
			}
			i += n
		}
	}
	return dst
}

// hex4 decodes the four hex digits at the start of b (checked by str).
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// jsonScan reads JSON from b at i.
type jsonScan struct {
	b []byte
	i int
}

func (s *jsonScan) at(c byte) bool { return s.i < len(s.b) && s.b[s.i] == c }

// ws skips JSON white space.
func (s *jsonScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object reads the object at s.i, at nesting depth depth, storing the
// fields of level: into m (levelTop), d (levelData, and the data object of
// levelTop) or u (levelMember).
func (s *jsonScan) object(depth, level int, m *clientMsg, d *dataFields, u *memberFields) bool {
	if depth > maxJSONDepth {
		return false
	}
	s.i++ // '{'
	s.ws()
	if s.at('}') {
		s.i++
		return true
	}
	for {
		if !s.at('"') {
			return false
		}
		start := s.i
		esc, ok := s.str()
		if !ok {
			return false
		}
		f := matchField(s.b[start:s.i], esc, level)
		s.ws()
		if !s.at(':') {
			return false
		}
		s.i++
		s.ws()
		start = s.i
		switch {
		case f == fieldData && s.at('{'):
			// The last data wins: its fields replace any before.
			*d = dataFields{}
			m.objOK = true
			if !s.object(depth+1, levelData, nil, d, nil) {
				return false
			}
		default:
			if f == fieldData {
				*d = dataFields{}
				m.objOK = false
			}
			if !s.value(depth) {
				return false
			}
		}
		v := s.b[start:s.i:s.i]
		switch f {
		case fieldEvent:
			m.event = v
		case fieldChannel:
			if level == levelTop {
				m.channel = v
			} else {
				d.channel = v
			}
		case fieldData:
			m.data = v
		case fieldAuth:
			d.auth = v
		case fieldChannelData:
			d.channelData = v
		case fieldUserData:
			d.userData = v
		case fieldUserID:
			u.userID = v
		case fieldUserInfo:
			u.userInfo = v
		}
		s.ws()
		if s.at(',') {
			s.i++
			s.ws()
			continue
		}
		if s.at('}') {
			s.i++
			return true
		}
		return false
	}
}

// str reads the string at s.i; esc reports whether it has escapes.
func (s *jsonScan) str() (esc, ok bool) {
	b := s.b
	i := s.i + 1
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return esc, true
		case c == '\\':
			esc = true
			i++
			if i >= len(b) {
				return esc, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return esc, false
				}
				i += 5
			default:
				return esc, false
			}
		case c < 0x20:
			return esc, false
		default:
			i++
		}
	}
	return esc, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number reads the number at s.i.
func (s *jsonScan) number() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	s.i = i
	return true
}

// scalar reads the string, number or literal at s.i.
func (s *jsonScan) scalar() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.str()
		return ok
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	}
	return s.number()
}

func (s *jsonScan) lit(l string) bool {
	if len(s.b)-s.i < len(l) || string(s.b[s.i:s.i+len(l)]) != l {
		return false
	}
	s.i += len(l)
	return true
}

// value reads (and checks) the value at s.i, inside a container at nesting
// depth depth. Nested containers are read without recursion.
func (s *jsonScan) value(depth int) bool {
	if !s.at('{') && !s.at('[') {
		return s.scalar()
	}
	var buf [32]byte
	open := buf[:0] // the containers open, innermost last
	for {
		// At a value.
		if s.at('{') || s.at('[') {
			c := s.b[s.i]
			if depth+len(open)+1 > maxJSONDepth {
				return false
			}
			open = append(open, c)
			s.i++
			s.ws()
			if c == '{' {
				if s.at('}') {
					s.i++
					open = open[:len(open)-1]
				} else {
					if !s.key() {
						return false
					}
					continue
				}
			} else {
				if s.at(']') {
					s.i++
					open = open[:len(open)-1]
				} else {
					continue
				}
			}
		} else if !s.scalar() {
			return false
		}
		// After a value: close what ends here.
		for {
			if len(open) == 0 {
				return true
			}
			s.ws()
			top := open[len(open)-1]
			if s.at(',') {
				s.i++
				s.ws()
				if top == '{' && !s.key() {
					return false
				}
				break
			}
			if top == '{' && s.at('}') || top == '[' && s.at(']') {
				s.i++
				open = open[:len(open)-1]
				continue
			}
			return false
		}
	}
}

// key reads `"key" :` and the white space after it.
func (s *jsonScan) key() bool {
	if !s.at('"') {
		return false
	}
	if _, ok := s.str(); !ok {
		return false
	}
	s.ws()
	if !s.at(':') {
		return false
	}
	s.i++
	s.ws()
	return true
}

// fieldNames are the names of each level's fields.
var fieldNames = [...][]struct {
	name string
	f    int
}{
	levelTop:    {{"event", fieldEvent}, {"channel", fieldChannel}, {"data", fieldData}},
	levelData:   {{"channel", fieldChannel}, {"auth", fieldAuth}, {"channel_data", fieldChannelData}, {"user_data", fieldUserData}},
	levelMember: {{"user_id", fieldUserID}, {"user_info", fieldUserInfo}},
}

// matchField returns the field a key (a JSON string, quotes included)
// names at level, as encoding/json matches keys to a struct's fields.
func matchField(key []byte, esc bool, level int) int {
	inner := key[1 : len(key)-1]
	ascii := !esc
	for _, c := range inner {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		// Unescape, then fold as encoding/json does.
		var k string
		if json.Unmarshal(key, &k) != nil {
			return fieldNone
		}
		inner = foldName([]byte(k))
	}
	for _, n := range fieldNames[level] {
		if len(n.name) == len(inner) && equalFoldASCII(inner, n.name) {
			return n.f
		}
	}
	return fieldNone
}

// equalFoldASCII reports whether b is name (lower-case ASCII) with any of
// its letters in either case.
func equalFoldASCII(b []byte, name string) bool {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// foldName folds a key as encoding/json does: ASCII letters to upper case,
// other runes to the smallest rune of their simple folding orbit.
func foldName(in []byte) []byte {
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		out = utf8.AppendRune(out, r)
		i += n
	}
	return out
}
