package looptls

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// TLS 1.3 record layer constants (RFC 8446 §5).
const (
	recTypeCCS       = 20
	recTypeAlert     = 21
	recTypeHandshake = 22
	recTypeAppData   = 23

	maxPlaintext13  = 1 << 14            // TLSPlaintext.length limit
	maxCiphertext13 = 1<<14 + 256        // TLSCiphertext.length limit
	maxInner13      = maxPlaintext13 + 1 // content || type, padding excluded
	aeadOverhead    = 16                 // GCM and Poly1305 tags
	ivLen           = 12

	hsTypeKeyUpdate = 24

	// maxUseless caps consecutive records without application data
	// (crypto/tls's maxUselessRecords).
	maxUseless = 16
)

// Alert descriptions sent or interpreted here (RFC 8446 §6).
const (
	alertCloseNotify       = 0
	alertUnexpectedMessage = 10
	alertBadRecordMAC      = 20
	alertRecordOverflow    = 22
	alertDecodeError       = 50
	alertProtocolVersion   = 70
	alertIllegalParameter  = 47
)

// recordError is a fatal record-layer error: the alert sent to the client
// and why.
type recordError struct {
	alert uint8
	msg   string
}

func (e *recordError) Error() string {
	return "looptls: " + e.msg + " (" + tls.AlertError(e.alert).Error() + ")"
}

var (
	errBadRecordMAC   = &recordError{alertBadRecordMAC, "record authentication failed"}
	errRecordOverflow = &recordError{alertRecordOverflow, "record too large"}
	errBadRecordType  = &recordError{alertUnexpectedMessage, "unexpected record type after the handshake"}
	errBadVersion     = &recordError{alertProtocolVersion, "bad record version"}
	errEmptyInner     = &recordError{alertUnexpectedMessage, "record without content type"}
	errBadAlert       = &recordError{alertDecodeError, "malformed alert"}
	errBadHandshake   = &recordError{alertUnexpectedMessage, "unexpected handshake message after the handshake"}
	errBadKeyUpdate   = &recordError{alertIllegalParameter, "malformed KeyUpdate"}
	errNoProgress     = &recordError{alertUnexpectedMessage, "too many records without application data"}
	errSeqOverflow    = errors.New("looptls: record sequence number exhausted")
)

// suite13 describes a TLS 1.3 cipher suite.
type suite13 struct {
	keyLen  int
	hashLen int
	hash    func() hash.Hash
	aead    func(key []byte) (cipher.AEAD, error)
}

func newAESGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// suites13 are the cipher suites the lean record layer implements: all of
// TLS 1.3's that crypto/tls negotiates.
var suites13 = map[uint16]*suite13{
	tls.TLS_AES_128_GCM_SHA256:       {16, sha256.Size, sha256.New, newAESGCM},
	tls.TLS_AES_256_GCM_SHA384:       {32, sha512.Size384, sha512.New384, newAESGCM},
	tls.TLS_CHACHA20_POLY1305_SHA256: {32, sha256.Size, sha256.New, chacha20poly1305.New},
}

// expandLabel is HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
func expandLabel(h func() hash.Hash, secret []byte, label string, n int) []byte {
	info := make([]byte, 0, 2+1+6+len(label)+1)
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	out, err := hkdf.Expand(h, secret, string(info), n)
	if err != nil {
		panic("looptls: HKDF-Expand-Label: " + err.Error()) // n is always small
	}
	return out
}

// direction is one half of the record layer: the client's (read) or the
// server's (write) traffic protection.
type direction struct {
	aead   cipher.AEAD // nil after shrink, rebuilt from key on next use
	key    [32]byte    // the AEAD key, first suite keyLen bytes
	iv     [ivLen]byte
	nonce  [ivLen]byte // scratch: kept here so it does not escape per record
	seq    uint64
	secret [48]byte // current traffic secret, first hash-size bytes
}

// setSecret derives the key and IV from secret (RFC 8446 §7.3) and resets
// the sequence number.
func (d *direction) setSecret(s *suite13, secret []byte) error {
	key := expandLabel(s.hash, secret, "key", s.keyLen)
	aead, err := s.aead(key)
	if err != nil {
		return err
	}
	d.aead = aead
	copy(d.key[:], key)
	copy(d.iv[:], expandLabel(s.hash, secret, "iv", ivLen))
	copy(d.secret[:], secret)
	d.seq = 0
	return nil
}

// cipher returns the AEAD, rebuilding it after a shrink.
func (d *direction) cipher(s *suite13) (cipher.AEAD, error) {
	if d.aead == nil {
		aead, err := s.aead(d.key[:s.keyLen])
		if err != nil {
			return nil, err
		}
		d.aead = aead
	}
	return d.aead, nil
}

// shrink drops the AEADs' expanded state (about 1.5 KB for AES-GCM); the
// next record rebuilds it from the keys (well under a microsecond with AES
// instructions).
func (r *rec13) shrink() {
	r.in.aead, r.out.aead = nil, nil
}

// update moves to the next traffic secret (RFC 8446 §7.2).
func (d *direction) update(s *suite13) error {
	next := expandLabel(s.hash, d.secret[:s.hashLen], "traffic upd", s.hashLen)
	return d.setSecret(s, next)
}

// makeNonce XORs the sequence number into the IV (RFC 8446 §5.3) and
// advances it.
func (d *direction) makeNonce() ([]byte, error) {
	if d.seq == ^uint64(0) {
		return nil, errSeqOverflow
	}
	d.nonce = d.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], d.seq)
	for i := range s {
		d.nonce[4+i] ^= s[i]
	}
	d.seq++
	return d.nonce[:], nil
}

// rec13 is the post-handshake TLS 1.3 record layer of a server Conn: two
// AEADs, their IVs, sequence numbers and traffic secrets. At rest it holds
// no buffer: part is set only while an incomplete record waits for more
// bytes. Loop-only.
type rec13 struct {
	suite   *suite13
	in, out direction
	useless int          // consecutive records without application data
	part    *[]byte      // pooled: the start of an incomplete record
	rerr    error        // sticky read error (io.EOF after close_notify)
	werr    error        // sticky write error
	send    func([]byte) // the Conn's out
}

// writePool holds the buffers records are sealed into; one is taken per
// Write and returned before Write returns.
var writePool = sync.Pool{New: func() any {
	b := make([]byte, 0, recordHeaderLen+maxInner13+aeadOverhead)
	return &b
}}

// newRec13 builds the record layer from the traffic secrets.
func newRec13(suiteID uint16, clientSecret, serverSecret []byte, send func([]byte)) (*rec13, error) {
	s := suites13[suiteID]
	if s == nil {
		return nil, fmt.Errorf("looptls: cipher suite %#04x not supported", suiteID)
	}
	if len(clientSecret) != s.hashLen || len(serverSecret) != s.hashLen {
		return nil, errors.New("looptls: traffic secret of the wrong size")
	}
	r := &rec13{suite: s, send: send}
	if err := r.in.setSecret(s, clientSecret); err != nil {
		return nil, err
	}
	if err := r.out.setSecret(s, serverSecret); err != nil {
		return nil, err
	}
	return r, nil
}

// opens reports whether record (header included) decrypts with d's key at
// sequence number seq. It does not change d.
func (d *direction) opens(record []byte, seq uint64) bool {
	if len(record) < recordHeaderLen+aeadOverhead {
		return false
	}
	save := d.seq
	d.seq = seq
	nonce, _ := d.makeNonce()
	d.seq = save
	_, err := d.aead.Open(nil, nonce, record[recordHeaderLen:], record[:recordHeaderLen]) // aead is set: called right after setSecret
	return err == nil
}

// feed appends a copy of b to the incomplete-record buffer.
func (r *rec13) feed(b []byte) {
	if len(b) == 0 || r.rerr != nil {
		return
	}
	if r.part == nil {
		r.part = inPool.Get().(*[]byte)
	}
	*r.part = append(*r.part, b...)
}

// read decrypts the complete records buffered by feed into dst.
func (r *rec13) read(dst []byte) ([]byte, error) {
	if r.rerr != nil {
		return dst, r.rerr
	}
	if r.part == nil {
		return dst, nil
	}
	dst, n, err := r.records(dst, *r.part)
	r.keep(n, err)
	return dst, err
}

// decrypt is feed then read, without copying b when nothing is buffered.
func (r *rec13) decrypt(dst, b []byte) ([]byte, error) {
	if r.rerr != nil {
		return dst, r.rerr
	}
	if r.part != nil {
		// Complete the buffered record with as few bytes of b as needed,
		// then decrypt the rest of b where it is.
		buf := *r.part
		for need := recordNeed(buf); len(buf) < need && len(b) > 0; need = recordNeed(buf) {
			k := min(need-len(buf), len(b))
			buf = append(buf, b[:k]...)
			b = b[k:]
		}
		*r.part = buf
		var n int
		var err error
		dst, n, err = r.records(dst, buf)
		r.keep(n, err)
		if err != nil || r.part != nil {
			return dst, err // failed, or still incomplete (b is empty)
		}
	}
	dst, n, err := r.records(dst, b)
	if err == nil {
		r.feed(b[n:])
	}
	return dst, err
}

// recordNeed returns the length of the record b starts with, header
// included, or len(b) once the header is known to be invalid (records
// then reports it).
func recordNeed(b []byte) int {
	if len(b) < recordHeaderLen {
		return recordHeaderLen
	}
	n := int(binary.BigEndian.Uint16(b[3:]))
	if n > maxCiphertext13 {
		return len(b)
	}
	return recordHeaderLen + n
}

// keep drops the first n bytes of the incomplete-record buffer; once it is
// empty, or after an error, the buffer goes back to the pool.
func (r *rec13) keep(n int, err error) {
	if r.part == nil {
		return
	}
	if err == nil && n < len(*r.part) {
		if n > 0 {
			*r.part = (*r.part)[:copy(*r.part, (*r.part)[n:])]
		}
		return
	}
	if cap(*r.part) <= maxPooledBuf {
		*r.part = (*r.part)[:0]
		inPool.Put(r.part)
	}
	r.part = nil
}

// records decrypts the complete records at the start of b into dst and
// returns how many bytes of b they took. b is not modified.
func (r *rec13) records(dst, b []byte) ([]byte, int, error) {
	n := 0
	for len(b)-n >= recordHeaderLen {
		hdr := b[n : n+recordHeaderLen]
		length := int(binary.BigEndian.Uint16(hdr[3:]))
		if hdr[0] != recTypeAppData {
			return dst, n, r.fail(errBadRecordType)
		}
		if hdr[1] != 3 || hdr[2] != 3 {
			return dst, n, r.fail(errBadVersion)
		}
		if length > maxCiphertext13 {
			return dst, n, r.fail(errRecordOverflow)
		}
		if len(b)-n < recordHeaderLen+length {
			break
		}
		var err error
		dst, err = r.open(dst, hdr, b[n+recordHeaderLen:n+recordHeaderLen+length])
		n += recordHeaderLen + length
		if err != nil {
			return dst, n, err
		}
	}
	return dst, n, nil
}

// open decrypts one record and handles its content: application data is
// appended to dst; alerts and KeyUpdates are acted on.
func (r *rec13) open(dst, hdr, body []byte) ([]byte, error) {
	if len(body) < aeadOverhead {
		return dst, r.fail(errBadRecordMAC)
	}
	nonce, err := r.in.makeNonce()
	if err != nil {
		return dst, r.fail(err)
	}
	start := len(dst)
	aead, err := r.in.cipher(r.suite)
	if err != nil {
		return dst, r.fail(err)
	}
	out, err := aead.Open(slices.Grow(dst, len(body)), nonce, body, hdr)
	if err != nil {
		return dst, r.fail(errBadRecordMAC) // out may be nil
	}
	dst = out
	inner := dst[start:]
	if len(inner) > maxInner13 { // padding included (RFC 8446 §5.4)
		return dst[:start], r.fail(errRecordOverflow)
	}
	i := len(inner) - 1
	for i >= 0 && inner[i] == 0 {
		i--
	}
	if i < 0 {
		return dst[:start], r.fail(errEmptyInner)
	}
	typ, content := inner[i], inner[:i]
	if len(content) > maxPlaintext13 {
		return dst[:start], r.fail(errRecordOverflow)
	}
	switch typ {
	case recTypeAppData:
		if i > 0 {
			r.useless = 0
		} else if err := r.noProgress(); err != nil {
			return dst[:start], err
		}
		return dst[:start+i], nil
	case recTypeAlert:
		err = r.alert(content)
	case recTypeHandshake:
		if err = r.noProgress(); err == nil {
			err = r.handshake(content)
		}
	default:
		err = r.fail(errBadRecordType)
	}
	return dst[:start], err
}

// noProgress counts a record that carries no application data (empty, or
// a KeyUpdate): like crypto/tls, more than maxUseless in a row is an error.
func (r *rec13) noProgress() error {
	if r.useless++; r.useless > maxUseless {
		return r.fail(errNoProgress)
	}
	return nil
}

// alert handles a received alert (RFC 8446 §6): close_notify ends reading
// with io.EOF, anything else is fatal.
func (r *rec13) alert(content []byte) error {
	if len(content) != 2 {
		return r.fail(errBadAlert)
	}
	if content[1] == alertCloseNotify {
		r.rerr = io.EOF
		return io.EOF
	}
	r.rerr = fmt.Errorf("looptls: remote error: %w", tls.AlertError(content[1]))
	r.werr = r.rerr
	return r.rerr
}

// handshake handles post-handshake messages from the client: only
// KeyUpdate is allowed (no client authentication after the handshake, and
// NewSessionTicket comes from servers). A KeyUpdate changes the key, so it
// must end its record (RFC 8446 §5.1); a message split across records is
// refused.
func (r *rec13) handshake(content []byte) error {
	if len(content) != 5 || content[0] != hsTypeKeyUpdate {
		return r.fail(errBadHandshake)
	}
	if content[1] != 0 || content[2] != 0 || content[3] != 1 || content[4] > 1 {
		return r.fail(errBadKeyUpdate)
	}
	if err := r.in.update(r.suite); err != nil {
		return r.fail(err)
	}
	if content[4] == 1 && r.werr == nil {
		// update_requested: answer under the current key, then switch.
		if err := r.seal(recTypeHandshake, []byte{hsTypeKeyUpdate, 0, 0, 1, 0}); err != nil {
			return err
		}
		if err := r.out.update(r.suite); err != nil {
			r.werr = err
			return r.fail(err)
		}
	}
	return nil
}

// fail makes err the sticky read and write error and sends the matching
// fatal alert, if err is a recordError and the write side is open.
func (r *rec13) fail(err error) error {
	if r.rerr == nil || r.rerr == io.EOF {
		r.rerr = err
	}
	if re, ok := err.(*recordError); ok && r.werr == nil {
		_ = r.seal(recTypeAlert, []byte{2, re.alert})
	}
	if r.werr == nil {
		r.werr = err
	}
	return err
}

// write seals p into records of at most 16 KiB of plaintext and passes
// each to send. An empty p sends nothing.
func (r *rec13) write(p []byte) error {
	if r.werr != nil {
		return r.werr
	}
	for len(p) > 0 {
		n := min(len(p), maxPlaintext13)
		if err := r.seal(recTypeAppData, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// closeNotify sends close_notify; later writes fail.
func (r *rec13) closeNotify() error {
	if r.werr != nil {
		return r.werr
	}
	err := r.seal(recTypeAlert, []byte{1, alertCloseNotify})
	if err == nil {
		r.werr = errShutdown
	}
	return err
}

// errShutdown is what Write returns after CloseNotify.
var errShutdown = errors.New("looptls: write after close_notify")

// seal encrypts one record of content type typ into a pooled buffer and
// sends it.
func (r *rec13) seal(typ byte, p []byte) error {
	nonce, err := r.out.makeNonce()
	if err != nil {
		r.werr = err
		return err
	}
	bp := writePool.Get().(*[]byte)
	b := (*bp)[:recordHeaderLen]
	b[0], b[1], b[2] = recTypeAppData, 3, 3
	binary.BigEndian.PutUint16(b[3:], uint16(len(p)+1+aeadOverhead))
	b = append(b, p...)
	b = append(b, typ)
	aead, err := r.out.cipher(r.suite)
	if err != nil {
		*bp = b[:0]
		writePool.Put(bp)
		r.werr = err
		return err
	}
	b = aead.Seal(b[:recordHeaderLen], nonce, b[recordHeaderLen:], b[:recordHeaderLen])
	r.send(b)
	*bp = b[:0]
	writePool.Put(bp)
	return nil
}
