package pusher

import "testing"

// signinMsg builds a pusher:signin message.
func signinMsg(auth, userData string) string {
	return `{"event":"pusher:signin","data":{"auth":` + q(auth) + `,"user_data":` + q(userData) + `}}`
}

func userAuth(key, secret, socketID, userData string) string {
	return key + ":" + hmacHex(secret, socketID+"::user::"+userData)
}

func TestSignin(t *testing.T) {
	e := newEnv(t, nil)
	c := e.connect()
	ud := `{"id":"42","name":"Zaphod","watchlist":["1"]}`
	c.send(signinMsg(userAuth(testKey, testSecret, c.id(), ud), ud))
	c.expect(`{"event":"pusher:signin_success","data":` + q(`{"user_data":`+q(ud)+`}`) + `}`)
	if c.sess.userKey() != "42" {
		t.Errorf("userKey = %q", c.sess.userKey())
	}
}

func TestSigninFailure(t *testing.T) {
	tests := []struct {
		name     string
		userData string
		auth     func(id, ud string) string
		want     string
	}{
		{name: "wrong secret", userData: `{"id":"1"}`,
			auth: func(id, ud string) string { return userAuth(testKey, "nope", id, ud) },
			want: errMsg(4009, "Invalid user authentication.")},
		{name: "wrong key", userData: `{"id":"1"}`,
			auth: func(id, ud string) string { return userAuth("other", testSecret, id, ud) },
			want: errMsg(4009, "Invalid user authentication.")},
		{name: "other socket", userData: `{"id":"1"}`,
			auth: func(id, ud string) string { return userAuth(testKey, testSecret, "9.9", ud) },
			want: errMsg(4009, "Invalid user authentication.")},
		{name: "no id", userData: `{"name":"x"}`,
			auth: func(id, ud string) string { return userAuth(testKey, testSecret, id, ud) },
			want: errMsg(4009, "Invalid user authentication.")},
		{name: "numeric id", userData: `{"id":1}`,
			auth: func(id, ud string) string { return userAuth(testKey, testSecret, id, ud) },
			want: errMsg(4009, "Invalid user authentication.")},
		{name: "empty id", userData: `{"id":""}`,
			auth: func(id, ud string) string { return userAuth(testKey, testSecret, id, ud) },
			want: errMsg(4009, "Invalid user authentication.")},
		{name: "user_data not JSON", userData: `id=1`,
			auth: func(id, ud string) string { return userAuth(testKey, testSecret, id, ud) },
			want: errMsg(4009, "Invalid user authentication.")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.connect()
			c.send(signinMsg(tt.auth(c.id(), tt.userData), tt.userData))
			c.expect(tt.want)
			if c.sess.userKey() != "" {
				t.Errorf("signed in as %q", c.sess.userKey())
			}
			c.send(subMsg("#server-to-user-1", "", ""))
			c.expect(subErrMsg("#server-to-user-1", "Connection is unauthorized", 401), errMsg(4009, "Connection is unauthorized"))
		})
	}
}

func TestServerToUser(t *testing.T) {
	e := newEnv(t, nil)
	u42, u42b, u43, anon := e.connect(), e.connect(), e.connect(), e.connect()
	for _, c := range []*client{u42, u42b} {
		ud := `{"id":"42"}`
		c.send(signinMsg(userAuth(testKey, testSecret, c.id(), ud), ud))
		c.take()
	}
	ud := `{"id":"43"}`
	u43.send(signinMsg(userAuth(testKey, testSecret, u43.id(), ud), ud))
	u43.take()

	u42.send(subMsg("#server-to-user-42", "", ""))
	u42.expect(succeeded("#server-to-user-42", ""))
	u42b.send(subMsg("#server-to-user-42", "", ""))
	u42b.expect(succeeded("#server-to-user-42", ""))
	for _, c := range []*client{u43, anon} {
		c.send(subMsg("#server-to-user-42", "", ""))
		c.expect(subErrMsg("#server-to-user-42", "Connection is unauthorized", 401), errMsg(4009, "Connection is unauthorized"))
	}
	e.srv.Trigger(e.app, "#server-to-user-42", "note", `{"hi":1}`, "")
	u42.expect(apiEvent("note", `{"hi":1}`, "#server-to-user-42"))
	u42b.expect(apiEvent("note", `{"hi":1}`, "#server-to-user-42"))
	u43.expectNothing()
	anon.expectNothing()
}
