package redistest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// replyError is an error reply (-ERR ...) of a Redis server.
type replyError string

func (e replyError) Error() string { return string(e) }

// command runs one command on a fresh connection to addr and returns the
// reply: a string, an int64, nil, a replyError or a []any of those. The
// error is an I/O or protocol error, or the reply itself when it is an
// error reply. timeout bounds the whole exchange.
func command(addr string, timeout time.Duration, args ...string) (any, error) {
	return commandOver(addr, nil, timeout, args...)
}

// commandOver is command over TLS with conf, or over plain TCP when conf
// is nil. timeout bounds the handshake too.
func commandOver(addr string, conf *tls.Config, timeout time.Duration, args ...string) (any, error) {
	deadline := time.Now().Add(timeout)
	d := &net.Dialer{Deadline: deadline}
	var conn net.Conn
	var err error
	if conf != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, conf)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, err
	}
	reply, err := readReply(bufio.NewReader(conn))
	if err != nil {
		return nil, err
	}
	if e, ok := reply.(replyError); ok {
		return nil, e
	}
	return reply, nil
}

// commandString is command with the reply formatted by formatReply.
func commandString(addr string, timeout time.Duration, args ...string) (string, error) {
	return commandStringOver(addr, nil, timeout, args...)
}

// commandStringOver is commandOver with the reply formatted by formatReply.
func commandStringOver(addr string, conf *tls.Config, timeout time.Duration, args ...string) (string, error) {
	reply, err := commandOver(addr, conf, timeout, args...)
	if err != nil {
		return "", err
	}
	return formatReply(reply), nil
}

func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return nil, errors.New("redistest: empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return replyError(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, fmt.Errorf("redistest: bad bulk length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, fmt.Errorf("redistest: bad array length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		elems := make([]any, n)
		for i := range elems {
			if elems[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return elems, nil
	}
	return nil, fmt.Errorf("redistest: unexpected reply %q", line)
}

// formatReply formats a reply of command: strings as they are, integers in
// decimal, nil as "", error replies as their message and arrays as their
// elements, one per line.
func formatReply(reply any) string {
	switch v := reply.(type) {
	case nil:
		return ""
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case replyError:
		return string(v)
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = formatReply(e)
		}
		return strings.Join(parts, "\n")
	}
	return fmt.Sprint(reply)
}

// infoField returns the value of field in the output of INFO, or "".
func infoField(info, field string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), field+":"); ok {
			return v
		}
	}
	return ""
}
