package pusher

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// The worked examples of the Pusher documentation ("Generating the
// authentication string" and "Worked authentication example").
var pusherDocsApp = &App{ID: "3", Key: "278d425bdf160c739803", Secret: "7ad3773142a6692b25b8"}

func TestChannelSignature(t *testing.T) {
	tests := []struct {
		name        string
		socketID    string
		channel     string
		channelData string
		want        string
	}{
		{
			name:     "pusher docs private channel",
			socketID: "1234.1234",
			channel:  "private-foobar",
			want:     "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4",
		},
		{
			// The Pusher docs' presence example: user_info {"name":"Mr. Pusher"}.
			name:        "pusher docs presence channel",
			socketID:    "1234.1234",
			channel:     "presence-foobar",
			channelData: `{"user_id":10,"user_info":{"name":"Mr. Pusher"}}`,
			want:        "278d425bdf160c739803:afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c",
		},
		{
			// Hand-computed (python hmac) with user_info {"name":"Mr. Channels"}.
			name:        "presence channel, other user_info",
			socketID:    "1234.1234",
			channel:     "presence-foobar",
			channelData: `{"user_id":10,"user_info":{"name":"Mr. Channels"}}`,
			want:        "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ChannelSignature(pusherDocsApp, tt.socketID, tt.channel, tt.channelData)
			if got != tt.want {
				t.Errorf("ChannelSignature = %s, want %s", got, tt.want)
			}
			if ind := chanAuth(pusherDocsApp.Key, pusherDocsApp.Secret, tt.socketID, tt.channel, tt.channelData); ind != tt.want {
				t.Errorf("test signer disagrees with the vector: %s", ind)
			}
			msg := tt.socketID + ":" + tt.channel
			if tt.channelData != "" {
				msg += ":" + tt.channelData
			}
			if !verifyAuth(pusherDocsApp, got, msg) {
				t.Errorf("verifyAuth refuses its own signature")
			}
		})
	}
}

func TestUserSignature(t *testing.T) {
	tests := []struct {
		name     string
		socketID string
		userData string
		want     string
	}{
		{
			name:     "user with id and name",
			socketID: "1234.1234",
			userData: `{"id":"12345","name":"Mr. Pusher"}`,
			want:     "278d425bdf160c739803:" + hmacHex("7ad3773142a6692b25b8", `1234.1234::user::{"id":"12345","name":"Mr. Pusher"}`),
		},
		{
			name:     "minimal user",
			socketID: "1.2",
			userData: `{"id":"1"}`,
			want:     "278d425bdf160c739803:" + hmacHex("7ad3773142a6692b25b8", `1.2::user::{"id":"1"}`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := userSignature(pusherDocsApp, tt.socketID, tt.userData); got != tt.want {
				t.Errorf("userSignature = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestVerifyAuth(t *testing.T) {
	msg := "1234.1234:private-foobar"
	good := "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
	tests := []struct {
		name string
		auth string
		want bool
	}{
		{name: "good", auth: good, want: true},
		{name: "wrong key part", auth: "otherkey:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4", want: false},
		{name: "no key part", auth: "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4", want: false},
		{name: "empty signature", auth: "278d425bdf160c739803:", want: false},
		{name: "flipped digit", auth: good[:len(good)-1] + "5", want: false},
		{name: "uppercase hex", auth: "278d425bdf160c739803:58DF8B0C36D6982B82C3ECF6B4662E34FE8C25BBA48F5369F135BF843651C3A4", want: false},
		{name: "empty", auth: "", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := verifyAuth(pusherDocsApp, tt.auth, msg); got != tt.want {
				t.Errorf("verifyAuth(%q) = %v, want %v", tt.auth, got, tt.want)
			}
		})
	}
}

func TestAPIStringToSign(t *testing.T) {
	docsBody := []byte(`{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`)
	tests := []struct {
		name   string
		method string
		path   string
		query  string
		body   []byte
		want   string
	}{
		{
			name:   "pusher docs worked example",
			method: "POST",
			path:   "/apps/3/events",
			query:  "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
			body:   docsBody,
			want:   "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f",
		},
		{
			name:   "client body_md5 replaced by the body's md5",
			method: "POST",
			path:   "/apps/1/events",
			query:  "auth_key=k&auth_timestamp=1&auth_version=1.0&body_md5=00000000000000000000000000000000",
			body:   []byte("hello"),
			want:   "POST\n/apps/1/events\nauth_key=k&auth_timestamp=1&auth_version=1.0&body_md5=5d41402abc4b2a76b9719d911017c592",
		},
		{
			name:   "body_md5 dropped without a body",
			method: "GET",
			path:   "/apps/1/channels",
			query:  "body_md5=abc&auth_key=k&auth_timestamp=1&auth_version=1.0",
			want:   "GET\n/apps/1/channels\nauth_key=k&auth_timestamp=1&auth_version=1.0",
		},
		{
			name:   "lowercase method, sorted keys, repeated key joined with commas, decoded values",
			method: "get",
			path:   "/apps/1/channels",
			query:  "info=user_count&filter_by_prefix=presence-&auth_version=1.0&info=subscription_count&auth_key=k&auth_timestamp=9&name=a%20b",
			want:   "GET\n/apps/1/channels\nauth_key=k&auth_timestamp=9&auth_version=1.0&filter_by_prefix=presence-&info=user_count,subscription_count&name=a b",
		},
		{
			name:   "Reverb's excluded keys",
			method: "GET",
			path:   "/apps/1/connections",
			query:  "appId=1&appKey=k&channelName=c&auth_signature=x&auth_key=k&auth_timestamp=2&auth_version=1.0",
			want:   "GET\n/apps/1/connections\nauth_key=k&auth_timestamp=2&auth_version=1.0",
		},
		{
			name:   "body and extra params sort around body_md5",
			method: "POST",
			path:   "/apps/1/batch_events",
			query:  "zeta=1&auth_key=k&auth_timestamp=3&auth_version=1.0&alpha=x&alpha=y",
			body:   []byte(`{}`),
			want:   "POST\n/apps/1/batch_events\nalpha=x,y&auth_key=k&auth_timestamp=3&auth_version=1.0&body_md5=99914b932bd37a50b983c5e7c90ae93b&zeta=1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			qv, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			if got := apiStringToSign(tt.method, tt.path, qv, tt.body); got != tt.want {
				t.Errorf("apiStringToSign =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
	// The documented signature of the worked example.
	if got := hmacHex(pusherDocsApp.Secret, tests[0].want); got != "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c" {
		t.Errorf("docs signature = %s", got)
	}
}

func TestVerifyAPISignatureDocsExample(t *testing.T) {
	body := []byte(`{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`)
	qv, _ := url.ParseQuery("auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c")
	now := time.Unix(1353088179+30, 0)
	if err := verifyAPISignature(pusherDocsApp, "POST", "/apps/3/events", qv, body, now, 600*time.Second); err != nil {
		t.Errorf("docs example refused: %v", err)
	}
	if err := verifyAPISignature(pusherDocsApp, "POST", "/apps/3/events", qv, body, time.Unix(1353088179+601, 0), 600*time.Second); !errors.Is(err, errSigTimestamp) {
		t.Errorf("601 s later: %v, want %v", err, errSigTimestamp)
	}
}

func TestVerifyAPISignature(t *testing.T) {
	app := &App{ID: "1", Key: "the-key", Secret: "the-secret"}
	base := time.Unix(1_700_000_000, 0)
	body := []byte(`{"name":"ev","channel":"c","data":"x"}`)
	tests := []struct {
		name    string
		secret  string        // secret the client signs with
		key     string        // auth_key the client sends
		skew    time.Duration // client clock minus server clock
		window  time.Duration
		sigBody []byte // body the client signed
		body    []byte // body the server receives
		edit    func(q url.Values)
		wantErr error
	}{
		{name: "good", secret: "the-secret", key: "the-key", window: 600 * time.Second, sigBody: body, body: body},
		{name: "good, no body", secret: "the-secret", key: "the-key", window: 600 * time.Second},
		{name: "wrong secret", secret: "other", key: "the-key", window: 600 * time.Second, sigBody: body, body: body, wantErr: errSigInvalid},
		{name: "wrong key", secret: "the-secret", key: "other-key", window: 600 * time.Second, sigBody: body, body: body, wantErr: errSigKey},
		{name: "timestamp 601 s old", secret: "the-secret", key: "the-key", skew: -601 * time.Second, window: 600 * time.Second, sigBody: body, body: body, wantErr: errSigTimestamp},
		{name: "timestamp 601 s ahead", secret: "the-secret", key: "the-key", skew: 601 * time.Second, window: 600 * time.Second, sigBody: body, body: body, wantErr: errSigTimestamp},
		{name: "timestamp 599 s old", secret: "the-secret", key: "the-key", skew: -599 * time.Second, window: 600 * time.Second, sigBody: body, body: body},
		{name: "timestamp 599 s ahead", secret: "the-secret", key: "the-key", skew: 599 * time.Second, window: 600 * time.Second, sigBody: body, body: body},
		{name: "window off, 10 days old", secret: "the-secret", key: "the-key", skew: -240 * time.Hour, window: -1, sigBody: body, body: body},
		{name: "tampered body", secret: "the-secret", key: "the-key", window: 600 * time.Second, sigBody: body, body: []byte(`{"name":"ev","channel":"c","data":"y"}`), wantErr: errSigBodyMD5},
		{
			name: "tampered body without body_md5", secret: "the-secret", key: "the-key", window: 600 * time.Second, sigBody: body,
			body: []byte(`{"name":"ev","channel":"c","data":"y"}`), edit: func(q url.Values) { q.Del("body_md5") }, wantErr: errSigInvalid,
		},
		{name: "missing signature", secret: "the-secret", key: "the-key", window: 600 * time.Second, edit: func(q url.Values) { q.Del("auth_signature") }, wantErr: errSigMissing},
		{name: "missing key", secret: "the-secret", key: "the-key", window: 600 * time.Second, edit: func(q url.Values) { q.Del("auth_key") }, wantErr: errSigMissing},
		{name: "missing timestamp", secret: "the-secret", key: "the-key", window: 600 * time.Second, edit: func(q url.Values) { q.Del("auth_timestamp") }, wantErr: errSigMissing},
		{name: "uppercase signature accepted", secret: "the-secret", key: "the-key", window: 600 * time.Second, edit: func(q url.Values) {
			q.Set("auth_signature", toUpperHex(q.Get("auth_signature")))
		}},
		{name: "param added after signing", secret: "the-secret", key: "the-key", window: 600 * time.Second, edit: func(q url.Values) { q.Set("info", "user_count") }, wantErr: errSigInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := signAPI("POST", "/apps/1/events", nil, tt.sigBody, tt.key, tt.secret, base.Add(tt.skew).Unix())
			qv, err := url.ParseQuery(raw)
			if err != nil {
				t.Fatal(err)
			}
			if tt.edit != nil {
				tt.edit(qv)
			}
			err = verifyAPISignature(app, "POST", "/apps/1/events", qv, tt.body, base, tt.window)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("verifyAPISignature = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyAPISignatureWrongPathOrMethod(t *testing.T) {
	app := &App{ID: "1", Key: "k", Secret: "s"}
	now := time.Now()
	raw := signAPI("GET", "/apps/1/channels", url.Values{"info": {"user_count"}}, nil, "k", "s", now.Unix())
	qv, _ := url.ParseQuery(raw)
	if err := verifyAPISignature(app, "GET", "/apps/1/channels", qv, nil, now, time.Minute); err != nil {
		t.Fatalf("good request refused: %v", err)
	}
	if err := verifyAPISignature(app, "GET", "/apps/1/connections", qv, nil, now, time.Minute); !errors.Is(err, errSigInvalid) {
		t.Errorf("other path: %v", err)
	}
	if err := verifyAPISignature(app, "POST", "/apps/1/channels", qv, nil, now, time.Minute); !errors.Is(err, errSigInvalid) {
		t.Errorf("other method: %v", err)
	}
	qv.Set("auth_timestamp", "not-a-number")
	if err := verifyAPISignature(app, "GET", "/apps/1/channels", qv, nil, now, time.Minute); !errors.Is(err, errSigMissing) {
		t.Errorf("bad timestamp: %v", err)
	}
}

func toUpperHex(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// The test signer must agree with the package on a body_md5 it computes itself.
func TestSignerBodyMD5(t *testing.T) {
	body := []byte("abc")
	raw := signAPI("POST", "/p", nil, body, "k", "s", 5)
	qv, _ := url.ParseQuery(raw)
	sum := md5.Sum(body)
	if got := qv.Get("body_md5"); got != hex.EncodeToString(sum[:]) || got != "900150983cd24fb0d6963f7d28e17f72" {
		t.Errorf("body_md5 = %s", got)
	}
	if qv.Get("auth_timestamp") != strconv.Itoa(5) || qv.Get("auth_version") != "1.0" {
		t.Errorf("query %s", raw)
	}
}

// SignQuery produces the documented query of the worked example of
// Pusher's REST API documentation ("Generating authentication signatures").
func TestSignQueryDocsExample(t *testing.T) {
	body := []byte(`{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`)
	got := SignQuery("278d425bdf160c739803", "7ad3773142a6692b25b8", "POST", "/apps/3/events", nil, body, time.Unix(1353088179, 0))
	want := url.Values{
		"auth_key":       {"278d425bdf160c739803"},
		"auth_timestamp": {"1353088179"},
		"auth_version":   {"1.0"},
		"body_md5":       {"ec365a775a4cd0599faeb73354201b6f"},
		"auth_signature": {"da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"},
	}
	if got.Encode() != want.Encode() {
		t.Fatalf("SignQuery:\n got %s\nwant %s", got.Encode(), want.Encode())
	}
	// A GET without a body carries no body_md5; the caller's query is kept
	// and signed, and not modified.
	in := url.Values{"info": {"user_count"}}
	q := SignQuery("k", "s", "GET", "/apps/3/channels", in, nil, time.Unix(1, 0))
	if q.Has("body_md5") || q.Get("info") != "user_count" || len(in) != 1 {
		t.Fatalf("GET: %s (input %v)", q.Encode(), in)
	}
	if err := verifyAPISignature(&App{Key: "k", Secret: "s"}, "GET", "/apps/3/channels", q, nil, time.Unix(1, 0), time.Minute); err != nil {
		t.Fatalf("own signature refused: %v", err)
	}
}

// ChannelAuth matches the private channel example of Pusher's
// authentication documentation.
func TestChannelAuthDocsExample(t *testing.T) {
	got := ChannelAuth("278d425bdf160c739803", "7ad3773142a6692b25b8", "1234.1234", "private-foobar", "")
	want := "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
	if got != want {
		t.Fatalf("ChannelAuth = %s, want %s", got, want)
	}
}
