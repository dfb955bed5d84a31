package pusher

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sign returns the lowercase hex HMAC-SHA256 of msg under secret.
func sign(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// verifyHex compares a hex signature with HMAC-SHA256(secret, msg) in
// constant time.
func verifyHex(secret, msg, got string) bool {
	want := sign(secret, msg)
	return hmac.Equal([]byte(want), []byte(got))
}

// ChannelSignature returns the value a backend puts in "auth" for a channel
// subscription: "<key>:<hex hmac of socket_id:channel[:channel_data]>".
// Goroutine-safe.
func ChannelSignature(app *App, socketID, channel, channelData string) string {
	return ChannelAuth(app.Key, app.Secret, socketID, channel, channelData)
}

// ChannelAuth returns the "auth" of a channel subscription for the app with
// key and secret: "<key>:<hex hmac of socket_id:channel[:channel_data]>",
// what a backend's broadcasting/auth endpoint answers. Goroutine-safe.
func ChannelAuth(key, secret, socketID, channel, channelData string) string {
	msg := socketID + ":" + channel
	if channelData != "" {
		msg += ":" + channelData
	}
	return key + ":" + sign(secret, msg)
}

// userSignature returns the "auth" of a pusher:signin:
// "<key>:<hex hmac of socket_id::user::user_data>". Goroutine-safe.
func userSignature(app *App, socketID, userData string) string {
	return app.Key + ":" + sign(app.Secret, socketID+"::user::"+userData)
}

// verifyAuth checks an "auth" value "<key>:<signature>" against msg. As in
// Reverb, only the part after the first ':' is compared (in constant time);
// unlike Reverb, a key part that is present must be the app's key.
func verifyAuth(app *App, auth, msg string) bool {
	key, sig, ok := strings.Cut(auth, ":")
	if !ok || key != app.Key || sig == "" {
		return false
	}
	return verifyHex(app.Secret, msg, sig)
}

// apiSignatureError tells why an HTTP API request's signature was refused.
type apiSignatureError string

func (e apiSignatureError) Error() string { return string(e) }

// Reasons an HTTP API signature is refused.
const (
	errSigMissing   apiSignatureError = "Missing authentication parameters."
	errSigKey       apiSignatureError = "Authentication key is not the app's key."
	errSigTimestamp apiSignatureError = "Timestamp expired: auth_timestamp is outside the allowed window."
	errSigInvalid   apiSignatureError = "Authentication signature invalid."
	errSigBodyMD5   apiSignatureError = "body_md5 does not match the body."
)

// apiStringToSign builds Pusher's string to sign for an HTTP API request:
// METHOD\nPATH\nsorted query without auth_signature, with body_md5 set to the
// body's MD5 when the body is not empty. path is the request path without the
// server's path prefix. Goroutine-safe.
func apiStringToSign(method, path string, query url.Values, body []byte) string {
	keys := make([]string, 0, len(query)+1)
	for k := range query {
		switch k {
		case "auth_signature", "body_md5", "appId", "appKey", "channelName":
			continue
		}
		keys = append(keys, k)
	}
	var md5hex string
	if len(body) > 0 {
		sum := md5.Sum(body)
		md5hex = hex.EncodeToString(sum[:])
		keys = append(keys, "body_md5")
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(strings.ToUpper(method))
	b.WriteByte('\n')
	b.WriteString(path)
	b.WriteByte('\n')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		if k == "body_md5" && md5hex != "" {
			b.WriteString(md5hex)
			continue
		}
		b.WriteString(strings.Join(query[k], ","))
	}
	return b.String()
}

// SignQuery signs an HTTP API request as the Pusher server libraries do. It
// returns a copy of query with auth_key, auth_timestamp (now, in seconds),
// auth_version 1.0, body_md5 (when body is not empty) and auth_signature,
// the hex HMAC-SHA256 under secret of the string that verifyAPISignature
// checks (see apiStringToSign). path is signed as given, without the
// server's path prefix. Values are signed raw; Encode the result for the
// wire. Goroutine-safe.
func SignQuery(key, secret, method, path string, query url.Values, body []byte, now time.Time) url.Values {
	q := make(url.Values, len(query)+5)
	for k, v := range query {
		q[k] = append([]string(nil), v...)
	}
	q.Del("auth_signature")
	q.Set("auth_key", key)
	q.Set("auth_timestamp", strconv.FormatInt(now.Unix(), 10))
	q.Set("auth_version", "1.0")
	if len(body) > 0 {
		sum := md5.Sum(body)
		q.Set("body_md5", hex.EncodeToString(sum[:]))
	}
	q.Set("auth_signature", sign(secret, apiStringToSign(method, path, q, body)))
	return q
}

// verifyAPISignature checks a signed HTTP API request. window <= 0 turns the
// auth_timestamp check off.
func verifyAPISignature(app *App, method, path string, query url.Values, body []byte, now time.Time, window time.Duration) error {
	sig := query.Get("auth_signature")
	if sig == "" || query.Get("auth_key") == "" {
		return errSigMissing
	}
	if query.Get("auth_key") != app.Key {
		return errSigKey
	}
	if window > 0 {
		ts, err := strconv.ParseInt(query.Get("auth_timestamp"), 10, 64)
		if err != nil {
			return errSigMissing
		}
		d := now.Sub(time.Unix(ts, 0))
		if d > window || d < -window {
			return errSigTimestamp
		}
	}
	if got := query.Get("body_md5"); got != "" && len(body) > 0 {
		sum := md5.Sum(body)
		if !hmac.Equal([]byte(strings.ToLower(got)), []byte(hex.EncodeToString(sum[:]))) {
			return errSigBodyMD5
		}
	}
	if !verifyHex(app.Secret, apiStringToSign(method, path, query, body), strings.ToLower(sig)) {
		return errSigInvalid
	}
	return nil
}
