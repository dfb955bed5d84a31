package wsproto

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"

	"github.com/gobwas/ws"
)

// PoweredByHeader is the extra header line added to every 101 Switching
// Protocols response, as Laravel Reverb does.
const PoweredByHeader = "X-Powered-By: Laravel Reverb\r\n"

// acceptGUID is the GUID of RFC 6455 section 1.3 that Sec-WebSocket-Accept
// hashes with the key.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// keyLen is the length of a valid Sec-WebSocket-Key: 16 bytes in base64.
const keyLen = 24

// Upgrade answers the WebSocket opening handshake of r, a request head parsed
// by ParseRequest for which IsUpgrade reports true: it appends the response to
// dst and returns the extended slice. It reads only r; the request is not
// parsed again.
//
// The checks of RFC 6455 section 4.2.1 are made in this order, the first
// failure deciding the answer:
//
//  1. a Sec-WebSocket-Key that is present and not empty must be the base64
//     encoding of 16 bytes (400);
//  2. the request must be HTTP/1.1 (505) and a GET (405);
//  3. the Upgrade header must be "websocket", in any case (400); every
//     Connection header must hold the "upgrade" token and one must be there
//     (400); Sec-WebSocket-Version must be "13" (426 with
//     "Sec-WebSocket-Version: 13" when present with another value, 400 when
//     absent); Sec-WebSocket-Key must be present (400). A repeated Upgrade
//     header must also be "websocket", and a repeated Sec-WebSocket-Version or
//     Sec-WebSocket-Key must equal the first.
//
// (ParseRequest has already required exactly one Host header of an HTTP/1.1
// request.)
//
// On success err is nil and the response is a 101 Switching Protocols with
// the Sec-WebSocket-Accept for the key and "X-Powered-By: Laravel Reverb"; no
// Sec-WebSocket-Extensions (extensions are declined; see UpgradeWith) and no
// Sec-WebSocket-Protocol (subprotocols are ignored) are sent.
//
// On a bad handshake err is the matching handshake error of gobwas/ws (a
// *ws.ConnectionRejectedError such as ws.ErrHandshakeBadSecKey, whose
// StatusCode is the answer's status) and the response is a text/plain error
// with that status, the error's text as body and "Connection: close": the
// caller writes it and closes the connection.
//
// Upgrade is pure; a successful upgrade allocates nothing when dst has room
// for the response.
func Upgrade(dst []byte, r *Request) ([]byte, error) {
	return UpgradeWith(dst, r, "")
}

// UpgradeWith is Upgrade with a Sec-WebSocket-Extensions header in the 101
// when extensions is not empty: the value returned by NegotiateDeflate for
// the request. Error responses are the same as Upgrade's. It is pure and
// does not allocate when dst has room for the response.
func UpgradeWith(dst []byte, r *Request, extensions string) ([]byte, error) {
	dst = slices.Grow(dst, 256+len(extensions)) // the longest error response: a 426
	if err := checkHandshake(r); err != nil {
		return appendHandshakeError(dst, err), err
	}
	var buf [256]byte
	tail := append(buf[:0], "Sec-WebSocket-Accept: "...)
	tail = appendAccept(tail, r.SecWebSocketKey)
	tail = append(tail, "\r\n"+PoweredByHeader...)
	if extensions != "" {
		tail = append(tail, "Sec-WebSocket-Extensions: "...)
		tail = append(tail, extensions...)
		tail = append(tail, "\r\n"...)
	}
	return AppendResponse(dst, http.StatusSwitchingProtocols, "Upgrade: websocket\r\nConnection: Upgrade\r\n", tail, nil), nil
}

// checkHandshake makes the checks documented on Upgrade.
func checkHandshake(r *Request) error {
	key := r.SecWebSocketKey
	switch {
	case key != "" && !validKey(key):
		return ws.ErrHandshakeBadSecKey
	case r.ProtoMinor != 1:
		return ws.ErrHandshakeBadProtocol
	case r.Method != http.MethodGet:
		return ws.ErrHandshakeBadMethod
	case !eqFold(r.Upgrade, "websocket") || r.hs&hsUpgradeRepeat != 0:
		return ws.ErrHandshakeBadUpgrade
	case r.hs&hsConnSeen == 0 || r.hs&hsConnNoUpgrade != 0:
		return ws.ErrHandshakeBadConnection
	case r.hs&hsVersionSeen == 0:
		return ws.ErrHandshakeBadSecVersion
	case r.SecWebSocketVersion != "13" || r.hs&hsVersionRepeat != 0:
		return ws.ErrHandshakeUpgradeRequired
	case key == "" || r.hs&hsKeyRepeat != 0:
		return ws.ErrHandshakeBadSecKey
	}
	return nil
}

// validKey reports whether key is the base64 encoding of 16 bytes.
func validKey(key string) bool {
	if len(key) != keyLen {
		return false
	}
	var raw [keyLen]byte
	n, err := base64.StdEncoding.Decode(raw[:], []byte(key))
	return err == nil && n == 16
}

// appendAccept appends the Sec-WebSocket-Accept value for a valid key: the
// base64 of the SHA-1 of the key followed by the GUID.
func appendAccept(dst []byte, key string) []byte {
	var b [keyLen + len(acceptGUID)]byte
	copy(b[copy(b[:], key):], acceptGUID)
	sum := sha1.Sum(b[:])
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}

// appendHandshakeError appends the plain-text error response for err, one of
// gobwas/ws's handshake errors.
func appendHandshakeError(dst []byte, err error) []byte {
	status := http.StatusBadRequest
	var rej *ws.ConnectionRejectedError
	if errors.As(err, &rej) && rej.StatusCode() != 0 {
		status = rej.StatusCode()
	}
	tail := closeTail
	if status == http.StatusUpgradeRequired {
		tail = versionCloseTail
	}
	return AppendResponse(dst, status, "Content-Type: text/plain; charset=utf-8\r\n", tail, []byte(err.Error()))
}

var (
	closeTail        = []byte("Connection: close\r\n")
	versionCloseTail = []byte("Sec-WebSocket-Version: 13\r\nConnection: close\r\n")
)
