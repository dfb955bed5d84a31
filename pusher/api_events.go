package pusher

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// validation collects Laravel-style validation errors: {"field":["message"]}.
type validation struct {
	fields []string
	msgs   []string
}

func (v *validation) add(field, msg string) {
	v.fields = append(v.fields, field)
	v.msgs = append(v.msgs, msg)
}

func (v *validation) response() APIResponse {
	b := []byte{'{'}
	for i := range v.fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v.fields[i])
		b = append(b, ":["...)
		b = appendJSONString(b, v.msgs[i])
		b = append(b, ']')
	}
	return APIResponse{Status: 422, Body: append(b, '}')}
}

type eventBody struct {
	Name     json.RawMessage `json:"name"`
	Data     json.RawMessage `json:"data"`
	Channels json.RawMessage `json:"channels"`
	Channel  json.RawMessage `json:"channel"`
	SocketID json.RawMessage `json:"socket_id"`
	Info     json.RawMessage `json:"info"`
}

// event is a validated event to trigger.
type event struct {
	name, data, socketID string
	channels             []string
	info                 []string
}

// validateEvent checks one event; prefix names fields in batch items.
func (srv *Server) validateEvent(app *App, b *eventBody, prefix string, v *validation) (ev event, tooLarge bool) {
	name, ok := jsonString(b.Name)
	switch {
	case isNull(b.Name):
		v.add(prefix+"name", "The name field is required.")
	case !ok:
		v.add(prefix+"name", "The name field must be a string.")
	case !validEventName(name, srv.opts.MaxNameLength):
		v.add(prefix+"name", "The name field must be 1 to "+strconv.Itoa(srv.opts.MaxNameLength)+" characters.")
	}
	data, ok := jsonString(b.Data)
	switch {
	case isNull(b.Data):
		v.add(prefix+"data", "The data field is required.")
	case !ok:
		v.add(prefix+"data", "The data field must be a string.")
	case app.MaxMessageSize > 0 && len(data) > app.MaxMessageSize:
		tooLarge = true
	}
	var channels []string
	if !isNull(b.Channels) {
		if json.Unmarshal(b.Channels, &channels) != nil {
			v.add(prefix+"channels", "The channels field must be an array of strings.")
		} else if len(channels) == 0 {
			v.add(prefix+"channels", "The channels field is required when channel is not present.")
		}
	} else if !isNull(b.Channel) {
		ch, ok := jsonString(b.Channel)
		if !ok {
			v.add(prefix+"channel", "The channel field must be a string.")
		} else {
			channels = []string{ch}
		}
	} else {
		v.add(prefix+"channels", "The channels field is required when channel is not present.")
	}
	if len(channels) > srv.opts.MaxChannelsPerEvent {
		v.add(prefix+"channels", "The channels field must not have more than "+strconv.Itoa(srv.opts.MaxChannelsPerEvent)+" items.")
	}
	for _, c := range channels {
		if !validChannelName(c, srv.opts.MaxNameLength) {
			v.add(prefix+"channels", "Invalid channel name: "+truncate(c, 64))
			break
		}
	}
	socketID, ok := optString(b.SocketID)
	if !ok {
		v.add(prefix+"socket_id", "The socket_id field must be a string.")
	}
	info, ok := optString(b.Info)
	if !ok {
		v.add(prefix+"info", "The info field must be a string.")
	}
	ev = event{name: name, data: data, socketID: socketID, channels: channels}
	if info != "" {
		ev.info = strings.Split(info, ",")
	}
	return ev, tooLarge
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func decodeBody(body []byte, into any) *APIResponse {
	if len(bytes.TrimSpace(body)) == 0 {
		r := ErrorResponse(400, "The request body is empty.")
		return &r
	}
	if err := json.Unmarshal(body, into); err != nil {
		r := ErrorResponse(400, "The request body is not valid JSON.")
		return &r
	}
	return nil
}

func (srv *Server) apiEvents(app *App, body []byte) APIResponse {
	var b eventBody
	if r := decodeBody(body, &b); r != nil {
		return *r
	}
	var v validation
	ev, tooLarge := srv.validateEvent(app, &b, "", &v)
	if len(v.fields) > 0 {
		return v.response()
	}
	if tooLarge {
		return ErrorResponse(413, "Payload too large.")
	}
	out := make([]Outgoing, len(ev.channels))
	for i, ch := range ev.channels {
		out[i] = Outgoing{Channel: ch, Msg: eventJSON(nil, ev.name, ev.data, ch), Except: ev.socketID}
	}
	if r := srv.publishAPI(app, out); r != nil {
		return *r
	}
	if len(ev.info) == 0 {
		return APIResponse{Status: 200, Body: respEmpty}
	}
	counts := srv.gather(app, Query{Kind: QuerySubscriptions, Channels: ev.channels, Users: has(ev.info, "user_count")})
	rb := []byte(`{"channels":{`)
	for i, ch := range ev.channels {
		if i > 0 {
			rb = append(rb, ',')
		}
		rb = appendJSONString(rb, ch)
		rb = append(rb, ':')
		rb = srv.appendCounts(rb, app, ch, counts, ev.info, false)
	}
	return APIResponse{Status: 200, Body: append(rb, "}}"...)}
}

// publishTimeout bounds how long a trigger waits for the cluster to take
// events of cache channels before answering.
const publishTimeout = 5 * time.Second

// publishAPI publishes the events of one API request, all or none. It
// returns the 503 to answer when the cluster cannot take them now. When an
// event is for a cache channel it waits until the other nodes were handed
// it, so that a subscriber arriving anywhere after the answer gets it.
func (srv *Server) publishAPI(app *App, events []Outgoing) *APIResponse {
	done, err := srv.publish(app, events)
	if err != nil {
		r := ErrorResponse(503, "Cross-node queue full, retry later.")
		r.RetryAfter = 1
		return &r
	}
	if done == nil {
		return nil
	}
	for _, e := range events {
		if _, cache := Classify(e.Channel); cache {
			t := time.NewTimer(publishTimeout)
			select {
			case <-done:
			case <-t.C:
			}
			t.Stop()
			break
		}
	}
	return nil
}

func (srv *Server) apiBatch(app *App, body []byte) APIResponse {
	var b struct {
		Batch []eventBody `json:"batch"`
	}
	if r := decodeBody(body, &b); r != nil {
		return *r
	}
	var v validation
	if len(b.Batch) == 0 {
		v.add("batch", "The batch field is required.")
		return v.response()
	}
	if len(b.Batch) > srv.opts.MaxBatchSize {
		v.add("batch", "The batch field must not have more than "+strconv.Itoa(srv.opts.MaxBatchSize)+" items.")
		return v.response()
	}
	events := make([]event, len(b.Batch))
	anyInfo, anyTooLarge := false, false
	for i := range b.Batch {
		prefix := "batch." + strconv.Itoa(i) + "."
		ev, tooLarge := srv.validateEvent(app, &b.Batch[i], prefix, &v)
		if len(ev.channels) > 1 {
			v.add(prefix+"channel", "A batch item has exactly one channel.")
		}
		events[i] = ev
		anyInfo = anyInfo || len(ev.info) > 0
		anyTooLarge = anyTooLarge || tooLarge
	}
	if len(v.fields) > 0 {
		return v.response()
	}
	if anyTooLarge {
		return ErrorResponse(413, "Payload too large.")
	}
	out := make([]Outgoing, len(events))
	wantUsers := false
	for i, ev := range events {
		ch := ev.channels[0]
		out[i] = Outgoing{Channel: ch, Msg: eventJSON(nil, ev.name, ev.data, ch), Except: ev.socketID}
		wantUsers = wantUsers || has(ev.info, "user_count")
	}
	if r := srv.publishAPI(app, out); r != nil {
		return *r
	}
	if !anyInfo {
		return APIResponse{Status: 200, Body: []byte(`{"batch":{}}`)}
	}
	names := make([]string, len(events))
	for i, ev := range events {
		names[i] = ev.channels[0]
	}
	counts := srv.gather(app, Query{Kind: QuerySubscriptions, Channels: names, Users: wantUsers})
	rb := []byte(`{"batch":[`)
	for i, ev := range events {
		if i > 0 {
			rb = append(rb, ',')
		}
		rb = srv.appendCounts(rb, app, ev.channels[0], counts, ev.info, false)
	}
	return APIResponse{Status: 200, Body: append(rb, "]}"...)}
}
