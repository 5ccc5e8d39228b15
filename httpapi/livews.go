package httpapi

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/resource"
)

// The stream's WebSocket side (RFC 6455) is this server's own, small on
// purpose: it only sends text messages and pings, and reads nothing but
// control frames. A general library keeps 8 KiB of buffers and a reading
// goroutine with a deep stack per connection; an idle stream here keeps
// the connection, a few hundred bytes and one shallow reader.

// WebSocket close codes the stream uses (RFC 6455 section 7.4).
const (
	wsNormal         = 1000
	wsProtocolError  = 1002
	wsPolicy         = 1008
	wsServiceRestart = 1012
	wsTryAgainLater  = 1013
)

// wsCloseWait is how long a close frame waits for the client's answer
// before the connection is dropped anyway.
const wsCloseWait = 5 * time.Second

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func (s *Server) streamWebSocket(w http.ResponseWriter, r *http.Request, ls *liveStream) error {
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 ||
		!r.ProtoAtLeast(1, 1) || !headerHasToken(r.Header, "Connection", "upgrade") ||
		!headerHasToken(r.Header, "Upgrade", "websocket") || r.Header.Get("Sec-WebSocket-Version") != "13" {
		s.dropListener(ls)
		w.Header().Set("Sec-WebSocket-Version", "13")
		return resource.Invalid("Upgrade", "A WebSocket handshake needs HTTP/1.1, Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key.")
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.dropListener(ls)
		return resource.Invalid("Upgrade", "A WebSocket needs a connection of its own (HTTP/1.1).")
	}
	// Bytes the client sent right after its handshake are frames; the
	// reader takes them first so net/http's buffer can go.
	early, _ := brw.Reader.Peek(brw.Reader.Buffered())
	early = bytes.Clone(early)
	conn.SetDeadline(time.Time{})

	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	h := w.Header()
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Accept", base64.StdEncoding.EncodeToString(sum[:]))
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h.Write(&head)
	head.WriteString("\r\n")
	out := &wsConn{conn: conn, ls: ls, idle: newIdleWatch(conn)}
	if !s.startHijacked(conn, head.Bytes(), out, out.send, ls) {
		return nil
	}
	if len(early) > 0 {
		go out.read(early)
	} else {
		out.idle.wait(func() { out.read(nil) })
	}
	ls.pump()
	return nil
}

// wsConn is one stream's WebSocket connection.
type wsConn struct {
	conn net.Conn
	ls   *liveStream
	idle *idleWatch

	wmu       sync.Mutex // one frame at a time, from the writer or the reader
	closeSent bool       // guarded by wmu
	pongDue   atomic.Bool
}

func (o *wsConn) send(b []byte) error {
	o.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := o.conn.Write(b)
	return err
}

func appendFrame(b []byte, opcode byte, payload []byte) []byte {
	b = append(b, 0x80|opcode)
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// frame writes one frame unless the close frame has gone already.
func (o *wsConn) frame(opcode byte, payload []byte) error {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if o.closeSent {
		return net.ErrClosed
	}
	if opcode == 0x8 {
		o.closeSent = true
	}
	return o.send(appendFrame(make([]byte, 0, len(payload)+10), opcode, payload))
}

// events writes the burst as text messages in one write.
func (o *wsConn) events(evs []*fanout.Event, c *streamCursor, replayed bool) error {
	live, n := evs[:0], 0
	for _, ev := range evs {
		if replayed || c.live(ev) {
			live = append(live, ev)
			n += len(ev.WebSocket()) + 10
		}
	}
	if n == 0 {
		return nil
	}
	p := borrowWriteBuf()
	b := (*p)[:0]
	for _, ev := range live {
		b = appendFrame(b, 0x1, ev.WebSocket())
	}
	o.wmu.Lock()
	err := net.ErrClosed
	if !o.closeSent {
		err = o.send(b)
	}
	o.wmu.Unlock()
	returnWriteBuf(p, b)
	if err != nil {
		return err
	}
	for _, ev := range live {
		c.delivered(ev)
	}
	return nil
}

// beat pings; a client that has not answered within writeTimeout is gone.
func (o *wsConn) beat() error {
	// Due before the ping goes: a client on loopback can answer before
	// frame returns, and its pong must not be overwritten.
	o.pongDue.Store(true)
	if err := o.frame(0x9, nil); err != nil {
		return err
	}
	time.AfterFunc(writeTimeout, func() {
		if o.pongDue.Load() {
			o.ls.end()
		}
	})
	return nil
}

func closePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

func (o *wsConn) bye(reason byeReason) {
	switch reason {
	case byeShutdown:
		o.frame(0x8, closePayload(wsServiceRestart, "server shutting down; reconnect with lastEventId"))
	case byeLagged:
		o.frame(0x8, closePayload(wsTryAgainLater, "fell behind; reconnect with lastEventId"))
	case byeRevoked:
		o.frame(0x8, closePayload(wsPolicy, "the access token was revoked or expired"))
	}
}

// close drops the connection, after the client's answer to a close frame
// if one was sent: closing first could reset the connection and lose it.
func (o *wsConn) close() {
	o.wmu.Lock()
	sent := o.closeSent
	o.wmu.Unlock()
	if !sent {
		o.idle.close()
		return
	}
	time.AfterFunc(wsCloseWait, o.idle.close)
}

// read takes the client's frames until the connection ends: pings are
// answered, pongs noted, a close is answered and ends the stream; the
// stream reads nothing else. Between frames, with nothing of early left,
// it hands the connection back to its idle watch (idlewatch.go), which
// starts it again when the client sends more.
func (o *wsConn) read(early []byte) {
	ended := true
	defer func() {
		if ended {
			o.idle.close()
			o.ls.end()
		}
	}()
	pending := bytes.NewReader(early)
	var rd io.Reader = o.conn
	if len(early) > 0 {
		rd = io.MultiReader(pending, o.conn)
	}
	var buf [14 + 125]byte
	for {
		hdr := buf[:2]
		if _, err := io.ReadFull(rd, hdr); err != nil {
			return
		}
		opcode, masked, n := hdr[0]&0x0F, hdr[1]&0x80 != 0, uint64(hdr[1]&0x7F)
		if hdr[0]&0x70 != 0 || !masked || (opcode >= 0x8 && (n > 125 || hdr[0]&0x80 == 0)) {
			o.frame(0x8, closePayload(wsProtocolError, "protocol error"))
			return
		}
		if opcode < 0x8 {
			// A data message: the stream only speaks.
			o.frame(0x8, closePayload(wsPolicy, "unexpected data message"))
			return
		}
		payload := buf[2 : 2+4+n]
		if _, err := io.ReadFull(rd, payload); err != nil {
			return
		}
		mask, data := payload[:4], payload[4:]
		for i := range data {
			data[i] ^= mask[i%4]
		}
		switch opcode {
		case 0x9:
			if o.frame(0xA, data) != nil {
				return
			}
		case 0xA:
			o.pongDue.Store(false)
		case 0x8:
			code := wsNormal
			if len(data) >= 2 {
				code = int(binary.BigEndian.Uint16(data))
			}
			o.frame(0x8, closePayload(code, ""))
			return
		default:
			o.frame(0x8, closePayload(wsProtocolError, "unknown opcode"))
			return
		}
		if pending.Len() == 0 && o.idle.rearmable {
			ended = false
			o.idle.wait(func() { o.read(nil) })
			return
		}
	}
}
