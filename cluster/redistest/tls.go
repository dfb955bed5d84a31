package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TLSServer is a standalone redis-server that accepts TLS connections
// only. Its Server's Addr and Port are the TLS port; Do, Command, Stop,
// Restart, Pause and Resume work as for Start's servers.
//
// The fields are set when the TLSServer is returned and never change.
type TLSServer struct {
	*Server
	// CAFile is the path of the PEM certificate of the throwaway CA that
	// signed the server's certificate, for a client's trusted roots.
	CAFile string
}

// StartTLS starts a standalone redis-server that listens for TLS only, on
// a free port of 127.0.0.1, and waits until it answers PING over TLS.
// It first makes a throwaway CA and a server certificate it signs, valid
// for 127.0.0.1 and localhost (ECDSA P-256, one day), in a directory of
// t.TempDir(): ca.pem, server.pem and server-key.pem. The config is
// Start's without extra lines, except
//
//	port 0
//	tls-port <free port>
//	tls-cert-file server.pem
//	tls-key-file server-key.pem
//	tls-ca-cert-file ca.pem
//	tls-auth-clients no
//
// so clients need no certificate of their own. StartTLS retries on
// another port when the chosen one turns out to be taken, and fails the
// test when redis-server is missing or was built without TLS. The server
// is stopped in t.Cleanup.
func StartTLS(t testing.TB) *TLSServer {
	t.Helper()
	certs := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(certs, "ca.pem"), filepath.Join(certs, "server.pem"), filepath.Join(certs, "server-key.pem")
	pool, err := writeCerts(caFile, certFile, keyFile)
	if err != nil {
		t.Fatalf("redistest: certificates: %v", err)
	}
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	s := startOver(t, conf, "redis-server", "redis.conf", 1, func(dir string, ports []int) []string {
		return append(baseConf(dir, 0),
			"repl-diskless-sync-delay 0",
			"tls-port "+strconv.Itoa(ports[0]),
			"tls-cert-file "+quote(certFile),
			"tls-key-file "+quote(keyFile),
			"tls-ca-cert-file "+quote(caFile),
			"tls-auth-clients no",
		)
	})
	return &TLSServer{Server: s, CAFile: caFile}
}

// writeCerts makes a CA and a server certificate for 127.0.0.1 and
// localhost signed by it, writes them as PEM and returns a pool holding
// the CA.
func writeCerts(caFile, certFile, keyFile string) (*x509.CertPool, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}

	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{caFile, "CERTIFICATE", caDER, 0o644},
		{certFile, "CERTIFICATE", der, 0o644},
		{keyFile, "PRIVATE KEY", keyDER, 0o600},
	} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}
