package pusher

import (
	"encoding/json"

	"github.com/reverbgo/reverb/wsproto"
)

// deliver hands an event message to this node's subscribers of a channel;
// store keeps it as the cached event of a cache channel. seq is, for a
// member_added or member_removed, the presence sequence number of the change
// it announces (subscribers whose member list includes it skip it), else 0.
// Goroutine-safe.
func (srv *Server) deliver(app *App, channel string, msg []byte, except string, store bool, seq uint64) {
	var frame []byte
	var z *sharedDeflate
	srv.hub.route(app, channel, msg, store, func(i int) {
		if frame == nil {
			frame = wsproto.AppendText(make([]byte, 0, len(msg)+10), msg)
			z = new(sharedDeflate)
		}
		srv.shards[i].enqueue(delivery{app: app, channel: channel, frame: frame, z: z, except: except, seq: seq})
	})
	if srv.opts.Debug {
		srv.log.Debug("Broadcasting To", "channel", channel, "app_id", app.ID, "message", string(msg))
	}
}

// publish sends events of app to the other nodes and delivers them here.
// When the broker refuses them (ErrBusy) nothing is delivered anywhere and
// the error is returned. done is closed once the other nodes were handed
// the events (nil when there is nothing to wait for). Goroutine-safe.
func (srv *Server) publish(app *App, events []Outgoing) (done <-chan struct{}, err error) {
	done, err = srv.broker.Publish(app, events)
	if err == ErrBusy {
		return nil, err
	}
	// In a cluster the cached event of a cache channel is stored when the
	// broker hands it back in the cluster's order (StoreCache), so that every
	// node keeps the same last event; alone, or cut off, it is stored now.
	store := !srv.clustered || err != nil
	for _, e := range events {
		srv.deliver(app, e.Channel, e.Msg, e.Except, store, 0)
	}
	return done, nil
}

// DeliverRemote delivers an event that another node published (and keeps it
// as a cache channel's cached event). Goroutine-safe.
func (srv *Server) DeliverRemote(app *App, channel string, msg []byte, except string) {
	srv.deliver(app, channel, msg, except, true, 0)
}

// StoreCache keeps msg as the cached event of a cache channel without
// delivering it: the broker calls it for this node's own events, in the
// cluster's order. Other channels are ignored. Goroutine-safe.
func (srv *Server) StoreCache(app *App, channel string, msg []byte) {
	srv.hub.storeCache(app, channel, msg)
}

// Trigger publishes an event, as the HTTP API does: name and data go out as
// {"event":name,"data":data,"channel":channel}. It fails with ErrBusy when
// the cluster cannot take it now (nothing was delivered). Goroutine-safe.
func (srv *Server) Trigger(app *App, channel, name, data, except string) error {
	_, err := srv.publish(app, []Outgoing{{Channel: channel, Msg: eventJSON(nil, name, data, channel), Except: except}})
	return err
}

// TerminateUser closes every connection of app that belongs to user id
// (signed in as it, or a presence member with that user_id), with pusher:error
// and close code 4009. Goroutine-safe; the closes happen asynchronously on
// the loops.
func (srv *Server) TerminateUser(app *App, id string) {
	srv.terminateLocal(app, id)
	srv.broker.Terminate(app, id)
}

func (srv *Server) terminateLocal(app *App, id string) {
	for _, sh := range srv.shardList() {
		sh.exec(func() {
			for i := len(sh.sessions) - 1; i >= 0; i-- {
				s := sh.sessions[i]
				if s.app == app && !s.closed && s.matchesUser(id) {
					s.fail(ErrTerminated)
				}
			}
		})
	}
}

// announceRemoved tells this node's subscribers of a presence channel that a
// user left (every node announces to its own subscribers); seq is the
// presence sequence number of the removal.
func (srv *Server) announceRemoved(app *App, channel string, userID json.RawMessage, except string, seq uint64) {
	data := make([]byte, 0, 16+len(userID))
	data = append(data, `{"user_id":`...)
	data = append(data, userID...)
	data = append(data, '}')
	srv.deliver(app, channel, eventJSON(nil, "pusher_internal:member_removed", string(data), channel), except, false, seq)
}

// announceAdded tells this node's subscribers of a presence channel that a
// user appeared on another node; seq is the presence sequence number of the
// addition.
func (srv *Server) announceAdded(c PresenceChange, seq uint64) {
	srv.deliver(c.App, c.Channel, eventJSON(nil, "pusher_internal:member_added", c.Member.Data, c.Channel), "", false, seq)
}
