package httpapi

import (
	"bytes"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/herald-notify/herald/fanout"
)

// An idle live stream costs what it holds while nothing happens, and a node
// holds tens of thousands of them (issue 11). So a stream on an HTTP/1.1
// connection keeps no goroutine of net/http's: the handler hijacks the
// connection, writes the response head itself and returns, which frees its
// deep stack and net/http's buffers. What stays is the connection and this
// struct; the kernel watches the connection for the client leaving
// (idlewatch.go). Writing is done by a goroutine started when
// there is something to write, events or a heartbeat, which exits once the
// queue is empty. Heartbeats of every stream come from one ticker.

// streamOut is where a live stream writes: a hijacked connection (SSE or
// WebSocket), or net/http's response writer where hijacking is not
// possible (HTTP/2).
type streamOut interface {
	events(evs []*fanout.Event, c *streamCursor, replayed bool) error
	beat() error
	// bye ends the stream with the reason's last words.
	bye(reason byeReason)
	close()
}

type byeReason int

const (
	byeShutdown byeReason = iota
	byeLagged
	byeRevoked
)

// liveStream is one open stream between its replay and its end.
type liveStream struct {
	s   *Server
	uid string
	l   *fanout.Listener
	c   *streamCursor
	out streamOut
	// wakeCh, when set, wakes a handler goroutine that writes instead of
	// a writer goroutine (the response-writer fallback).
	wakeCh chan struct{}

	beatSlot int // the heartbeat wheel's slot that holds it; under Server.liveMu

	mu      sync.Mutex
	running bool // a goroutine owns the writes
	done    bool
	beatDue bool
	stopDue bool
	spare   []*fanout.Event // the writer's; kept only while small
}

// kick has the stream's writer run, starting one if none is running. It
// never blocks for long: the hub calls it under its read lock.
func (ls *liveStream) kick() {
	ls.mu.Lock()
	if ls.wakeCh != nil {
		select {
		case ls.wakeCh <- struct{}{}:
		default:
		}
		ls.mu.Unlock()
		return
	}
	if ls.running || ls.done {
		ls.mu.Unlock()
		return
	}
	ls.running = true
	ls.mu.Unlock()
	go ls.pump()
}

// pump writes what is due until nothing is, and reports whether the
// stream lives on. Only one pump runs at a time (running, or the handler
// goroutine of the fallback), so events go out in order, each once.
func (ls *liveStream) pump() bool {
	for {
		ls.mu.Lock()
		if ls.done {
			ls.running = false
			ls.mu.Unlock()
			return false
		}
		beat, stop := ls.beatDue, ls.stopDue
		ls.beatDue, ls.stopDue = false, false
		evs, ended := ls.l.Take(ls.spare)
		ls.spare = nil
		if len(evs) == 0 && !beat && !stop && !ended {
			ls.running = false
			ls.mu.Unlock()
			return true
		}
		ls.mu.Unlock()
		if len(evs) > 0 {
			if err := ls.out.events(evs, ls.c, false); err != nil {
				ls.end()
				return false
			}
			clear(evs)
			if cap(evs) <= 16 {
				ls.spare = evs[:0]
			}
		}
		switch {
		case stop:
			ls.out.bye(byeShutdown)
		case ended:
			// Cut off for falling behind (or removed): the client
			// resumes from its last event id.
			ls.out.bye(byeLagged)
		case beat && !ls.s.stillValid(ls.c.p):
			// A revoked or expired token ends the stream within a
			// heartbeat; the client's reconnect then meets 401.
			ls.out.bye(byeRevoked)
		case beat:
			if ls.out.beat() == nil {
				continue
			}
		default:
			continue
		}
		ls.end()
		return false
	}
}

// end closes the stream once and gives back what it held.
func (ls *liveStream) end() {
	ls.mu.Lock()
	if ls.done {
		ls.mu.Unlock()
		return
	}
	ls.done = true
	ls.mu.Unlock()
	if ls.out != nil {
		ls.out.close()
	}
	ls.s.hub.Remove(ls.l)
	ls.s.releaseStream(ls.uid)
	ls.s.liveMu.Lock()
	ls.s.beats.remove(ls)
	if m := ls.s.byUser[ls.uid]; m != nil {
		if delete(m, ls); len(m) == 0 {
			delete(ls.s.byUser, ls.uid)
		}
	}
	ls.s.liveMu.Unlock()
	select {
	case ls.s.liveGone <- struct{}{}:
	default:
	}
}

// goLive registers ls for heartbeats and shutdown; from here on end must
// be called.
func (s *Server) goLive(ls *liveStream) {
	s.sweepOnce.Do(func() { go s.sweep() })
	// The first beat comes half to one interval from now, at random:
	// streams opened together (a load's start, clients reconnecting to a
	// restarted node) would otherwise beat together for ever, thousands
	// of writers started in one sweep, and every delivery and every
	// acknowledgement queued behind them for a tenth of a second or more
	// (issue 11).
	now := time.Now()
	first := now.Add(s.opts.Heartbeat/2 + time.Duration(rand.Int64N(int64(s.opts.Heartbeat/2)+1)))
	s.liveMu.Lock()
	if s.beats == nil {
		s.beats = newBeatWheel(s.opts.Heartbeat, now)
		s.byUser = map[string]map[*liveStream]struct{}{}
	}
	s.beats.add(ls, first)
	if s.byUser[ls.uid] == nil {
		s.byUser[ls.uid] = map[*liveStream]struct{}{}
	}
	s.byUser[ls.uid][ls] = struct{}{}
	s.liveMu.Unlock()
	select {
	case <-s.stopping:
		ls.mu.Lock()
		ls.stopDue = true
		ls.mu.Unlock()
	default:
	}
}

// flag sets a due flag on each stream, under its lock, and wakes it.
func flag(due []*liveStream, set func(*liveStream)) {
	for _, ls := range due {
		ls.mu.Lock()
		set(ls)
		ls.mu.Unlock()
		ls.kick()
	}
}

// RecheckStreams has the live streams of principals look their tokens up
// at once rather than at their next heartbeat. The node calls it, on the
// FSM goroutine, after a commit deleted tokens of theirs (a session
// revoked, a password changed, an account disabled or deleted): a revoked
// session then stops reading within moments on every node, not up to a
// heartbeat later. A stream whose token still holds just beats early.
func (s *Server) RecheckStreams(principals []string) {
	var due []*liveStream
	seen := make(map[string]bool, len(principals))
	s.liveMu.Lock()
	for _, p := range principals {
		if !seen[p] { // a principal may come more than once
			seen[p] = true
			for ls := range s.byUser[p] {
				due = append(due, ls)
			}
		}
	}
	s.liveMu.Unlock()
	flag(due, func(ls *liveStream) { ls.beatDue = true })
}

// sweep is the one heartbeat ticker of every stream: the streams whose
// beat is due (beatwheel.go) get one. It ticks often, so that each tick
// starts the few beats that fell due since the last one rather than a
// quarter of all of them. At shutdown it ends them all.
func (s *Server) sweep() {
	every := sweepEvery(s.opts.Heartbeat)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var due []*liveStream
	for {
		select {
		case <-s.stopping:
			due = due[:0]
			s.liveMu.Lock()
			due = s.beats.all(due)
			s.liveMu.Unlock()
			flag(due, func(ls *liveStream) { ls.stopDue = true })
			return
		case <-tick.C:
			s.liveMu.Lock()
			due = s.beats.due(time.Now(), due)
			s.liveMu.Unlock()
			flag(due, func(ls *liveStream) { ls.beatDue = true })
			clear(due)
			due = due[:0]
		}
	}
}

// sweepEvery is how often the sweep looks for beats due: a sixteenth of the
// interval, at most a tenth of a second.
func sweepEvery(heartbeat time.Duration) time.Duration {
	return min(max(heartbeat/16, time.Millisecond), 100*time.Millisecond)
}

// waitStreams waits, at most within, for the streams' last words to go out.
func (s *Server) waitStreams(within time.Duration) {
	timeout := time.After(within)
	for {
		s.liveMu.Lock()
		n := s.beats.len()
		s.liveMu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-s.liveGone:
		case <-timeout:
			return
		}
	}
}

func (s *Server) streamSSE(w http.ResponseWriter, r *http.Request, ls *liveStream) error {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	// The retry field tells EventSource how soon to reconnect after the
	// stream ends, cut off or shut down, with Last-Event-ID set.
	hello := []byte("retry: 2000\n: connected\n\n")
	// HEAD has no body to write, which net/http's writer knows.
	if r.Method == http.MethodGet && r.ProtoAtLeast(1, 1) && r.ProtoMajor == 1 {
		if conn, brw, err := http.NewResponseController(w).Hijack(); err == nil {
			return s.streamSSEConn(conn, brw.Reader.Buffered(), h, hello, ls)
		}
	}
	// The response writer stays, and so does the handler goroutine,
	// which writes.
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	out := &sseWriter{w: w, rc: rc}
	if err := out.write(hello); err != nil {
		s.dropListener(ls)
		return nil
	}
	if err := ls.c.runReplay(func(ev *fanout.Event) error { return out.events([]*fanout.Event{ev}, ls.c, true) }); err != nil {
		s.dropListener(ls)
		return nil // the client went away, or storage failed mid-stream
	}
	wake := make(chan struct{}, 1)
	ls.mu.Lock()
	ls.wakeCh = wake
	ls.mu.Unlock()
	ls.out = out
	s.goLive(ls)
	defer ls.end()
	for {
		if !ls.pump() {
			return nil
		}
		select {
		case <-wake:
		case <-r.Context().Done():
			return nil
		}
	}
}

// dropListener gives back what a stream that never went live holds.
func (s *Server) dropListener(ls *liveStream) {
	s.hub.Remove(ls.l)
	s.releaseStream(ls.uid)
}

// streamSSEConn serves a stream on the hijacked connection: a chunked
// response, as net/http would have written it.
func (s *Server) streamSSEConn(conn net.Conn, pipelined int, h http.Header, hello []byte, ls *liveStream) error {
	out := &sseConn{conn: conn, idle: newIdleWatch(conn)}
	conn.SetReadDeadline(time.Time{})
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Transfer-Encoding", "chunked")
	h.Write(&head)
	head.WriteString("\r\n")
	appendChunk(&head, hello)
	if pipelined > 0 {
		// A client that sends more after a stream request is not one
		// this server speaks to.
		conn.Close()
		s.dropListener(ls)
		return nil
	}
	if !s.startHijacked(conn, head.Bytes(), out, out.send, ls) {
		return nil
	}
	out.idle.wait(func() { watchClose(out.idle, ls) })
	// This goroutine is the writer until the queue is first empty; then
	// net/http's goroutine ends, and writers start as events come.
	ls.pump()
	return nil
}

// startHijacked writes head on a connection taken over from net/http,
// replays what the stream's cursor asks for, and puts the stream live on
// out. When the client is gone it closes the connection, gives back what
// the stream held and says false.
func (s *Server) startHijacked(conn net.Conn, head []byte, out streamOut, send func([]byte) error, ls *liveStream) bool {
	if send(head) != nil ||
		ls.c.runReplay(func(ev *fanout.Event) error { return out.events([]*fanout.Event{ev}, ls.c, true) }) != nil {
		conn.Close()
		s.dropListener(ls)
		return false
	}
	ls.out = out
	s.goLive(ls)
	return true
}

// watchClose reads what an SSE client sends once its idle watch sees
// something: nothing but its going away, which ends the stream. Anything
// else is read and dropped, and the watch waits again.
func watchClose(iw *idleWatch, ls *liveStream) {
	var buf [256]byte
	for {
		if _, err := iw.conn.Read(buf[:]); err != nil {
			ls.end()
			return
		}
		if iw.rearmable {
			iw.wait(func() { watchClose(iw, ls) })
			return
		}
	}
}

// writeBufs lends the buffers a burst of events is framed in, one per
// write: a stream holds none while idle, and a busy node does not
// allocate one per event (a tenth of what it allocated under the latency
// load, and the collector's work follows what is allocated).
var writeBufs = sync.Pool{New: func() any { return new([]byte) }}

func borrowWriteBuf() *[]byte { return writeBufs.Get().(*[]byte) }

// returnWriteBuf gives back p, now grown to b; one grown by a rare large
// burst is left to the collector rather than kept.
func returnWriteBuf(p *[]byte, b []byte) {
	if cap(b) <= 64<<10 {
		*p = b[:0]
		writeBufs.Put(p)
	}
}

func appendChunk(b *bytes.Buffer, data ...[]byte) {
	n := 0
	for _, d := range data {
		n += len(d)
	}
	var hex [16]byte
	b.Write(strconv.AppendInt(hex[:0], int64(n), 16))
	b.WriteString("\r\n")
	for _, d := range data {
		b.Write(d)
	}
	b.WriteString("\r\n")
}

// sseConn writes a chunked event stream straight to the connection.
type sseConn struct {
	conn net.Conn
	idle *idleWatch
}

func (o *sseConn) send(b []byte) error {
	o.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := o.conn.Write(b)
	return err
}

// events writes the queued events as one chunk, one write per burst.
func (o *sseConn) events(evs []*fanout.Event, c *streamCursor, replayed bool) error {
	live, n := evs[:0], 0
	for _, ev := range evs {
		if replayed || c.live(ev) {
			live = append(live, ev)
			n += len(ev.SSE())
		}
	}
	if n == 0 {
		return nil
	}
	p := borrowWriteBuf()
	b := strconv.AppendInt((*p)[:0], int64(n), 16)
	b = append(b, "\r\n"...)
	for _, ev := range live {
		b = append(b, ev.SSE()...)
	}
	b = append(b, "\r\n"...)
	err := o.send(b)
	returnWriteBuf(p, b)
	if err != nil {
		return err
	}
	for _, ev := range live {
		c.delivered(ev)
	}
	return nil
}

func (o *sseConn) beat() error {
	var b bytes.Buffer
	appendChunk(&b, []byte(": keep-alive\n\n"))
	return o.send(b.Bytes())
}

func (o *sseConn) bye(reason byeReason) {
	var b bytes.Buffer
	if reason == byeShutdown {
		appendChunk(&b, []byte("retry: 1000\nevent: shutdown\ndata: {}\n\n"))
	}
	b.WriteString("0\r\n\r\n")
	o.send(b.Bytes())
}

func (o *sseConn) close() { o.idle.close() }

// sseWriter writes the event stream through net/http's response writer.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (o *sseWriter) write(b []byte) error {
	o.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := o.w.Write(b); err != nil {
		return err
	}
	return o.rc.Flush()
}

// events writes the burst into the response buffer and flushes once.
func (o *sseWriter) events(evs []*fanout.Event, c *streamCursor, replayed bool) error {
	o.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	for _, ev := range evs {
		if !replayed && !c.live(ev) {
			continue
		}
		if _, err := o.w.Write(ev.SSE()); err != nil {
			return err
		}
		c.delivered(ev)
	}
	return o.rc.Flush()
}

func (o *sseWriter) beat() error { return o.write([]byte(": keep-alive\n\n")) }

func (o *sseWriter) bye(reason byeReason) {
	if reason == byeShutdown {
		o.write([]byte("retry: 1000\nevent: shutdown\ndata: {}\n\n"))
	}
}

func (o *sseWriter) close() {}
