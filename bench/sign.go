package bench

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// SignedQuery returns the query string of a signed Pusher HTTP API request:
// auth_key, auth_timestamp, auth_version=1.0, body_md5 (when body is not
// empty) in sorted order, then auth_signature = hex HMAC-SHA256(secret,
// method + "\n" + path + "\n" + those parameters). path is signed as given
// (without the server's path prefix).
func SignedQuery(method, path, key, secret string, body []byte, timestamp int64) string {
	q := make([]byte, 0, 200)
	q = append(q, "auth_key="...)
	q = append(q, key...)
	q = append(q, "&auth_timestamp="...)
	q = strconv.AppendInt(q, timestamp, 10)
	q = append(q, "&auth_version=1.0"...)
	if len(body) > 0 {
		sum := md5.Sum(body)
		q = append(q, "&body_md5="...)
		q = hex.AppendEncode(q, sum[:])
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(method))
	m.Write([]byte{'\n'})
	m.Write([]byte(path))
	m.Write([]byte{'\n'})
	m.Write(q)
	q = append(q, "&auth_signature="...)
	q = hex.AppendEncode(q, m.Sum(nil))
	return string(q)
}

// ChannelAuth returns the auth value of a private channel subscription:
// key + ":" + hex HMAC-SHA256(secret, socketID + ":" + channel).
func ChannelAuth(key, secret, socketID, channel string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(socketID))
	m.Write([]byte{':'})
	m.Write([]byte(channel))
	return key + ":" + hex.EncodeToString(m.Sum(nil))
}
