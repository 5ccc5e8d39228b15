package cluster

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// A cluster's identity (raft/rules.go, keyCluster) keeps nodes of different
// histories apart. A node that kept its data through a restore of the others
// (herald restore starts a new history) holds the old cluster's log and
// state at the same addresses: let in, it would win elections with its
// longer log and write the replaced history over the restored one, or, made
// a member, skip the new entries up to its old applied index and serve
// diverging data. The cluster key does not tell them apart: it is the same.
//
// So a node that has an identity opens Raft connections with protoRaftID
// instead of protoRaft and names its cluster after the protocol byte:
//
//	dialer → acceptor: 'I', len (1 byte), id, flags (1 byte)
//	acceptor → dialer: identityOK, or identityOther, len, its own id
//
// and the acceptor refuses it when both have an identity and they differ.
// The flag identityRestored says the dialer's cluster began with a restore:
// every member of it names the id, so an acceptor that names none but has
// Raft state holds an older history (its old directory in a member's place)
// and refuses; one without state is a new member, waiting for its snapshot.
// A node without one (new, or of a cluster below raft.IdentityLevel, whose
// every member may not know this protocol yet) dials with protoRaft as
// before. A node of a cluster that began with a restore refuses that: its
// identity was there from the start, so every member names it, and a peer
// that names none holds a history from before identities (a node left out
// of a restore of a cluster that never had one, or the rest of that cluster
// still running), whose longer log or higher term would win the votes of
// restored nodes without a configuration, or make them follow it. A
// cluster that got its identity at the raise takes plain connections: a
// member that has not applied the raise yet must still be heard.

const (
	protoRaftID   byte = 'I'
	identityOK    byte = 0x01
	identityOther byte = 0x02
	// identityRestored is the flag of a dialer whose cluster began with
	// a restore.
	identityRestored byte = 0x01
)

// ErrOtherCluster: the peer holds the data of another cluster than this
// node's.
var ErrOtherCluster = errors.New("the peer holds another cluster's data (a node left out of a restore, " +
	"or a data directory from elsewhere): empty that node's --data-dir, or restore it from the same backup, and start it again")

// ErrNoIdentity: the peer names no cluster, and this node's cluster began
// with a restore.
var ErrNoIdentity = errors.New("the peer names no cluster, and this node was restored from a backup: " +
	"a node with data from before its cluster had an identity, such as a node left out of the restore " +
	"(restore the same backup into it and start it again), or an older Herald (upgrade it)")

// SetIdentity gives the transport the source of this node's cluster
// identity (raft.Store.Identity), once the store is open. Until then it
// neither takes nor dials Raft connections: it cannot tell whether they
// belong.
func (t *Transport) SetIdentity(id func() (raft.Identity, error)) {
	t.identity.Store(&id)
}

// ownIdentity is this node's cluster identity; an error until the store is
// open, or when it cannot be read.
func (t *Transport) ownIdentity() (raft.Identity, error) {
	f := t.identity.Load()
	if f == nil {
		return raft.Identity{}, errors.New("the node's state is not open yet")
	}
	return (*f)()
}

// checkPlainRaft is the acceptor's side of protoRaft: refused by a node of
// a cluster that began with a restore.
func (t *Transport) checkPlainRaft() error {
	id, err := t.ownIdentity()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if id.Restored {
		return ErrNoIdentity
	}
	return nil
}

// offerIdentity is the dialer's side, after the proofs: it chooses the Raft
// protocol and, when this node has an identity, has the acceptor check it.
func (t *Transport) offerIdentity(conn net.Conn) error {
	own, err := t.ownIdentity()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	mine := own.ID
	if mine == "" {
		_, err := conn.Write([]byte{protoRaft})
		return err
	}
	if len(mine) > 255 {
		return fmt.Errorf("%w: a cluster id of %d bytes", ErrHandshake, len(mine))
	}
	var flags byte
	if own.Restored {
		flags |= identityRestored
	}
	if _, err := conn.Write(append(append([]byte{protoRaftID, byte(len(mine))}, mine...), flags)); err != nil {
		return err
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return err
	}
	switch answer[0] {
	case identityOK:
		return nil
	case identityOther:
		theirs, err := readIdentity(conn)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w (its cluster %s, this node's %s)", ErrOtherCluster, theirs, mine)
	}
	return fmt.Errorf("%w: unexpected answer %#x to the cluster's identity", ErrHandshake, answer[0])
}

// checkIdentity is the acceptor's side of protoRaftID.
func (t *Transport) checkIdentity(conn net.Conn) error {
	theirs, err := readIdentity(conn)
	if err != nil {
		return err
	}
	var flags [1]byte
	if _, err := io.ReadFull(conn, flags[:]); err != nil {
		return err
	}
	own, err := t.ownIdentity()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if mine := own.ID; mine != "" && theirs != mine || mine == "" && own.Member && flags[0]&identityRestored != 0 {
		if mine == "" {
			mine = "none, with Raft state from before"
		}
		conn.Write(append([]byte{identityOther, byte(len(mine))}, mine...))
		return fmt.Errorf("%w (its cluster %s, this node's %s)", ErrOtherCluster, theirs, mine)
	}
	_, err = conn.Write([]byte{identityOK})
	return err
}

// otherClusterError is the refusal of a join by a node that holds another
// cluster's data; its target marks it as one that asking again cannot
// change (refusedForGood).
func otherClusterError(node, theirs, own string) error {
	return resource.Invalid(targetClusterID, "node %s holds the data of another cluster (%s; this cluster is %s): "+
		"a node left out of a restore, one removed before this cluster had an identity, or a data directory from "+
		"elsewhere. Empty its --data-dir, or restore it from the same backup as the others, and start it again",
		node, theirs, own)
}

const targetClusterID = "clusterId"

func readIdentity(r io.Reader) (string, error) {
	var n [1]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", err
	}
	b := make([]byte, n[0])
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b), nil
}
