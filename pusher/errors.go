package pusher

import "errors"

// Error is a Pusher protocol error: the code and message of a pusher:error
// event. Codes follow Pusher's ranges, which clients use to decide whether to
// reconnect:
//
//	4000-4099  do not reconnect (4001 unknown app, 4004 over quota, 4009 unauthorized)
//	4100-4199  reconnect after a back-off (4100 over capacity, slow consumer)
//	4200-4299  reconnect at once (4200 generic, 4201 pong not received)
//	4300-4399  other errors; the connection stays open (4301 rate limited)
type Error struct {
	Code    int
	Message string
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// Protocol errors sent to clients. The messages match Reverb's byte for byte
// where Reverb has the same error.
var (
	// ErrAppNotFound: the key in /app/{key} names no app. The connection is closed.
	ErrAppNotFound = &Error{4001, "Application does not exist"}
	// ErrOverQuota: the app's max_connections is reached. The connection is closed.
	ErrOverQuota = &Error{4004, "Application is over connection quota"}
	// ErrOriginNotAllowed: the Origin host matches no allowed_origins pattern. The connection is closed.
	ErrOriginNotAllowed = &Error{4009, "Origin not allowed"}
	// ErrUnauthorized: a channel authorization signature is missing or wrong.
	ErrUnauthorized = &Error{4009, "Connection is unauthorized"}
	// ErrNotMember: a client event on a channel the sender is not subscribed to.
	ErrNotMember = &Error{4009, "The client is not a member of the specified channel."}
	// ErrPublicClientEvent: client events are refused on public channels (Pusher's rule).
	ErrPublicClientEvent = &Error{4009, "Client events are only supported on private and presence channels."}
	// ErrInvalidSignin: a pusher:signin whose signature or user data is wrong.
	ErrInvalidSignin = &Error{4009, "Invalid user authentication."}
	// ErrTerminated: the app terminated the user's connections through the HTTP API.
	ErrTerminated = &Error{4009, "Connection terminated by the application."}
	// ErrSlowConsumer: the connection did not read fast enough; its outbound buffer overflowed.
	ErrSlowConsumer = &Error{4100, "Connection is too slow to receive messages."}
	// ErrOverCapacity: the node refuses new connections (draining or at its fd budget).
	ErrOverCapacity = &Error{4100, "Over capacity"}
	// ErrShuttingDown: the node is draining; the client should reconnect at
	// once (to another node behind the load balancer).
	ErrShuttingDown = &Error{4200, "Server is shutting down; reconnect."}
	// ErrInvalidMessage: a message that is not valid JSON or has wrong field types.
	ErrInvalidMessage = &Error{4200, "Invalid message format"}
	// ErrPongTimeout: the connection did not answer a ping in time. The connection is closed.
	ErrPongTimeout = &Error{4201, "Pong reply not received in time"}
	// ErrRateLimited: the app's rate_limiting tripped for this connection.
	ErrRateLimited = &Error{4301, "Rate limit exceeded"}
	// ErrClientEventsDisabled: the app's accept_client_events_from is "none".
	ErrClientEventsDisabled = &Error{4301, "The app does not have client messaging enabled."}
	// ErrClientEventRate: more client events per second than client_events_per_second.
	ErrClientEventRate = &Error{4301, "Client event rate limit exceeded"}
	// ErrSubscribeRate: more subscriptions per second than subscriptions_per_second.
	ErrSubscribeRate = &Error{4301, "Subscription rate limit exceeded"}
	// ErrTooManyChannels: the connection reached max_channels_per_connection.
	ErrTooManyChannels = &Error{4301, "Too many channels for this connection"}
	// ErrPresenceFull: the presence channel reached max_presence_members.
	ErrPresenceFull = &Error{4301, "Presence channel is over its member limit"}
	// ErrInvalidChannel: an empty, too long or malformed channel name.
	ErrInvalidChannel = &Error{4009, "Invalid channel name"}
	// ErrUserInfoTooLarge: presence user_info over max_user_info_size.
	ErrUserInfoTooLarge = &Error{4009, "Presence user_info is too large"}
)

// Sentinel errors of the server itself (not sent to clients).
var (
	// ErrNoApps is returned by NewServer when no app is configured.
	ErrNoApps = errors.New("pusher: no apps configured")
	// ErrDuplicateApp is returned by NewServer when two apps share an id or a key.
	ErrDuplicateApp = errors.New("pusher: duplicate app id or key")
)
