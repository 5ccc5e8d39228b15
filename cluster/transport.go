package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/raft"
)

// Every connection between two nodes goes to the Raft address (--raft-addr)
// and runs, in order:
//
//  1. TLS 1.3. With the operator's certificates both sides verify the
//     other's chain (tlsconfig.go); otherwise the certificates are
//     throwaway and only encrypt.
//  2. With a cluster key, a proof of the key bound to this TLS session,
//     the dialer first:
//     dialer → acceptor: HMAC(key, "herald dialer" | EKM)
//     acceptor → dialer: HMAC(key, "herald acceptor" | EKM)
//     where EKM is keying material exported from the session (RFC 8446
//     §7.5), which differs for every connection and which no one outside
//     the session can compute. The acceptor checks the dialer's proof
//     before it sends anything, and sends nothing at all when it fails, so
//     a connection without the key receives nothing that depends on the
//     key: there is no answer to test key guesses against offline. Without
//     a key (operator certificates only) the acceptor answers one constant
//     byte once it has verified the dialer's certificate.
//  3. dialer → acceptor: one byte choosing the protocol: Raft (handed to
//     hashicorp/raft) or internal HTTP (served by the Cluster). A node whose
//     cluster has an identity chooses Raft with its cluster's id, which the
//     acceptor checks (identity.go).
//
// A captured connection cannot be replayed: its TLS session, and with it
// the proof, is bound to the randoms of both sides.

const (
	protoRaft byte = 'R'
	protoHTTP byte = 'H'
	// ackNoKey is the acceptor's answer when there is no key to prove.
	ackNoKey byte = 0x01
	// HandshakeTimeout bounds a connection's TLS handshake, proofs and
	// protocol byte, so a silent peer holds no goroutine for long.
	HandshakeTimeout = 5 * time.Second
	ekmLabel         = "EXPORTER-herald-cluster-v1"
	proofSize        = sha256.Size
)

// Why an inter-node connection failed, for logs an operator can act on.
var (
	// ErrWrongKey: the peer's proof of the cluster key was wrong, or the
	// peer refused this node's.
	ErrWrongKey = errors.New("wrong cluster key (the nodes' --cluster-key differ)")
	// ErrUntrustedPeer: a certificate did not chain to --cluster-tls-ca,
	// on this side or (as the peer told) on the other.
	ErrUntrustedPeer = errors.New("cluster TLS certificate not trusted (signed by another CA than --cluster-tls-ca?)")
	// ErrHandshakeTimeout: the peer accepted the connection but did not
	// finish the handshake in time: paused, overloaded, or not a Herald
	// node.
	ErrHandshakeTimeout = errors.New("the peer did not finish the inter-node handshake in time (paused or overloaded?)")
	// ErrUnreachable: no connection could be made (refused, no route).
	ErrUnreachable = errors.New("peer unreachable")
	// ErrHandshake: any other failure of the handshake.
	ErrHandshake = errors.New("inter-node handshake failed")
)

// TransportOptions configure a Transport.
type TransportOptions struct {
	// Bind is the Raft address; it must name a host others can reach.
	Bind string
	// Listen, when set, is where to listen instead (a wildcard such as
	// 0.0.0.0:8751 in a container on several networks, where the name in
	// Bind resolves to one of them only); Bind stays what others dial.
	Listen string
	// Key is the cluster key; TLS the operator's certificates. At least
	// one of them.
	Key []byte
	TLS TLSFiles
	// Dial, when set, replaces the TCP dial (see Options.Dial).
	Dial   func(ctx context.Context, addr string) (net.Conn, error)
	Logger *slog.Logger
}

// Transport is a node's one inter-node port: TLS, authenticated, carrying
// Raft and the internal HTTP requests.
type Transport struct {
	ln        net.Listener
	advertise net.Addr
	key       []byte
	server    *tls.Config
	client    *tls.Config
	dial      func(ctx context.Context, addr string) (net.Conn, error)
	log       *slog.Logger
	refusals  *throttle

	raft *connListener
	http *connListener
	// identity is where this node's cluster id is read (identity.go).
	identity atomic.Pointer[func() (raft.Identity, error)]

	closed    chan struct{}
	closeOnce sync.Once
}

// NewTransport listens on opts.Bind.
func NewTransport(opts TransportOptions) (*Transport, error) {
	if len(opts.Key) == 0 && !opts.TLS.set() {
		return nil, ErrNeedKey
	}
	if err := CheckKey(string(opts.Key)); err != nil {
		return nil, err
	}
	server, client, err := tlsConfigs(opts.TLS)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	listen := opts.Bind
	if opts.Listen != "" {
		listen = opts.Listen
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("inter-node listener on %s: %w", listen, err)
	}
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("inter-node listener on %s: not TCP", listen)
	}
	var advertise net.Addr = addr
	if opts.Listen != "" {
		// What others dial is Bind, not where this node listens.
		if advertise, err = net.ResolveTCPAddr("tcp", opts.Bind); err != nil {
			ln.Close()
			return nil, fmt.Errorf("--raft-addr %s: %w", opts.Bind, err)
		}
	}
	if a, _ := advertise.(*net.TCPAddr); a == nil || a.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("--raft-addr must name a host other nodes can reach, not %s", opts.Bind)
	}
	if host, port, err := net.SplitHostPort(opts.Bind); err == nil && host != "" && net.ParseIP(host) == nil && port != "0" {
		// A name (compose's service names, a DNS name) is advertised as
		// given and resolved at each dial: the cluster's membership then
		// outlives the addresses a restart hands out. Advertised as the
		// address it resolved to, a whole cluster brought down and up
		// again on a new network (docker compose down, up) found its
		// voters at addresses no one answered and never elected a leader.
		advertise = namedAddr(net.JoinHostPort(host, port))
	}
	t := &Transport{ln: ln, advertise: advertise, key: opts.Key, server: server, client: client, dial: opts.Dial,
		log: opts.Logger, refusals: newThrottle(time.Minute), closed: make(chan struct{})}
	t.raft = newConnListener(addr)
	t.http = newConnListener(addr)
	go t.acceptLoop()
	return t, nil
}

// namedAddr is a TCP address by host name.
type namedAddr string

func (namedAddr) Network() string  { return "tcp" }
func (a namedAddr) String() string { return string(a) }

// Addr is the address the transport is reached at: as --raft-addr names it
// when that is a host name, else the address it listens on.
func (t *Transport) Addr() string { return t.advertise.String() }

// RaftLayer is the stream layer hashicorp/raft runs over.
func (t *Transport) RaftLayer() hraft.StreamLayer { return raftLayer{t} }

// Close stops accepting connections, of both protocols.
func (t *Transport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		close(t.closed)
		err = t.ln.Close()
		t.raft.Close()
		t.http.Close()
	})
	return err
}

func (t *Transport) acceptLoop() {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Out of file descriptors and the like: back off instead of
			// spinning.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		// One goroutine per handshake: a slow or hostile peer cannot stall
		// the others.
		go t.accept(c)
	}
}

func (t *Transport) accept(raw net.Conn) {
	proto, conn, err := t.acceptHandshake(raw)
	if err != nil {
		raw.Close()
		t.refused(raw.RemoteAddr(), err)
		return
	}
	target := t.http
	if proto == protoRaft {
		target = t.raft
	}
	if !target.deliver(conn) {
		conn.Close()
	}
}

// refused logs why a connection was refused: a wrong key or certificate is
// an operator's error and worth a warning; a peer that hung up is not (a
// port scan, a load balancer's probe).
func (t *Transport) refused(remote net.Addr, err error) {
	switch {
	case errors.Is(err, ErrWrongKey), errors.Is(err, ErrUntrustedPeer), errors.Is(err, ErrHandshakeTimeout),
		errors.Is(err, ErrOtherCluster), errors.Is(err, ErrNoIdentity):
		kind := err.Error()
		for _, e := range []error{ErrWrongKey, ErrUntrustedPeer, ErrHandshakeTimeout, ErrNoIdentity} {
			if errors.Is(err, e) {
				kind = e.Error()
			}
		}
		t.refusals.do(kind, func(n int) {
			t.log.Warn("refused an inter-node connection", "remote", remote.String(), "reason", kind, "times", n)
		})
	default:
		t.log.Debug("inter-node connection ended during the handshake", "remote", remote.String(), "error", err)
	}
}

func (t *Transport) acceptHandshake(raw net.Conn) (byte, net.Conn, error) {
	raw.SetDeadline(time.Now().Add(HandshakeTimeout))
	conn := tls.Server(raw, t.server)
	if err := conn.Handshake(); err != nil {
		return 0, nil, classify(err)
	}
	if len(t.key) > 0 {
		got := make([]byte, proofSize)
		if _, err := io.ReadFull(conn, got); err != nil {
			return 0, nil, classify(err)
		}
		want, err := t.proof(conn, "herald dialer")
		if err != nil {
			return 0, nil, err
		}
		if !hmac.Equal(got, want) {
			// Close without a word: anything sent now would answer a
			// key guess.
			return 0, nil, ErrWrongKey
		}
		mine, err := t.proof(conn, "herald acceptor")
		if err != nil {
			return 0, nil, err
		}
		if _, err := conn.Write(mine); err != nil {
			return 0, nil, classify(err)
		}
	} else if _, err := conn.Write([]byte{ackNoKey}); err != nil {
		return 0, nil, classify(err)
	}
	var proto [1]byte
	if _, err := io.ReadFull(conn, proto[:]); err != nil {
		return 0, nil, classify(err)
	}
	switch proto[0] {
	case protoHTTP:
	case protoRaft:
		if err := t.checkPlainRaft(); err != nil {
			return 0, nil, err
		}
	case protoRaftID:
		if err := t.checkIdentity(conn); err != nil {
			return 0, nil, classify(err)
		}
		proto[0] = protoRaft
	default:
		return 0, nil, fmt.Errorf("%w: unknown protocol %q", ErrHandshake, proto[0])
	}
	raw.SetDeadline(time.Time{})
	return proto[0], conn, nil
}

// Dial opens an authenticated connection to the transport at addr and
// chooses proto on it.
func (t *Transport) Dial(ctx context.Context, addr string, proto byte) (net.Conn, error) {
	select {
	case <-t.closed:
		return nil, net.ErrClosed
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	var raw net.Conn
	var err error
	if t.dial != nil {
		raw, err = t.dial(ctx, addr)
	} else {
		raw, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, addr, err)
	}
	conn, err := t.dialHandshake(ctx, raw, proto)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return conn, nil
}

func (t *Transport) dialHandshake(ctx context.Context, raw net.Conn, proto byte) (net.Conn, error) {
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	defer stop()
	conn := tls.Client(raw, t.client)
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, classify(err)
	}
	if len(t.key) > 0 {
		mine, err := t.proof(conn, "herald dialer")
		if err != nil {
			return nil, err
		}
		if _, err := conn.Write(mine); err != nil {
			return nil, classify(err)
		}
		got := make([]byte, proofSize)
		if _, err := io.ReadFull(conn, got); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				// The acceptor hangs up without a word only when our
				// proof failed.
				return nil, ErrWrongKey
			}
			return nil, classify(err)
		}
		want, err := t.proof(conn, "herald acceptor")
		if err != nil {
			return nil, err
		}
		if !hmac.Equal(got, want) {
			return nil, ErrWrongKey
		}
	} else {
		var ack [1]byte
		if _, err := io.ReadFull(conn, ack[:]); err != nil || ack[0] != ackNoKey {
			if err == nil {
				err = fmt.Errorf("%w: unexpected answer", ErrHandshake)
			}
			return nil, classify(err)
		}
	}
	var err error
	if proto == protoRaft {
		err = t.offerIdentity(conn)
	} else {
		_, err = conn.Write([]byte{proto})
	}
	if err != nil {
		return nil, classify(err)
	}
	if ctx.Err() != nil {
		return nil, ErrHandshakeTimeout
	}
	raw.SetDeadline(time.Time{})
	return conn, nil
}

// proof is this side's proof of the key, bound to conn's TLS session; the
// role label keeps one side's proof from being reflected as the other's.
func (t *Transport) proof(conn *tls.Conn, role string) ([]byte, error) {
	cs := conn.ConnectionState()
	ekm, err := cs.ExportKeyingMaterial(ekmLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(role))
	m.Write([]byte{0})
	m.Write(ekm)
	return m.Sum(nil), nil
}

// classify maps a handshake error to the sentinel an operator reads.
func classify(err error) error {
	var ne net.Error
	var op *net.OpError
	switch {
	case errors.Is(err, ErrWrongKey), errors.Is(err, ErrUntrustedPeer), errors.Is(err, ErrHandshakeTimeout),
		errors.Is(err, ErrHandshake), errors.Is(err, ErrOtherCluster), errors.Is(err, ErrNoIdentity):
		return err
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return ErrHandshakeTimeout
	case errors.As(err, &op) && op.Op == "remote error":
		// A TLS alert from the peer: it refused our certificate.
		return fmt.Errorf("%w: %v", ErrUntrustedPeer, err)
	}
	return fmt.Errorf("%w: %v", ErrHandshake, err)
}

// raftLayer is the Transport as hashicorp/raft's StreamLayer. Closing it
// (Raft does when it shuts down) stops only Raft's side.
type raftLayer struct{ t *Transport }

func (l raftLayer) Accept() (net.Conn, error) { return l.t.raft.Accept() }
func (l raftLayer) Close() error              { return l.t.raft.Close() }
func (l raftLayer) Addr() net.Addr            { return l.t.advertise }

func (l raftLayer) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.t.Dial(ctx, string(address), protoRaft)
}

// connListener is a net.Listener of connections the transport accepted and
// authenticated for one protocol.
type connListener struct {
	addr      net.Addr
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// throttle logs a repeated failure the first time, then at most once per
// interval with how many times it happened meanwhile.
type throttle struct {
	every time.Duration
	mu    sync.Mutex
	state map[string]*throttled
}

type throttled struct {
	last  time.Time
	count int
}

func newThrottle(every time.Duration) *throttle {
	return &throttle{every: every, state: map[string]*throttled{}}
}

// do calls log with the count of occurrences since the last call, when it
// is the first occurrence of kind or the interval has passed.
func (t *throttle) do(kind string, log func(times int)) {
	t.mu.Lock()
	s, ok := t.state[kind]
	if !ok {
		s = &throttled{}
		t.state[kind] = s
	}
	s.count++
	now := time.Now()
	if ok && now.Sub(s.last) < t.every {
		t.mu.Unlock()
		return
	}
	n := s.count
	s.last, s.count = now, 0
	t.mu.Unlock()
	log(n)
}
