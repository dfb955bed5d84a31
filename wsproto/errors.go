package wsproto

import "errors"

// ErrHeadTooLarge is returned by ParseRequest when no end of the request
// head (an empty line) is found within the allowed number of bytes. The
// caller should answer 431 Request Header Fields Too Large (or 413) and
// close the connection.
var ErrHeadTooLarge = errors.New("wsproto: request head too large")

// ErrBadRequest is returned by ParseRequest when the request line or a
// header line is malformed. The caller should answer 400 Bad Request and
// close the connection.
var ErrBadRequest = errors.New("wsproto: malformed HTTP request")
