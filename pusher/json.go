package pusher

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/reverbgo/reverb/internal/jsonstr"
)

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte { return jsonstr.Append(dst, s) }

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
	b, ok := jsonStringBytes(raw)
	return string(b), ok
}

// jsonStringBytes decodes a raw JSON value that must be a string (white
// space around it allowed), as encoding/json does (invalid UTF-8 replaced
// by U+FFFD). Without escapes and with valid UTF-8 it returns the bytes
// between the quotes, without copying.
func jsonStringBytes(raw []byte) ([]byte, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '"' {
		return nil, false
	}
	s := jsonScan{b: raw}
	esc, ok := s.str()
	if !ok || s.i != len(raw) {
		return nil, false
	}
	inner := raw[1 : len(raw)-1]
	if !esc && utf8.Valid(inner) {
		return inner, true
	}
	return appendUnquoted(make([]byte, 0, len(inner)), inner), true
}

// optStringBytes decodes a field that must be a string or null/absent, as
// jsonStringBytes.
func optStringBytes(raw []byte) ([]byte, bool) {
	if isNull(raw) {
		return nil, true
	}
	return jsonStringBytes(raw)
}

// isNull reports whether raw is absent or JSON null.
func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// optString decodes a field that must be a string or null/absent.
func optString(raw json.RawMessage) (string, bool) {
	if isNull(raw) {
		return "", true
	}
	return jsonString(raw)
}
