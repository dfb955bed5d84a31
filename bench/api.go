package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/reverbgo/reverb/pusher"
)

// apiClient is a keep-alive HTTP/1.1 client for the Pusher HTTP API on one
// TCP connection. It is not goroutine-safe.
type apiClient struct {
	cfg  *Config
	d    *dialer
	idx  int
	conn net.Conn
	br   *bufio.Reader
	req  []byte
	// retryAfter is the Retry-After of the last answer; -1 if it had none
	// (or not a number of seconds).
	retryAfter time.Duration
}

// newAPIClient returns a client of the HTTP API at cfg.APIAddr().
func newAPIClient(cfg *Config, idx int) *apiClient {
	d := newDialer(cfg)
	d.addr = cfg.APIAddr()
	d.hostHdr = d.addr
	d.tls, d.tlsErr = nil, nil
	if cfg.apiTLS() {
		d.tls, d.tlsErr = cfg.tlsClientConfig(cfg.APIHost, sessionCache())
	}
	return &apiClient{cfg: cfg, d: d, idx: idx}
}

// post sends a signed POST to /apps/{id}/{route} with body and returns the
// status code. It reconnects once if the kept-alive connection was closed.
func (a *apiClient) post(ctx context.Context, route string, body []byte) (int, error) {
	for attempt := 0; ; attempt++ {
		status, err := a.try(ctx, route, body)
		// Retry once on a kept-alive connection the server closed; never
		// after a timeout, when the server may have the request.
		if err == nil || attempt == 1 || ctx.Err() != nil || os.IsTimeout(err) {
			if err != nil {
				a.close()
			}
			return status, err
		}
		a.close()
	}
}

func (a *apiClient) try(ctx context.Context, route string, body []byte) (int, error) {
	if a.conn == nil {
		c, err := a.d.dial(ctx, a.idx)
		if err != nil {
			return 0, err
		}
		a.conn = c
		a.br = bufio.NewReaderSize(c, 4096)
	}
	path := "/apps/" + a.cfg.AppID + "/" + route
	q := pusher.SignQuery(a.cfg.Key, a.cfg.Secret, "POST", path, nil, body, time.Now()).Encode()
	r := a.req[:0]
	r = append(r, "POST "...)
	r = append(r, a.cfg.Path...)
	r = append(r, path...)
	r = append(r, '?')
	r = append(r, q...)
	r = append(r, " HTTP/1.1\r\nHost: "...)
	r = append(r, a.d.hostHdr...)
	r = append(r, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	r = strconv.AppendInt(r, int64(len(body)), 10)
	r = append(r, "\r\n\r\n"...)
	r = append(r, body...)
	a.req = r
	_ = a.conn.SetDeadline(time.Now().Add(a.cfg.apiTimeout()))
	if _, err := a.conn.Write(r); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(a.br, nil)
	if err != nil {
		return 0, err
	}
	a.retryAfter = -1
	if v := resp.Header.Get("Retry-After"); v != "" {
		if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
			a.retryAfter = time.Duration(secs) * time.Second
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		a.close()
	}
	return resp.StatusCode, nil
}

func (a *apiClient) close() {
	if a.conn != nil {
		a.conn.Close()
		a.conn, a.br = nil, nil
	}
}

// triggerBody is the JSON body of POST /apps/{id}/events.
func triggerBody(channels []string, data []byte) []byte {
	m := map[string]any{"name": benchEvent, "data": string(data)}
	if len(channels) == 1 {
		m["channel"] = channels[0]
	} else {
		m["channels"] = channels
	}
	b, _ := json.Marshal(m)
	return b
}

// batchBody is the JSON body of POST /apps/{id}/batch_events with one event
// per (channel, data) pair.
func batchBody(channels []string, data [][]byte) []byte {
	type ev struct {
		Channel string `json:"channel"`
		Name    string `json:"name"`
		Data    string `json:"data"`
	}
	evs := make([]ev, len(data))
	for i := range data {
		evs[i] = ev{Channel: channels[i], Name: benchEvent, Data: string(data[i])}
	}
	b, _ := json.Marshal(map[string]any{"batch": evs})
	return b
}

// statusErr describes a non-2xx answer.
func statusErr(status int) error {
	if status >= 200 && status < 300 {
		return nil
	}
	return fmt.Errorf("HTTP %d", status)
}
