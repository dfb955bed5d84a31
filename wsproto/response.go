package wsproto

import (
	"net/http"
	"strconv"
)

// AppendResponse appends to dst a complete HTTP/1.1 response and returns the
// extended slice. It is the one encoder of the server's HTTP responses: the
// 101 of a WebSocket upgrade, the answers to bad handshakes and the HTTP
// API's responses.
//
// The response is the status line ("HTTP/1.1 <status> <reason>"), the header
// lines in head, a Content-Length line giving len(body) (left out for 1xx
// statuses, which have no body), the header lines in tail, an empty line and
// body. head and tail are complete header lines, each ending in CRLF
// ("Name: value\r\n"), or empty: head is meant for the fixed lines of a kind
// of response and tail for the ones built per response, so that a caller
// keeps the order of its lines without building a string. Neither may hold
// a Content-Length line.
//
// AppendResponse is pure and does not allocate when dst has room.
func AppendResponse(dst []byte, status int, head string, tail, body []byte) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(status)...)
	dst = append(dst, "\r\n"...)
	dst = append(dst, head...)
	if status >= 200 {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(body)), 10)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, tail...)
	dst = append(dst, "\r\n"...)
	return append(dst, body...)
}
