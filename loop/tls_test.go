package loop

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/reverbgo/reverb/pusher"
)

// selfSigned makes a certificate for 127.0.0.1 and returns the server config
// and a pool that trusts it.
func selfSigned(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "reverb test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

func TestTLSServesWebSocketsAndTheAPIOnOnePort(t *testing.T) {
	cfg, pool := selfSigned(t)
	_, addr := startServer(t, pusher.Options{}, Config{TLS: cfg})
	dialTLS := func() *tls.Conn {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// wss://
	c := dialTLS()
	fmt.Fprintf(c, upgradeReq, "/app/"+testKey, addr, "")
	ws := &wsClient{t: t, conn: c, r: bufio.NewReader(c)}
	ws.expect101()
	ws.established()
	ws.subscribe("secure")

	// HTTPS API on the same port, keep-alive.
	api := dialTLS()
	r := bufio.NewReader(api)
	fmt.Fprint(api, signedRequest("POST", "/apps/"+testAppID+"/events", `{"name":"e","channel":"secure","data":"over tls"}`))
	if code, body := readResponse(t, r); code != 200 || body != "{}" {
		t.Fatalf("trigger: %d %s", code, body)
	}
	if e := ws.expectEvent("e"); e.DataString() != "over tls" {
		t.Fatalf("event %+v", e)
	}
	fmt.Fprint(api, "GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
	if code, body := readResponse(t, r); code != 200 || !strings.Contains(body, "OK") {
		t.Fatalf("up: %d %s", code, body)
	}
}

func TestTLSHandshakeTimeout(t *testing.T) {
	cfg, _ := selfSigned(t)
	_, addr := startServer(t, pusher.Options{}, Config{TLS: cfg, HandshakeTimeout: 200 * time.Millisecond})
	c := dial(t, addr) // plain TCP, never starts the handshake
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err == nil {
		t.Fatal("expected the server to close the silent connection")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server did not close a connection that never sent a TLS handshake")
	}
}
