package pusher

import "encoding/json"

func (s *Session) handleSignin(msg *clientMsg) {
	d, ok := msg.dataObject()
	if !ok {
		s.sendError(ErrInvalidMessage)
		return
	}
	auth, ok1 := jsonString(d.auth)
	userData, ok2 := jsonString(d.userData)
	if !ok1 || !ok2 {
		s.sendError(ErrInvalidMessage)
		return
	}
	var ud struct {
		ID        json.RawMessage `json:"id"`
		Watchlist json.RawMessage `json:"watchlist"`
	}
	if json.Unmarshal([]byte(userData), &ud) != nil {
		s.sendError(ErrInvalidSignin)
		return
	}
	id, ok := jsonString(ud.ID)
	if !ok || id == "" || !verifyAuth(s.app, auth, s.id+"::user::"+userData) {
		s.sendError(ErrInvalidSignin)
		return
	}
	prev := s.userKey()
	s.user = &id
	inner := appendJSONString([]byte(`{"user_data":`), userData)
	inner = append(inner, '}')
	s.send(eventJSON(nil, "pusher:signin_success", string(inner), ""))
	if !s.app.WatchlistEvents {
		return
	}
	watchlist, over := parseWatchlist(ud.Watchlist)
	if over {
		s.sendError(ErrWatchlistTooLong)
	}
	s.shard.srv.signedIn(s, prev, id, watchlist)
}
