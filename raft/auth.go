package raft

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
)

// The Raft transport of a cluster with a key starts every connection with a
// mutual challenge–response, so that a peer without the key can neither
// inject Raft messages nor read any:
//
//	dialer → acceptor: magic, nonceD (32 bytes)
//	acceptor → dialer: nonceA (32 bytes), HMAC(key, "acceptor" | magic | nonceD | nonceA)
//	dialer → acceptor: HMAC(key, "dialer" | magic | nonceD | nonceA)
//	acceptor → dialer: one byte handshakeOK
//
// Each side checks the other's MAC with hmac.Equal (constant time). The role
// labels keep one side's MAC from being reflected back as the other's, and
// fresh nonces on both sides keep old handshakes from being replayed. The
// dialer checks the acceptor before it proves anything itself, so a fake
// acceptor learns no MAC of the dialer; a dialer without the key gets only a
// MAC over nonces, never a byte of Raft traffic.

const (
	handshakeMagic = "HRLDRAFT1"
	nonceSize      = 32
	handshakeOK    = 0x01
	// HandshakeTimeout bounds a handshake, so a silent peer cannot hold a
	// connection (or a goroutine) open.
	HandshakeTimeout = 5 * time.Second
)

// ErrHandshake: the peer did not prove knowledge of the cluster key.
var ErrHandshake = errors.New("raft peer failed cluster-key authentication")

func handshakeMAC(key []byte, role string, nd, na []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(role))
	m.Write([]byte(handshakeMagic))
	m.Write(nd)
	m.Write(na)
	return m.Sum(nil)
}

// dialHandshake authenticates conn from the dialing side.
func dialHandshake(conn net.Conn, key []byte) error {
	conn.SetDeadline(time.Now().Add(HandshakeTimeout))
	defer conn.SetDeadline(time.Time{})
	nd := make([]byte, nonceSize)
	rand.Read(nd)
	if _, err := conn.Write(append([]byte(handshakeMagic), nd...)); err != nil {
		return err
	}
	buf := make([]byte, nonceSize+sha256.Size)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return ErrHandshake
	}
	na, mac := buf[:nonceSize], buf[nonceSize:]
	if !hmac.Equal(mac, handshakeMAC(key, "acceptor", nd, na)) {
		return ErrHandshake
	}
	if _, err := conn.Write(handshakeMAC(key, "dialer", nd, na)); err != nil {
		return err
	}
	var okb [1]byte
	if _, err := io.ReadFull(conn, okb[:]); err != nil || okb[0] != handshakeOK {
		return ErrHandshake
	}
	return nil
}

// acceptHandshake authenticates conn from the accepting side.
func acceptHandshake(conn net.Conn, key []byte) error {
	conn.SetDeadline(time.Now().Add(HandshakeTimeout))
	defer conn.SetDeadline(time.Time{})
	buf := make([]byte, len(handshakeMagic)+nonceSize)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return ErrHandshake
	}
	if !hmac.Equal(buf[:len(handshakeMagic)], []byte(handshakeMagic)) {
		return ErrHandshake
	}
	nd := buf[len(handshakeMagic):]
	na := make([]byte, nonceSize)
	rand.Read(na)
	if _, err := conn.Write(append(append([]byte{}, na...), handshakeMAC(key, "acceptor", nd, na)...)); err != nil {
		return err
	}
	mac := make([]byte, sha256.Size)
	if _, err := io.ReadFull(conn, mac); err != nil {
		return ErrHandshake
	}
	if !hmac.Equal(mac, handshakeMAC(key, "dialer", nd, na)) {
		return ErrHandshake
	}
	_, err := conn.Write([]byte{handshakeOK})
	return err
}

// authLayer is a hashicorp/raft StreamLayer over TCP whose connections are
// all authenticated with the cluster key before Raft sees them.
type authLayer struct {
	ln        net.Listener
	key       []byte
	advertise net.Addr
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	rejected  func(remote net.Addr, err error)
	dial      func(ctx context.Context, addr string) (net.Conn, error)
}

// newAuthLayer listens on bind. Handshakes of accepted connections run on
// their own goroutines, so one slow or hostile peer cannot stall Accept.
func newAuthLayer(bind string, key []byte, dial func(context.Context, string) (net.Conn, error), rejected func(net.Addr, error)) (*authLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok || addr.IP.IsUnspecified() {
		ln.Close()
		return nil, errors.New("raft address must name a host other peers can reach, not " + bind)
	}
	l := &authLayer{ln: ln, key: key, advertise: addr, conns: make(chan net.Conn),
		closed: make(chan struct{}), rejected: rejected, dial: dial}
	go l.acceptLoop()
	return l, nil
}

func (l *authLayer) acceptLoop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// A listener error that is not a close: back off briefly
			// instead of spinning.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			if err := acceptHandshake(c, l.key); err != nil {
				if l.rejected != nil {
					l.rejected(c.RemoteAddr(), err)
				}
				c.Close()
				return
			}
			select {
			case l.conns <- c:
			case <-l.closed:
				c.Close()
			}
		}()
	}
}

func (l *authLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *authLayer) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.ln.Close()
	})
	return err
}

func (l *authLayer) Addr() net.Addr { return l.advertise }

func (l *authLayer) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var c net.Conn
	var err error
	if l.dial != nil {
		c, err = l.dial(ctx, string(address))
	} else {
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", string(address))
	}
	if err != nil {
		return nil, err
	}
	if err := dialHandshake(c, l.key); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
