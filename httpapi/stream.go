package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// streamBuffer is how far a stream may fall behind before it is cut off and
// must resume from its cursor.
const streamBuffer = 1024

const writeTimeout = 10 * time.Second

// stream is GET /me/notifications/stream: Server-Sent Events, or a
// WebSocket when the request asks for an upgrade.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r, true)
	if err != nil {
		return err
	}
	if p.user == nil {
		return denied("The live stream is a user's; sign in as the user.")
	}
	uid := p.user.ID
	q := r.URL.Query()
	var filter func(*resource.Change) bool
	sid := q.Get("subscriptionId")
	if sid != "" {
		sub, ok, err := s.state.Subscription(sid)
		if err == nil && (!ok || !sub.ActiveAt(time.Now())) && s.lookAgain(r) {
			// Created, or renewed, through another node a moment ago
			// perhaps.
			sub, ok, err = s.state.Subscription(sid)
		}
		if err != nil {
			return err
		}
		if !ok || sub.UserID != uid {
			return resource.NotFound("subscription")
		}
		if !sub.ActiveAt(time.Now()) {
			return resource.Invalid("subscriptionId", "The subscription is %s; renew it (PATCH expirationDateTime) or create a new one.", sub.View(time.Now()).Status)
		}
		host, platform := sub.TargetHostName, sub.PlatformType
		filter = func(c *resource.Change) bool { return c.Targets(host, platform) }
	}
	cursor := r.Header.Get("Last-Event-ID")
	if cursor == "" {
		cursor = q.Get("lastEventId")
	}
	var from uint64
	replay := cursor != ""
	if replay {
		seq, ok := resource.ParseCursor(cursor)
		if !ok {
			return resync("The cursor is not one this server made; reconnect without one and resync with delta.")
		}
		if err := s.checkSeq(r, uid, seq); err != nil {
			return err
		}
		from = seq
	}
	if !s.acquireStream(uid) {
		return &retryAfter{resource.Errorf(resource.CodeRateLimited,
			"The user has the most live streams open that are allowed (%d).", s.opts.MaxStreamsPerUser), 5 * time.Second}
	}
	defer s.releaseStream(uid)
	// Listen before reading the log, so nothing committed in between is
	// missed; events the replay already sent are skipped by seq.
	l := s.hub.Listen(uid, streamBuffer, filter)
	defer s.hub.Remove(l)
	c := &streamCursor{s: s, uid: uid, filter: filter, last: from, replay: replay, sid: sid, p: p}
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return s.streamWebSocket(w, r, l, c)
	}
	return s.streamSSE(w, r, l, c)
}

func (s *Server) acquireStream(uid string) bool {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if s.opts.MaxStreamsPerUser > 0 && s.streams[uid] >= s.opts.MaxStreamsPerUser {
		return false
	}
	s.streams[uid]++
	return true
}

func (s *Server) releaseStream(uid string) {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if s.streams[uid]--; s.streams[uid] <= 0 {
		delete(s.streams, uid)
	}
}

// streamCursor replays the change log and then passes live events on,
// each exactly once and in order.
type streamCursor struct {
	s      *Server
	uid    string
	filter func(*resource.Change) bool
	last   uint64
	replay bool
	sid    string // the subscription whose deliveries this stream makes
	p      *principal
}

// delivered records that the stream's subscription received ev.
func (c *streamCursor) delivered(ev *fanout.Event) {
	if c.sid == "" || c.s.opts.ReportDelivery == nil || ev.Change.Type == resource.ChangeExpired {
		return
	}
	c.s.opts.ReportDelivery(raft.DeliveryOutcome{UserID: c.uid, NotificationID: ev.Change.NotificationID,
		SubscriptionID: c.sid, Seq: ev.Change.Seq, Outcome: raft.OutcomeDelivered, At: time.Now().UnixNano()})
}

func (c *streamCursor) runReplay(send func(*fanout.Event) error) error {
	if !c.replay {
		return nil
	}
	for {
		changes, err := c.s.state.Changes(c.uid, c.last, 500)
		if err != nil {
			return err
		}
		for i := range changes {
			ch := changes[i]
			c.last = ch.Seq
			if c.filter != nil && !c.filter(&ch) {
				continue
			}
			if err := send(fanout.NewEvent(ch)); err != nil {
				return err
			}
		}
		if len(changes) < 500 {
			return nil
		}
	}
}

// live reports whether a live event is new to this stream.
func (c *streamCursor) live(ev *fanout.Event) bool {
	if c.replay && ev.Change.Seq <= c.last {
		return false
	}
	c.last = ev.Change.Seq
	return true
}

func (s *Server) streamSSE(w http.ResponseWriter, r *http.Request, l *fanout.Listener, c *streamCursor) error {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) error {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	// The retry field tells EventSource how soon to reconnect after the
	// stream ends, cut off or shut down, with Last-Event-ID set.
	if err := write([]byte("retry: 2000\n: connected\n\n")); err != nil {
		return nil
	}
	// put writes an event into the response buffer; flush sends what is
	// buffered. Events that are already queued go out in one flush, which
	// keeps a busy stream to one write per burst rather than per event.
	put := func(ev *fanout.Event) error {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(ev.SSE()); err != nil {
			return err
		}
		c.delivered(ev)
		return nil
	}
	emit := func(ev *fanout.Event) error {
		if err := put(ev); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := c.runReplay(emit); err != nil {
		return nil // the client went away, or storage failed mid-stream
	}
	tick := time.NewTicker(s.opts.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case ev, ok := <-l.C():
			if !ok {
				// Cut off for falling behind: the client resumes from its
				// last event id.
				return nil
			}
			if c.live(ev) {
				if err := put(ev); err != nil {
					return nil
				}
			}
		drain:
			for range streamBuffer {
				select {
				case ev, ok := <-l.C():
					if !ok {
						rc.Flush()
						return nil
					}
					if c.live(ev) {
						if err := put(ev); err != nil {
							return nil
						}
					}
				default:
					break drain
				}
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
		case <-tick.C:
			// A revoked or expired token ends the stream within a heartbeat;
			// the client's reconnect then meets 401.
			if !s.stillValid(c.p) {
				return nil
			}
			if err := write([]byte(": keep-alive\n\n")); err != nil {
				return nil
			}
		case <-s.stopping:
			write([]byte("retry: 1000\nevent: shutdown\ndata: {}\n\n"))
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}

func (s *Server) streamWebSocket(w http.ResponseWriter, r *http.Request, l *fanout.Listener, c *streamCursor) error {
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// The origin is checked where it matters: a bearer or query token
		// gives a cross-origin page nothing it did not already hold, and
		// authenticate refuses the ambient session cookie on cross-site
		// requests (session.go), this handshake among them.
		InsecureSkipVerify: true,
	})
	if err != nil {
		return nil // Accept has answered the client
	}
	defer conn.CloseNow()
	ctx := conn.CloseRead(r.Context())
	send := func(ev *fanout.Event) error {
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		defer cancel()
		if err := conn.Write(wctx, websocket.MessageText, ev.WebSocket()); err != nil {
			return err
		}
		c.delivered(ev)
		return nil
	}
	if err := c.runReplay(send); err != nil {
		return nil
	}
	tick := time.NewTicker(s.opts.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case ev, ok := <-l.C():
			if !ok {
				conn.Close(websocket.StatusTryAgainLater, "fell behind; reconnect with lastEventId")
				return nil
			}
			if c.live(ev) {
				if err := send(ev); err != nil {
					return nil
				}
			}
		case <-tick.C:
			if !s.stillValid(c.p) {
				conn.Close(websocket.StatusPolicyViolation, "the access token was revoked or expired")
				return nil
			}
			pctx, cancel := context.WithTimeout(ctx, writeTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && !errors.Is(err, context.Canceled) {
				return nil
			}
		case <-s.stopping:
			conn.Close(websocket.StatusServiceRestart, "server shutting down; reconnect with lastEventId")
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
