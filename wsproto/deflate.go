package wsproto

import (
	"bytes"
	"compress/flate"
	"io"
	"slices"
	"sync"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// permessage-deflate (RFC 7692), without context takeover in either
// direction: every message is compressed and decompressed on its own, so a
// connection keeps no compressor or decompressor state between messages.
// The flate writers and readers come from pools shared by all connections.

// DeflateThreshold is the smallest payload, in bytes, that the server
// compresses on a connection that negotiated permessage-deflate; smaller
// messages are sent uncompressed (RSV1 clear), which RFC 7692 allows. Below
// a few hundred bytes a Pusher event gains little and the deflate block
// overhead eats most of it.
const DeflateThreshold = 256

// DeflateLevel is the flate level of outbound messages. Broadcasts are
// compressed once for all their subscribers, but single-connection replies
// are compressed per connection, so the fastest level is used.
const DeflateLevel = flate.BestSpeed

// maxInflateUnlimited bounds a decompressed message when the Decoder has no
// MaxMessageSize: 16 MiB.
const maxInflateUnlimited = 16 << 20

// deflateAccept is the Sec-WebSocket-Extensions value of an accepted offer.
const deflateAccept = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// deflateTail is the end of a flate sync flush, left out of the message
// payload by the sender (RFC 7692 section 7.2.1).
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// NegotiateDeflate answers a Sec-WebSocket-Extensions request header value.
// It returns the response header value and true when one of the offers is a
// permessage-deflate offer the server accepts, "" and false otherwise (the
// handshake goes on without the extension).
//
// The offers are tried in the client's order of preference and the first
// acceptable permessage-deflate offer wins; other extensions are ignored.
// An offer is declined when its parameters are malformed per RFC 7692
// (unknown, repeated or invalid values, as gobwas/ws's wsflate parses them)
// or when it asks for server_max_window_bits below 15 (Go's flate always
// uses a 32 KiB window). client_max_window_bits, with or without a value, is
// accepted and left out of the answer: the server inflates any window. The
// answer always carries server_no_context_takeover and
// client_no_context_takeover, plus server_max_window_bits=15 when the offer
// had it. A header that does not parse as a list of extensions gives false.
//
// NegotiateDeflate is pure.
func NegotiateDeflate(header string) (string, bool) {
	var buf [4]httphead.Option
	opts, ok := httphead.ParseOptions([]byte(header), buf[:0])
	if !ok {
		return "", false
	}
	for _, opt := range opts {
		if !bytes.EqualFold(opt.Name, wsflate.ExtensionNameBytes) {
			continue
		}
		var p wsflate.Parameters
		if p.Parse(opt) != nil {
			continue
		}
		switch p.ServerMaxWindowBits {
		case 0:
			return deflateAccept, true
		case 15:
			return deflateAccept + "; server_max_window_bits=15", true
		}
	}
	return "", false
}

// deflater is a pooled flate writer with the buffer it writes into.
type deflater struct {
	fw  *flate.Writer
	out appendWriter
}

// appendWriter appends what is written to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

var deflaters = sync.Pool{New: func() any {
	d := &deflater{}
	d.fw, _ = flate.NewWriter(&d.out, DeflateLevel) // the level is valid
	return d
}}

// AppendDeflatedText appends to dst a single unmasked text frame carrying
// payload compressed with permessage-deflate (RSV1 set), and reports true.
// When compression does not make the payload smaller it appends the plain
// frame (AppendText) instead and reports false. The caller decides whether
// a payload is worth compressing (see DeflateThreshold).
//
// AppendDeflatedText is goroutine-safe: it takes a flate writer from a pool
// shared by all callers and puts it back.
func AppendDeflatedText(dst, payload []byte) ([]byte, bool) {
	start := len(dst)
	const maxHeader = 10
	d := deflaters.Get().(*deflater)
	d.out.b = append(slices.Grow(dst, maxHeader+len(payload)/2+16), make([]byte, maxHeader)...)
	d.fw.Reset(&d.out)
	_, _ = d.fw.Write(payload) // appendWriter never fails
	_ = d.fw.Flush()
	out := d.out.b
	d.out.b = nil
	deflaters.Put(d)

	z := out[start+maxHeader:]
	if !bytes.HasSuffix(z, deflateTail) || len(z)-len(deflateTail) >= len(payload) {
		return AppendText(out[:start], payload), false
	}
	n := len(z) - len(deflateTail)
	var hb [maxHeader]byte
	h := appendHeader(hb[:0], 0x80|0x40|byte(ws.OpText), 0, n)
	copy(out[start+len(h):], z[:n])
	copy(out[start:], h)
	return out[:start+len(h)+n], true
}

// inflater is a pooled flate reader with its source.
type inflater struct {
	fr  io.ReadCloser
	src tailReader
}

// tailReader reads b, then deflateTail. It is an io.ByteReader so that flate
// reads it without a bufio.Reader of its own.
type tailReader struct {
	b    []byte
	tail int // bytes of deflateTail read
}

func (r *tailReader) Read(p []byte) (int, error) {
	if len(r.b) > 0 {
		n := copy(p, r.b)
		r.b = r.b[n:]
		return n, nil
	}
	if r.tail == len(deflateTail) {
		return 0, io.EOF
	}
	n := copy(p, deflateTail[r.tail:])
	r.tail += n
	return n, nil
}

func (r *tailReader) ReadByte() (byte, error) {
	if len(r.b) > 0 {
		c := r.b[0]
		r.b = r.b[1:]
		return c, nil
	}
	if r.tail == len(deflateTail) {
		return 0, io.EOF
	}
	c := deflateTail[r.tail]
	r.tail++
	return c, nil
}

func (r *tailReader) done() bool { return len(r.b) == 0 && r.tail == len(deflateTail) }

var inflaters = sync.Pool{New: func() any {
	in := &inflater{}
	in.fr = flate.NewReader(&in.src)
	return in
}}

// errCorrupt is the failure of a compressed message that does not inflate.
var errCorrupt = &CloseError{Code: ws.StatusInvalidFramePayloadData, Reason: "Invalid compressed data"}

// Inflate decompresses the payload of a compressed message (RSV1 set; for a
// fragmented message, its fragments' payloads joined) as inflate does for
// the Decoder: at most maxSize bytes (16 MiB when 0), a *CloseError with
// 1009 past that and 1007 for corrupt data. It is meant for clients (the
// benchmark) and tests. Goroutine-safe.
func Inflate(payload []byte, maxSize int64) ([]byte, error) { return inflate(payload, maxSize) }

// inflate decompresses the payload of a compressed message into a new slice
// of at most maxSize bytes. A message that inflates past it is refused
// with 1009 before more than maxSize+1 bytes are produced (a decompression bomb
// costs the reader no more than that); corrupt data gives 1007.
// Goroutine-safe.
func inflate(in []byte, maxSize int64) ([]byte, error) {
	if maxSize <= 0 {
		maxSize = maxInflateUnlimited
	}
	f := inflaters.Get().(*inflater)
	defer func() {
		f.src = tailReader{}
		inflaters.Put(f)
	}()
	f.src = tailReader{b: in}
	if err := f.fr.(flate.Resetter).Reset(&f.src, nil); err != nil {
		return nil, errCorrupt
	}
	limit := maxSize + 1 // one byte more than allowed shows the message is too big
	out := make([]byte, 0, min(limit, int64(max(4*len(in), 512))))
	for {
		if len(out) == cap(out) {
			out = slices.Grow(out, int(min(int64(cap(out)), limit-int64(cap(out)))))
		}
		n, err := f.fr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if int64(len(out)) > maxSize {
			return nil, &CloseError{Code: ws.StatusMessageTooBig, Reason: ReasonMessageTooBig}
		}
		switch {
		case err == nil:
		case err == io.EOF, err == io.ErrUnexpectedEOF && f.src.done():
			return out, nil
		default:
			return nil, errCorrupt
		}
	}
}
