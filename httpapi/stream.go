package httpapi

import (
	"net/http"
	"strings"
	"time"

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
	// Listen before reading the log, so nothing committed in between is
	// missed; events the replay already sent are skipped by seq.
	ls := &liveStream{s: s, uid: uid, running: true,
		c: &streamCursor{s: s, uid: uid, filter: filter, last: from, replay: replay, sid: sid, p: p}}
	ls.l = s.hub.ListenFunc(uid, streamBuffer, filter, ls.kick)
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return s.streamWebSocket(w, r, ls)
	}
	return s.streamSSE(w, r, ls)
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
