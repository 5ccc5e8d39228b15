package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/freeport"
	"github.com/herald-notify/herald/internal/syncbuf"
	"github.com/herald-notify/herald/internal/testcerts"
)

const testKey = "transport-test-key-0123456789abcdef"

func newTestTransport(t *testing.T, key string, files TLSFiles, logs io.Writer) *Transport {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	tr, err := NewTransport(TransportOptions{Bind: "127.0.0.1:0", Key: []byte(key), TLS: files,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// roundTrip checks that a connection from one transport reaches the other's
// HTTP side and carries bytes both ways.
func roundTrip(t *testing.T, from, to *Transport) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := to.http.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := from.Dial(ctx, to.Addr(), protoHTTP)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	var s net.Conn
	select {
	case s = <-accepted:
	case <-ctx.Done():
		t.Fatal("the acceptor never handed over the connection")
	}
	defer s.Close()
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	s.Write([]byte("pong"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// A connection without the key gets through TLS (anyone may) and then
// receives not one byte: the acceptor checks the dialer's proof first and
// hangs up when it fails, so nothing on the wire helps test key guesses
// offline. The acceptor logs the wrong key as such.
func TestConnectionWithoutTheKeyLearnsNothing(t *testing.T) {
	logs := &syncbuf.Buffer{}
	a := newTestTransport(t, testKey, TLSFiles{}, logs)
	for _, sent := range []int{proofSize, 3} {
		raw, err := net.Dial("tcp", a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		raw.SetDeadline(time.Now().Add(2 * HandshakeTimeout))
		c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if err := c.Handshake(); err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		guess := make([]byte, sent)
		rand.Read(guess)
		if _, err := c.Write(guess); err != nil {
			t.Fatal(err)
		}
		if sent < proofSize {
			// A short proof is finished by closing our side.
			raw.(*net.TCPConn).CloseWrite()
		}
		got, err := io.ReadAll(c)
		if len(got) != 0 {
			t.Errorf("after a %d-byte guess the acceptor sent %d bytes: %x", sent, len(got), got)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("after a %d-byte guess the acceptor kept the connection open", sent)
		}
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "wrong cluster key") {
		if time.Now().After(deadline) {
			t.Fatalf("the acceptor did not log the wrong key; logs:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A node with another key is told its key is wrong, not that the peer
	// is slow or down.
	b := newTestTransport(t, "another-key-of-the-same-length-012345", TLSFiles{}, nil)
	if _, err := b.Dial(context.Background(), a.Addr(), protoRaft); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("dial with another key: %v, want ErrWrongKey", err)
	}
	if _, err := a.Dial(context.Background(), b.Addr(), protoRaft); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("dial to a node with another key: %v, want ErrWrongKey", err)
	}
}

// Two nodes with the same key show unrelated certificates (made at random,
// not from the key), and connect to each other.
func TestSameKeyUnrelatedCertificates(t *testing.T) {
	a := newTestTransport(t, testKey, TLSFiles{}, nil)
	b := newTestTransport(t, testKey, TLSFiles{}, nil)
	cert := func(tr *Transport) []byte {
		c, err := tls.Dial("tcp", tr.Addr(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo
	}
	if ka, kb := cert(a), cert(b); bytes.Equal(ka, kb) || len(ka) == 0 {
		t.Fatal("two nodes with the same key present the same public key")
	}
	if bytes.Contains(cert(a), []byte(testKey)) {
		t.Fatal("the certificate holds the key")
	}
	roundTrip(t, a, b)
	roundTrip(t, b, a)
}

// Only TLS 1.3 is spoken.
func TestOnlyTLS13(t *testing.T) {
	a := newTestTransport(t, testKey, TLSFiles{}, nil)
	c, err := tls.Dial("tcp", a.Addr(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.2 client completed a handshake")
	}
}

// With the operator's certificates nodes signed by the CA connect without
// any key; a node with a certificate from another CA is refused both ways,
// and told why.
func TestOperatorCertificates(t *testing.T) {
	ca, other := testcerts.NewCA(t, "herald"), testcerts.NewCA(t, "stranger")
	files := func(f testcerts.Files) TLSFiles { return TLSFiles{Cert: f.Cert, Key: f.Key, CA: f.CA} }
	n1 := newTestTransport(t, "", files(ca.Node(t, "n1")), nil)
	n2 := newTestTransport(t, "", files(ca.Node(t, "n2")), nil)
	roundTrip(t, n2, n1)
	roundTrip(t, n1, n2)

	// The stranger trusts the cluster's CA, so only the cluster's check of
	// the stranger's certificate can refuse it.
	f := files(other.Node(t, "n3"))
	f.CA = ca.File
	stranger := newTestTransport(t, "", f, nil)
	if _, err := stranger.Dial(context.Background(), n1.Addr(), protoHTTP); !errors.Is(err, ErrUntrustedPeer) {
		t.Fatalf("a stranger dialing a node: %v, want ErrUntrustedPeer", err)
	}
	if _, err := n1.Dial(context.Background(), stranger.Addr(), protoHTTP); !errors.Is(err, ErrUntrustedPeer) {
		t.Fatalf("a node dialing a stranger: %v, want ErrUntrustedPeer", err)
	}

	// Certificates and a key together: both must check out.
	k1 := newTestTransport(t, testKey, files(ca.Node(t, "k1")), nil)
	k2 := newTestTransport(t, testKey, files(ca.Node(t, "k2")), nil)
	roundTrip(t, k1, k2)
	wrong := newTestTransport(t, "another-key-of-the-same-length-012345", files(ca.Node(t, "k3")), nil)
	if _, err := wrong.Dial(context.Background(), k1.Addr(), protoHTTP); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("the right certificate with the wrong key: %v, want ErrWrongKey", err)
	}

	if _, err := NewTransport(TransportOptions{Bind: "127.0.0.1:0", TLS: TLSFiles{Cert: f.Cert}}); err == nil ||
		!strings.Contains(err.Error(), "--cluster-tls-ca") {
		t.Errorf("a certificate without its key and CA: %v", err)
	}
}

// A short key is refused with a message that says how to make a good one.
func TestShortKeyRefused(t *testing.T) {
	_, err := NewTransport(TransportOptions{Bind: "127.0.0.1:0", Key: []byte("short")})
	if err == nil || !strings.Contains(err.Error(), "herald cluster key") || !strings.Contains(err.Error(), "32") {
		t.Fatalf("a 5-character key: %v", err)
	}
	if err := CheckKey(strings.Repeat("k", MinKeyLength)); err != nil {
		t.Fatalf("a %d-character key: %v", MinKeyLength, err)
	}
}

// A peer that accepts the connection but never answers (a paused process)
// is told apart from a refused connection and from a wrong key.
func TestFailuresAreToldApart(t *testing.T) {
	a := newTestTransport(t, testKey, TLSFiles{}, nil)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := a.Dial(ctx, silent.Addr().String(), protoRaft); !errors.Is(err, ErrHandshakeTimeout) {
		t.Errorf("a silent peer: %v, want ErrHandshakeTimeout", err)
	}
	closed := silent.Addr().String()
	silent.Close()
	if _, err := a.Dial(context.Background(), closed, protoRaft); !errors.Is(err, ErrUnreachable) {
		t.Errorf("a closed port: %v, want ErrUnreachable", err)
	}
}

// An internal request names the node it is meant for; another node refuses
// it without acting on it, so a connection steered elsewhere is useless.
func TestRequestMeantForAnotherNodeIsRefused(t *testing.T) {
	a := newTestTransport(t, testKey, TLSFiles{}, nil)
	b := newTestTransport(t, testKey, TLSFiles{}, nil)
	var mu sync.Mutex
	served := 0
	srv := &http.Server{Handler: bindTarget("n1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		served++
		mu.Unlock()
	}))}
	go srv.Serve(a.http)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return b.Dial(ctx, addr, protoHTTP)
	}}}
	do := func(target string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/internal/cluster/propose", strings.NewReader("{}"))
		if target != "" {
			req.Header.Set(targetHeader, target)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, target := range []string{"n2", ""} {
		if got := do(target); got != http.StatusMisdirectedRequest {
			t.Errorf("a request for %q at n1: %d, want 421", target, got)
		}
	}
	if got := do("n1"); got != http.StatusOK {
		t.Errorf("a request for n1 at n1: %d", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if served != 1 {
		t.Errorf("the handler ran %d times, want once", served)
	}
}

// A --raft-addr that names a host is advertised by that name, which other
// nodes resolve at each dial; an address by IP is advertised as bound.
func TestTransportAdvertisesAHostNameAsGiven(t *testing.T) {
	port := freePort(t)
	named, err := NewTransport(TransportOptions{Bind: net.JoinHostPort("localhost", port), Key: []byte(testKey),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer named.Close()
	if got, want := named.Addr(), "localhost:"+port; got != want {
		t.Errorf("advertised %q, want %q", got, want)
	}
	if got := named.RaftLayer().Addr().String(); got != "localhost:"+port {
		t.Errorf("Raft's layer advertises %q", got)
	}
	byIP := newTestTransport(t, testKey, TLSFiles{}, nil)
	if host, _, _ := net.SplitHostPort(byIP.Addr()); host != "127.0.0.1" {
		t.Errorf("advertised %q for 127.0.0.1:0", byIP.Addr())
	}
	roundTrip(t, byIP, named)
}

// --raft-bind-addr: a node listens on every interface (a container on
// several networks, where its name resolves to one of them only: found by
// an operator's review) and still advertises --raft-addr, which the others
// dial. A wildcard --raft-addr stays refused: no one could dial it.
func TestTransportListensWhereToldAndAdvertisesItsAddress(t *testing.T) {
	port := freePort(t)
	wide, err := NewTransport(TransportOptions{Bind: net.JoinHostPort("localhost", port), Listen: net.JoinHostPort("0.0.0.0", port),
		Key: []byte(testKey), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer wide.Close()
	if got, want := wide.Addr(), "localhost:"+port; got != want {
		t.Errorf("advertised %q, want %q", got, want)
	}
	if got := wide.ln.Addr().(*net.TCPAddr); !got.IP.IsUnspecified() {
		t.Errorf("listening on %v, want every interface", got)
	}
	roundTrip(t, newTestTransport(t, testKey, TLSFiles{}, nil), wide)

	if _, err := NewTransport(TransportOptions{Bind: "0.0.0.0:0", Listen: "127.0.0.1:0", Key: []byte(testKey)}); err == nil ||
		!strings.Contains(err.Error(), "must name a host other nodes can reach") {
		t.Errorf("a wildcard --raft-addr with a bind address: %v, want the refusal", err)
	}
}

// freePort is a loopback port that was free when asked (freeport.Addr).
func freePort(t *testing.T) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeport.Addr(t))
	return port
}
