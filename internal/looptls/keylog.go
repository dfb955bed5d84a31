package looptls

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"io"
)

// Key log labels of the TLS 1.3 application traffic secrets (NSS key log
// format, as crypto/tls writes it).
const (
	labelClientTraffic = "CLIENT_TRAFFIC_SECRET_0"
	labelServerTraffic = "SERVER_TRAFFIC_SECRET_0"
)

// keyLog is the KeyLogWriter of one handshake: it keeps the application
// traffic secrets in the handshake's pipeHS, and passes every line on to the
// user's KeyLogWriter, if any. crypto/tls calls it on the handshake's
// worker, under its own global key log lock.
type keyLog struct {
	hs   *pipeHS
	user io.Writer
}

func (k *keyLog) Write(line []byte) (int, error) {
	if k.user != nil {
		if _, err := k.user.Write(line); err != nil {
			return 0, err
		}
	}
	// "LABEL <client random hex> <secret hex>\n"
	f := bytes.Fields(line)
	if len(f) != 3 {
		return len(line), nil
	}
	var dst *[]byte
	switch string(f[0]) {
	case labelClientTraffic:
		dst = &k.hs.clientSecret
	case labelServerTraffic:
		dst = &k.hs.serverSecret
	default:
		return len(line), nil
	}
	secret := make([]byte, hex.DecodedLen(len(f[2])))
	if _, err := hex.Decode(secret, f[2]); err == nil {
		*dst = secret
	}
	return len(line), nil
}

// leanConfig returns the tls.Config a Server hands crypto/tls: a clone of
// cfg whose GetConfigForClient gives each handshake a clone of cfg (or of
// what cfg's own GetConfigForClient returns) with a keyLog bound to that
// handshake's pipe, for clients that offer TLS 1.3. Session ticket keys stay those of the returned config
// (crypto/tls takes automatic ticket keys from the config passed to
// tls.Server, explicit ones from the per-handshake config, which copies
// cfg's).
func leanConfig(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	outer := cfg.Clone()
	user := cfg.GetConfigForClient
	outer.GetConfigForClient = func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		base := cfg
		if user != nil {
			c, err := user(chi)
			if err != nil {
				return nil, err
			}
			if c != nil {
				base = c
			}
		}
		p, ok := chi.Conn.(*pipe)
		if !ok || p.hs == nil || !offers13(chi) {
			if base == cfg {
				return nil, nil
			}
			return base, nil
		}
		inner := base.Clone()
		inner.KeyLogWriter = &keyLog{hs: p.hs, user: base.KeyLogWriter}
		return inner, nil
	}
	return outer
}

// offers13 reports whether the client offers TLS 1.3. Only then is the key
// log needed: the per-handshake config stays with a crypto/tls session for
// its lifetime, which TLS 1.2 clients need not pay for.
func offers13(chi *tls.ClientHelloInfo) bool {
	for _, v := range chi.SupportedVersions {
		if v == tls.VersionTLS13 {
			return true
		}
	}
	return false
}
