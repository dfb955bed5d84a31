package wsproto

import (
	"errors"
	"io"
	"net/http"

	"github.com/gobwas/ws"
)

// PoweredByHeader is the extra header line added to every 101 Switching
// Protocols response, as Laravel Reverb does.
const PoweredByHeader = "X-Powered-By: Laravel Reverb\r\n"

// poweredBy is returned by the upgrader's OnBeforeUpgrade hook so that the
// header is written to the 101 response only (not to error responses).
var poweredBy = ws.HandshakeHeaderString(PoweredByHeader)

// upgrader validates handshakes. Protocol, Negotiate and the Extension hooks
// are nil, so no subprotocol and no extension (permessage-deflate) is ever
// offered in the response.
var upgrader = ws.Upgrader{
	OnBeforeUpgrade: func() (ws.HandshakeHeader, error) { return poweredBy, nil },
}

// UpgradeResult is the outcome of Upgrade.
type UpgradeResult struct {
	// Response is the complete HTTP response to write to the client: a
	// 101 Switching Protocols on success, an error response otherwise.
	Response []byte
}

// headRW is the io.ReadWriter given to ws.Upgrader: reads yield exactly the
// head bytes, writes append to a buffer.
type headRW struct {
	head []byte
	out  []byte
}

func (h *headRW) Read(p []byte) (int, error) {
	if len(h.head) == 0 {
		return 0, io.EOF
	}
	n := copy(p, h.head)
	h.head = h.head[n:]
	return n, nil
}

func (h *headRW) Write(p []byte) (int, error) {
	h.out = append(h.out, p...)
	return len(p), nil
}

// Upgrade validates the WebSocket handshake in head, which must be exactly
// the request head (r.HeadLen bytes as found by ParseRequest, so bytes
// pipelined after it are left for the frame decoder).
//
// The handshake is checked by gobwas/ws's ws.Upgrader reading exactly head
// and writing into a buffer. On success Response is the 101 Switching
// Protocols response with the Sec-WebSocket-Accept for the client's key and
// the header "X-Powered-By: Laravel Reverb"; no Sec-WebSocket-Extensions
// (permessage-deflate is declined) and no Sec-WebSocket-Protocol are sent.
//
// On a bad handshake err is non-nil (for gobwas's own rejections a
// *ws.ConnectionRejectedError, e.g. 405 for a method other than GET, 426
// with "Sec-WebSocket-Version: 13" for another version, 400 for a missing
// or malformed Sec-WebSocket-Key, Upgrade, Connection or Host header, 505
// for HTTP/1.0) and Response is the error response to write before closing
// the connection. Error responses always carry Content-Length and
// "Connection: close".
//
// Upgrade is pure; it does not retain head.
func Upgrade(head []byte) (UpgradeResult, error) {
	rw := headRW{head: head, out: make([]byte, 0, 192)}
	_, err := upgrader.Upgrade(&rw)
	if err == nil {
		return UpgradeResult{Response: rw.out}, nil
	}
	if len(rw.out) == 0 {
		// gobwas returns some errors (a malformed request line, a head
		// cut short) without writing a response.
		code := http.StatusBadRequest
		var rej *ws.ConnectionRejectedError
		if errors.As(err, &rej) && rej.StatusCode() != 0 {
			code = rej.StatusCode()
		}
		return UpgradeResult{Response: errorResponse(code, err.Error())}, err
	}
	return UpgradeResult{Response: addConnectionClose(rw.out)}, err
}

// errorResponse builds a plain-text HTTP/1.1 error response that closes the
// connection.
func errorResponse(code int, body string) []byte {
	return AppendResponse(make([]byte, 0, 128+len(body)), code, "Content-Type: text/plain; charset=utf-8\r\n", connClose, []byte(body))
}

var connClose = []byte("Connection: close\r\n")

// addConnectionClose inserts "Connection: close" after the status line of
// the response gobwas wrote.
func addConnectionClose(resp []byte) []byte {
	const hdr = "Connection: close\r\n"
	i := 0
	for i+1 < len(resp) && (resp[i] != '\r' || resp[i+1] != '\n') {
		i++
	}
	if i+1 >= len(resp) {
		return resp
	}
	i += 2
	out := make([]byte, 0, len(resp)+len(hdr))
	out = append(out, resp[:i]...)
	out = append(out, hdr...)
	return append(out, resp[i:]...)
}
