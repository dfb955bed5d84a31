package wsproto

import (
	"bytes"
	"encoding/binary"
	"strings"
)

// Request is the parsed head of an HTTP/1.x request, holding only the
// fields a Pusher-compatible server needs.
//
// The string fields never alias the buffer given to ParseRequest: they are
// substrings of one string allocated per parsed head (or constants for
// common values), so they stay valid after the caller discards its buffer.
// Keeping any one of them keeps that string (the few hundred bytes of the
// retained fields, not the whole head) alive.
type Request struct {
	// Method is the request method, e.g. "GET".
	Method string
	// RawPath is the part of the request-target before the first '?', as
	// sent, e.g. "/app/key" for "/app/key?protocol=7".
	RawPath string
	// Path is RawPath percent-decoded ('+' is left alone). An invalid
	// escape makes the request malformed.
	Path string
	// RawQuery is the part of the request-target after the first '?', not
	// decoded.
	RawQuery string
	// ProtoMinor is the minor version of HTTP/1.x: 0 or 1.
	ProtoMinor int

	// Origin is the value of the first Origin header.
	Origin string
	// Upgrade is the value of the first Upgrade header.
	Upgrade string
	// SecWebSocketKey is the value of the first Sec-WebSocket-Key header.
	SecWebSocketKey string
	// SecWebSocketVersion is the value of the first Sec-WebSocket-Version
	// header.
	SecWebSocketVersion string
	// SecWebSocketExtensions is the value of the Sec-WebSocket-Extensions
	// header; repeated headers are joined with ", ", as HTTP allows.
	SecWebSocketExtensions string

	// ContentLength is the value of Content-Length, or -1 when absent.
	// Invalid, negative or conflicting repeated values make the request
	// malformed; identical repeats are accepted.
	ContentLength int64
	// Chunked reports that Transfer-Encoding is present with "chunked" as
	// its final coding (any other Transfer-Encoding makes the request
	// malformed). The server does not decode chunked bodies: the caller
	// rejects such requests (411 or 400).
	Chunked bool
	// KeepAlive reports whether the connection may be reused after the
	// response: for HTTP/1.1 unless "Connection: close" is present, for
	// HTTP/1.0 only with "Connection: keep-alive" (and no "close").
	KeepAlive bool

	// hs holds what Upgrade needs to know of the handshake headers beyond
	// their first values (hs* bits).
	hs uint8
}

// Bits of Request.hs, gathered by ParseRequest for Upgrade.
const (
	hsVersionSeen   = 1 << iota // a Sec-WebSocket-Version header is present (maybe empty)
	hsConnSeen                  // a Connection header is present
	hsConnNoUpgrade             // a Connection header lacks the "upgrade" token
	hsUpgradeRepeat             // a repeated Upgrade header is not "websocket"
	hsVersionRepeat             // a repeated Sec-WebSocket-Version differs from the first
	hsKeyRepeat                 // a repeated Sec-WebSocket-Key differs from the first
)

// IsUpgrade reports whether the request asks for a WebSocket connection,
// i.e. it has a non-empty Upgrade header. The handshake itself is validated
// by Upgrade, from the fields parsed here.
func (r *Request) IsUpgrade() bool { return r.Upgrade != "" }

// Indexes of the raw header values collected while scanning the head.
const (
	fTarget = iota
	fOrigin
	fUpgrade
	fKey
	fVersion
	fExt
	fCount
)

// ParseRequest parses an HTTP/1.x request head at the start of buf into r.
// r is reset first.
//
// It returns the length n of the head, including the empty line that ends
// it, when the head is complete and well formed (bytes after it, such as a
// body, pipelined requests or WebSocket frames, are not part of it); n == 0
// and a nil error when more bytes are needed; ErrHeadTooLarge when no end of
// head is found within the first max bytes (max <= 0 means no limit); and
// ErrBadRequest when the request line or a complete header line is
// malformed. Lines are checked in order as soon as they are complete, so
// a malformed request may be rejected before its head is complete; the
// result is the same however buf was split into reads.
//
// Lines end with CRLF; a bare LF is tolerated. Header names are matched
// case-insensitively and whitespace around values is trimmed. Obsolete line
// folding, whitespace before the colon, control characters in values, a
// version other than HTTP/1.0 or HTTP/1.1, a missing Host header in
// HTTP/1.1 and a malformed percent escape in the path are rejected as
// ErrBadRequest. Leading empty lines before the request line are not
// skipped.
//
// ParseRequest is pure: it does not retain buf and allocates at most one
// string per request (and a scratch buffer when Sec-WebSocket-Extensions is
// repeated).
func ParseRequest(buf []byte, max int, r *Request) (n int, err error) {
	*r = Request{ContentLength: -1}

	limit := len(buf)
	if max > 0 && limit > max {
		limit = max
	}

	var (
		raw          [fCount][]byte
		method       []byte
		connClose    bool
		connKeep     bool
		hostSeen     bool
		hs           uint8
		teSeen       bool
		teLastChunk  bool
		first        = true
		pos          int
		headComplete bool
		extJoined    []byte // repeated Sec-WebSocket-Extensions values, joined
	)
	for !headComplete {
		i := bytes.IndexByte(buf[pos:limit], '\n')
		if i < 0 {
			if max > 0 && len(buf) >= max {
				return 0, ErrHeadTooLarge
			}
			return 0, nil
		}
		line := buf[pos : pos+i]
		pos += i + 1
		if k := len(line); k > 0 && line[k-1] == '\r' {
			line = line[:k-1]
		}

		switch {
		case first:
			first = false
			var ok bool
			method, raw[fTarget], r.ProtoMinor, ok = parseRequestLine(line)
			if !ok {
				return 0, ErrBadRequest
			}

		case len(line) == 0:
			headComplete = true

		default:
			name, value, ok := parseHeaderLine(line)
			if !ok {
				return 0, ErrBadRequest
			}
			switch len(name) {
			case 4:
				if eqFold(name, "host") {
					if hostSeen {
						return 0, ErrBadRequest // RFC 9112 section 3.2
					}
					hostSeen = true
				}
			case 6:
				if eqFold(name, "origin") {
					setFirst(&raw[fOrigin], value)
				}
			case 7:
				if eqFold(name, "upgrade") {
					if raw[fUpgrade] == nil {
						raw[fUpgrade] = value
					} else if !eqFold(value, "websocket") {
						hs |= hsUpgradeRepeat
					}
				}
			case 10:
				if eqFold(name, "connection") {
					c, k, u := connectionTokens(value)
					connClose = connClose || c
					connKeep = connKeep || k
					hs |= hsConnSeen
					if !u {
						hs |= hsConnNoUpgrade
					}
				}
			case 14:
				if eqFold(name, "content-length") {
					v, ok := parseContentLength(value)
					if !ok || (r.ContentLength >= 0 && r.ContentLength != v) {
						return 0, ErrBadRequest
					}
					r.ContentLength = v
				}
			case 17:
				switch {
				case eqFold(name, "sec-websocket-key"):
					if raw[fKey] == nil {
						raw[fKey] = value
					} else if !bytes.Equal(value, raw[fKey]) {
						hs |= hsKeyRepeat
					}
				case eqFold(name, "transfer-encoding"):
					teSeen = true
					teLastChunk = lastTokenIsChunked(value)
				}
			case 24:
				if eqFold(name, "sec-websocket-extensions") {
					switch {
					case raw[fExt] == nil:
						raw[fExt] = value
					case len(value) > 0:
						if extJoined == nil {
							extJoined = append([]byte(nil), raw[fExt]...)
						}
						if len(extJoined) > 0 {
							extJoined = append(extJoined, ", "...)
						}
						extJoined = append(extJoined, value...)
					}
				}
			case 21:
				if eqFold(name, "sec-websocket-version") {
					if raw[fVersion] == nil {
						raw[fVersion] = value
						hs |= hsVersionSeen
					} else if !bytes.Equal(value, raw[fVersion]) {
						hs |= hsVersionRepeat
					}
				}
			}
		}
	}

	if extJoined != nil {
		raw[fExt] = extJoined
	}
	if teSeen {
		if !teLastChunk {
			return 0, ErrBadRequest
		}
		r.Chunked = true
	}
	if r.ProtoMinor == 1 && !hostSeen {
		return 0, ErrBadRequest
	}
	target := raw[fTarget]
	pathEnd := bytes.IndexByte(target, '?')
	if pathEnd < 0 {
		pathEnd = len(target)
	}
	pathLen, ok := decodedLen(target[:pathEnd])
	if !ok {
		return 0, ErrBadRequest
	}
	escaped := pathLen != pathEnd

	// Build every retained string with a single allocation.
	var interned [fCount]string
	total := 0
	for f := range raw {
		if f != fTarget {
			if s, ok := internValue(raw[f]); ok {
				interned[f] = s
				continue
			}
		}
		total += len(raw[f])
	}
	if escaped {
		total += pathLen
	}
	var sb strings.Builder
	sb.Grow(total)
	var spans [fCount][2]int
	for f := range raw {
		if interned[f] != "" {
			continue
		}
		spans[f][0] = sb.Len()
		sb.Write(raw[f])
		spans[f][1] = sb.Len()
	}
	pathStart := sb.Len()
	if escaped {
		appendUnescaped(&sb, target[:pathEnd])
	}
	s := sb.String()
	field := func(f int) string {
		if interned[f] != "" {
			return interned[f]
		}
		return s[spans[f][0]:spans[f][1]]
	}

	r.Method = internMethod(method)
	t := field(fTarget)
	r.RawPath = t[:pathEnd]
	if escaped {
		r.Path = s[pathStart:]
	} else {
		r.Path = r.RawPath
	}
	if pathEnd < len(t) {
		r.RawQuery = t[pathEnd+1:]
	}
	r.Origin = field(fOrigin)
	r.Upgrade = field(fUpgrade)
	r.SecWebSocketKey = field(fKey)
	r.SecWebSocketVersion = field(fVersion)
	r.SecWebSocketExtensions = field(fExt)
	if r.ProtoMinor == 1 {
		r.KeepAlive = !connClose
	} else {
		r.KeepAlive = connKeep && !connClose
	}
	r.hs = hs
	return pos, nil
}

// setFirst stores v in *dst unless a value was already stored.
func setFirst(dst *[]byte, v []byte) {
	if *dst == nil {
		*dst = v
	}
}

// parseRequestLine splits "METHOD SP target SP HTTP/1.x".
func parseRequestLine(line []byte) (method, target []byte, minor int, ok bool) {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return nil, nil, 0, false
	}
	method, rest := line[:sp], line[sp+1:]
	for _, c := range method {
		if !isTokenChar(c) {
			return nil, nil, 0, false
		}
	}
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return nil, nil, 0, false
	}
	target, version := rest[:sp], rest[sp+1:]
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return nil, nil, 0, false
		}
	}
	switch string(version) {
	case "HTTP/1.1":
		minor = 1
	case "HTTP/1.0":
		minor = 0
	default:
		return nil, nil, 0, false
	}
	return method, target, minor, true
}

// parseHeaderLine splits "name: value", trimming optional whitespace around
// the value.
func parseHeaderLine(line []byte) (name, value []byte, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 { // also rejects obs-fold (leading SP/HT has no name)
		return nil, nil, false
	}
	name = line[:colon]
	for _, c := range name {
		if !isTokenChar(c) {
			return nil, nil, false
		}
	}
	value = line[colon+1:]
	for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
		value = value[1:]
	}
	for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
		value = value[:len(value)-1]
	}
	if !validFieldValue(value) {
		return nil, nil, false
	}
	return name, value, true
}

// validFieldValue reports whether v has no control characters other than
// HT (RFC 9110 section 5.5). It checks eight bytes at a time.
func validFieldValue(v []byte) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for len(v) >= 8 {
		x := binary.LittleEndian.Uint64(v)
		y := x ^ (0x7f * ones)
		// A high bit is set for a byte < 0x20 or == 0x7f (exact when x has
		// no byte >= 0x80; otherwise a false positive the slow path sorts).
		if ((x-0x20*ones)&^x|(y-ones)&^y)&highs != 0 {
			if !validFieldBytes(v[:8]) {
				return false
			}
		}
		v = v[8:]
	}
	return validFieldBytes(v)
}

func validFieldBytes(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// tokenChars marks the tchar set of RFC 9110 section 5.6.2.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isTokenChar(c byte) bool { return tokenChars[c] }

// eqFold reports whether b equals the lower-case ASCII string s, ignoring
// ASCII case.
func eqFold[B []byte | string](b B, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// trimOWS trims spaces and tabs on both ends of b.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// connectionTokens reports whether the comma-separated Connection value
// holds the "close" and "keep-alive" tokens, and whether it holds the
// "upgrade" token, which (as gobwas/ws's handshake did) may also be separated
// from other words by spaces.
func connectionTokens(v []byte) (closeTok, keepAlive, upgrade bool) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = trimOWS(tok)
		switch {
		case eqFold(tok, "close"):
			closeTok = true
		case eqFold(tok, "keep-alive"):
			keepAlive = true
		case eqFold(tok, "upgrade"):
			upgrade = true
		case !upgrade && bytes.ContainsAny(tok, " \t"):
			upgrade = hasWord(tok, "upgrade")
		}
	}
	return closeTok, keepAlive, upgrade
}

// hasWord reports whether one of the words of v, separated by spaces and
// tabs, is the lower-case ASCII string w, ignoring ASCII case.
func hasWord(v []byte, w string) bool {
	for _, f := range bytes.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' }) {
		if eqFold(f, w) {
			return true
		}
	}
	return false
}

// lastTokenIsChunked reports whether the last coding of a Transfer-Encoding
// value is "chunked".
func lastTokenIsChunked(v []byte) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return eqFold(trimOWS(v), "chunked")
}

// parseContentLength parses a non-empty run of decimal digits into a
// non-negative int64.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	const maxInt64 = 1<<63 - 1
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (maxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decodedLen validates the percent escapes of p and returns its decoded
// length.
func decodedLen(p []byte) (int, bool) {
	n := len(p)
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		if i+2 >= len(p) {
			return 0, false
		}
		if _, ok := unhex(p[i+1]); !ok {
			return 0, false
		}
		if _, ok := unhex(p[i+2]); !ok {
			return 0, false
		}
		n -= 2
		i += 2
	}
	return n, true
}

// appendUnescaped writes the percent-decoded p (already validated by
// decodedLen) to sb.
func appendUnescaped(sb *strings.Builder, p []byte) {
	for i := 0; i < len(p); i++ {
		if p[i] == '%' {
			hi, _ := unhex(p[i+1])
			lo, _ := unhex(p[i+2])
			sb.WriteByte(hi<<4 | lo)
			i += 2
			continue
		}
		sb.WriteByte(p[i])
	}
}

// internMethod returns a constant for common methods and a copy otherwise.
func internMethod(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "HEAD":
		return "HEAD"
	case "OPTIONS":
		return "OPTIONS"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "PATCH":
		return "PATCH"
	}
	return string(m)
}

// internValue returns a constant string for frequent header values so they
// need no copy. It reports false for values it does not know, including
// absent (nil) and empty ones.
func internValue(v []byte) (string, bool) {
	switch string(v) {
	case "websocket":
		return "websocket", true
	case "13":
		return "13", true
	}
	return "", false
}
