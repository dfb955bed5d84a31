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
	msg := socketID + ":" + channel
	if channelData != "" {
		msg += ":" + channelData
	}
	return app.Key + ":" + sign(app.Secret, msg)
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
