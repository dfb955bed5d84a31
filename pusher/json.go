package pusher

import (
	"bytes"
	"encoding/json"
	"strconv"

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
