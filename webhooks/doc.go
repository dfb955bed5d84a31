// Package webhooks delivers Pusher webhooks: it tells an app's HTTP
// endpoints when channels become occupied or vacated, when presence members
// join or leave, when clients send events, when a cache channel has nothing
// cached, and when a channel's subscription count changes, in the wire
// format Pusher documents, so that receivers written for Pusher (such as
// pusher-php-server's $pusher->webhook) work unchanged.
//
// # Use
//
//	d, err := webhooks.New(webhooks.Config{}, []webhooks.App{{
//		ID: "app-id", Key: "app-key", Secret: "app-secret",
//		Endpoints: []webhooks.Endpoint{{
//			URL:        "https://example.com/pusher/webhook",
//			EventTypes: []string{webhooks.ChannelOccupied, webhooks.ChannelVacated},
//		}},
//	}})
//	d.Start()
//	if d.Enabled("app-id", webhooks.ChannelOccupied) {
//		d.Emit("app-id", webhooks.Event{Name: webhooks.ChannelOccupied, Channel: "private-chat"})
//	}
//	defer d.Close(ctx)
//
// Every exported method is goroutine-safe. Emit and Enabled never block and
// never do I/O, so the protocol engine may call them from its registry code,
// under its own locks. The caller emits each transition once: on a channel's
// first subscription and after its last one, on a presence user's first
// connection to a channel and after their last, and so on.
//
// # Wire format
//
// Each delivery is a POST of a JSON body
//
//	{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"private-chat"}]}
//
// where time_ms is the Unix time in milliseconds at which the body was
// built, with the headers
//
//	Content-Type: application/json
//	X-Pusher-Key: <the app key>
//	X-Pusher-Signature: <lowercase hex HMAC-SHA256 of the body's exact bytes, keyed with the app secret>
//
// plus the endpoint's extra headers. The events, with their fields in this
// order:
//
//	channel_occupied    {"name","channel"}
//	channel_vacated     {"name","channel"}
//	cache_miss          {"name","channel"}
//	member_added        {"name","channel","user_id"}
//	member_removed      {"name","channel","user_id"}
//	client_event        {"name","channel","event","data","socket_id","user_id"}
//	                    on private and presence channels; user_id on presence channels only
//	subscription_count  {"name","channel","subscription_count"}, never for presence channels
//
// Each endpoint receives only the event types it lists, on the channels its
// filter passes; its bodies hold nothing else and are signed as sent. Without
// batching a body holds one event. With Config.Batch, a body holds the
// events that reached the endpoint within Config.BatchWindow after the
// first, up to Config.MaxBatchEvents.
//
// # Channel vacated and member removed
//
// channel_vacated and member_removed are held back for Config.VacateDelay
// (3 s), as Pusher does, so that a page reload does not look like a user
// leaving. Precisely, per app:
//
//   - A channel_vacated is held; when the delay passes it is sent.
//   - A channel_occupied for the same channel while its channel_vacated is
//     held cancels it, and is not sent either: seen from outside the channel
//     never stopped being occupied. Both count as Cancelled in Stats.
//   - Likewise a member_added for the same channel and user_id cancels a held
//     member_removed, and neither is sent. Another user's member_added does
//     not.
//   - A second channel_vacated (or member_removed for the same user) while
//     one is held is ignored.
//   - Cancellation is decided by what happens, not by what an endpoint
//     receives: an endpoint that lists only channel_occupied still does not
//     hear the channel_occupied that cancelled a held channel_vacated, so it
//     never sees two in a row. This is why Enabled reports the two events of
//     a pair together.
//   - Held events go out in the order they were held. At most
//     Config.QueueSize events are held per app; past that they are sent
//     without delay (counted as Undelayed), never lost. Close sends the held
//     events at once.
//   - With a negative VacateDelay nothing is held and nothing is cancelled.
//
// # Delivery
//
// Every endpoint has its own bounded queue (Config.QueueSize events), its own
// collector goroutine that forms bodies, and its own Config.Concurrency
// sender goroutines, each with at most one request in flight. Endpoints
// share nothing but the HTTP client's connection pool, so a dead or hanging
// endpoint fills its own queue and senders and never delays another one;
// when its queue is full, further events for it are dropped and counted
// (Dropped.QueueFull). Emit never waits.
//
// An attempt fails on an answer outside 2xx (redirects are not followed), on
// a transport error, or when no answer came within Config.Timeout. A failed
// body is sent again, the same bytes with the same signature, after
// Config.InitialBackoff (1 s), then twice as long each time up to
// Config.MaxBackoff (60 s), each wait spread by ±Config.Jitter; no retry
// starts later than Config.RetryBudget (5 min) after the first attempt.
// Then its events are counted as Failed. Requests, Retries, failed attempts
// by reason, Failed and drops by reason are counted per endpoint in Stats.
//
// Bodies of one endpoint may arrive out of order: up to Concurrency are in
// flight at once, and a retried body arrives after later ones. Receivers that
// care order by time_ms.
//
// # Guarantees
//
// While the process lives, delivery is at least once: every event accepted
// into an endpoint's queue is delivered, or counted as Failed (retry budget
// spent) or Abandoned (Close's context ended first); one that overflowed the
// queue is counted as QueueFull. An attempt that timed out may still have
// been processed by the receiver, so a body can arrive twice; it then has
// the same bytes and signature, and receivers that must not act twice can
// key on the signature.
//
// Nothing is persisted. If the process dies, what it held in memory is lost:
// the queued events, the bodies being sent or retried, and the
// channel_vacated and member_removed events held by the delay. Close(ctx)
// narrows that window on a graceful shutdown: it sends the held events,
// flushes the queues and retries until ctx ends.
//
// # Verifying webhooks in Laravel
//
// pusher-php-server's $pusher->webhook($headers, $body) checks that
// X-Pusher-Key is the app key and X-Pusher-Signature the HMAC-SHA256 of the
// raw body with the app secret, and throws Pusher\PusherException otherwise.
// It reads the two headers under these exact names, so pass them so. A
// route in routes/api.php (outside the CSRF middleware):
//
//	Route::post('/pusher/webhook', function (Illuminate\Http\Request $request) {
//	    $app = config('broadcasting.connections.reverb');
//	    $pusher = new Pusher\Pusher($app['key'], $app['secret'], $app['app_id']);
//	    $webhook = $pusher->webhook([
//	        'X-Pusher-Key' => $request->header('X-Pusher-Key'),
//	        'X-Pusher-Signature' => $request->header('X-Pusher-Signature'),
//	    ], $request->getContent()); // throws on a wrong key or signature
//	    foreach ($webhook->get_events() as $event) { logger()->info($event->name, (array) $event); }
//	    return response()->noContent();
//	});
//
// Answer 2xx quickly (queue slow work): any other answer, or none within the
// timeout, is retried for up to five minutes.
package webhooks
