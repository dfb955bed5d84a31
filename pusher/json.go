package pusher

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal. It escapes what JSON
// requires plus U+2028/U+2029, and replaces invalid UTF-8 with U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// eventJSON encodes {"event":E,"data":"<data>","channel":C}: the shape of an
// event triggered through the HTTP API. data is embedded as a JSON string;
// channel is omitted when empty.
func eventJSON(dst []byte, event, data, channel string) []byte {
	dst = append(dst, `{"event":`...)
	dst = appendJSONString(dst, event)
	dst = append(dst, `,"data":`...)
	dst = appendJSONString(dst, data)
	if channel != "" {
		dst = append(dst, `,"channel":`...)
		dst = appendJSONString(dst, channel)
	}
	return append(dst, '}')
}

// errorJSON encodes a pusher:error event.
func errorJSON(e *Error) []byte {
	inner := make([]byte, 0, 64+len(e.Message))
	inner = append(inner, `{"code":`...)
	inner = strconv.AppendInt(inner, int64(e.Code), 10)
	inner = append(inner, `,"message":`...)
	inner = appendJSONString(inner, e.Message)
	inner = append(inner, '}')
	return eventJSON(nil, "pusher:error", string(inner), "")
}

// jsonString decodes a raw JSON value that must be a string.
func jsonString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var out string
	if json.Unmarshal(raw, &out) != nil {
		return "", false
	}
	return out, true
}

// isNull reports whether raw is absent or JSON null.
func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// objectData returns the data of a pusher:* message as a JSON object: either
// an object as sent or a JSON string holding one.
func objectData(raw json.RawMessage) (json.RawMessage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false
	}
	if raw[0] == '"' {
		str, ok := jsonString(raw)
		if !ok {
			return nil, false
		}
		raw = bytes.TrimSpace([]byte(str))
	}
	if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
		return nil, false
	}
	return raw, true
}

// optString decodes a field that must be a string or null/absent.
func optString(raw json.RawMessage) (string, bool) {
	if isNull(raw) {
		return "", true
	}
	return jsonString(raw)
}
