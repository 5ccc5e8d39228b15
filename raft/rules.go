package raft

import "github.com/dgraph-io/badger/v4"

// RulesLevel is the newest set of rules this binary's FSM applies.
//
// Every node applies every entry with its own binary. A change in what an
// entry writes may therefore apply only once every node knows it: replicas
// that applied one entry under different rules would hold different state
// for good (the change log numbered differently from there on, a session
// ended on one node and kept on another). So a new rule waits for a level:
// the leader raises the cluster's level through the log once every member
// says it knows it (cluster/rules.go), and the FSM reads the level from the
// state it applies to, so that every replica applies an entry under the
// same rules, however its nodes were upgraded.
//
// Level 1 (5 December 2026): a notification past its expiry is gone to a
// patch and to a send with its appNotificationId (apply.go, expiredBy), and
// a user holds at most MaxSessionsPerUser sessions (audit.go).
//
// Level 2 (6 December 2026): the cluster has an identity (keyCluster), set
// by the raise to level 2 and by a restore; nodes refuse Raft connections
// and joins from a node that holds another cluster's data (cluster/identity.go).
// A rotated refresh token works again for RefreshReuseGrace, until a token
// of its rotation is used (apply.go).
//
// Level 3 (6 December 2026): a webhook's failing clock measures one outage:
// each failure records FailingUntil, and a failure the engine marks
// FailingAgain starts the clock again (delivery.go, trackFailing). Renewing
// an expired subscription counts toward the active quota as creating one
// does, and a user holds at most HeldSubsFactor times that quota of
// subscriptions, expired and disabled ones included (apply.go, createSub and
// updateSub).
//
// Level 4 (6 December 2026): a deleted notification's tombstone holds no
// content, no payload and no fallbackPolicy (apply.go, markDeleted): it
// stays until the notification expires, up to 30 days, outside every
// quota, and a sender that deletes what it sends, within its rate limit,
// kept a copy of each notification on the disk for that long. The change
// log keeps its copy for the log's retention, as before, so that a replay
// shows each change as it was.
//
// Level 5 (6 December 2026): each token of a sign-in session is indexed by
// its session (st/, tokenindex.go), so that ending a session reads only that
// session's tokens. It read every token of its user, on the goroutine that
// applies every write: with 40,000 tokens (a client refreshing ten times a
// second holds one access token for each refresh of the hour) a sign-out
// held the cluster's writes for 0.37 s, and each sign-in past
// MaxSessionsPerUser for 0.5 s. The expiry index of a session's token names
// the session too, for the purge. Tokens issued before the raise are found
// by one read of their user's tokens, at the first session of the user
// ended under the level, until the purge has taken the last of them.
const RulesLevel = 5

// TokenSessionIndexLevel is the rules level from which tokens are indexed
// by session.
const TokenSessionIndexLevel = 5

// ContentlessTombstoneLevel is the rules level from which a deleted
// notification keeps no content.
const ContentlessTombstoneLevel = 4

// IdentityLevel is the rules level from which a cluster has an identity.
const IdentityLevel = 2

// keyRules holds the cluster's rules level; absent is 0.
const keyRules = "m/rules"

// rules is the level the entries of this transaction apply under.
func (t *tx) rules() int {
	v, ok := t.get([]byte(keyRules))
	if !ok {
		return 0
	}
	return int(getUint64(v))
}

// keyCluster holds the cluster's identity: an id made once for its history,
// when the cluster first reaches IdentityLevel or when a backup is restored.
// Replicas hold it with the rest of the state, so snapshots carry it to new
// members.
const keyCluster = "m/cluster"

// keyRestored marks state that a restore began (Restore): its identity was
// there from the start, so every member holds it, and a node that names
// none is not one of them (cluster/identity.go).
const keyRestored = "m/restored"

// setRules raises the level to c.Level; it never lowers it. The result is
// the level now in force. The raise to IdentityLevel carries the cluster's
// id in c.ID; a cluster that has one keeps it.
func (t *tx) setRules(c *Command) Result {
	was := t.rules()
	level := max(was, c.Level)
	t.set([]byte(keyRules), putUint64(uint64(level)))
	if was < TokenSessionIndexLevel && level >= TokenSessionIndexLevel {
		t.startTokenIndex()
	}
	if level >= IdentityLevel && c.ID != "" && !t.exists([]byte(keyCluster)) {
		t.set([]byte(keyCluster), []byte(c.ID))
	}
	return ok(level)
}

// Rules is the cluster's rules level as this node has applied it.
func (s *Store) Rules() (int, error) { return rulesIn(s.db) }

// rulesIn is the rules level that db holds; absent is 0.
func rulesIn(db *badger.DB) (int, error) {
	var level int
	err := db.View(func(txn *badger.Txn) error {
		v, found, err := getValue(txn, []byte(keyRules))
		if found {
			level = int(getUint64(v))
		}
		return err
	})
	return level, err
}

// ClusterID is the identity of the cluster whose state this node holds;
// empty until the cluster reaches IdentityLevel.
func (s *Store) ClusterID() (string, error) {
	id, _, err := s.getString([]byte(keyCluster))
	return id, err
}

// Identity is the cluster's identity, for the transport's checks
// (cluster/identity.go), and whether the cluster began with a restore. While
// a snapshot replaces the state, which reads as empty until it has loaded,
// it is what it was before, and so after a load that failed (FSM.lost):
// read from what is left, it would refuse the leader's next send.
func (s *Store) Identity() (Identity, error) {
	if s.fsm != nil && (s.fsm.restoring.Load() || s.fsm.lost.Load()) {
		if last := s.identity.Load(); last != nil {
			return *last, nil
		}
	}
	var id Identity
	id.Member = s.HasState()
	err := s.db.View(func(txn *badger.Txn) error {
		b, _, err := getValue(txn, []byte(keyCluster))
		if err != nil {
			return err
		}
		id.ID = string(b)
		_, id.Restored, err = getValue(txn, []byte(keyRestored))
		return err
	})
	if s.fsm != nil && (s.fsm.restoring.Load() || s.fsm.lost.Load()) {
		// The load began while this read ran.
		if last := s.identity.Load(); last != nil {
			return *last, nil
		}
	} else if err == nil {
		s.identity.Store(&id)
	}
	return id, err
}

// Identity is what Store.Identity reads.
type Identity struct {
	// ID is the cluster's id, empty below IdentityLevel.
	ID string
	// Restored: the cluster began with a restore.
	Restored bool
	// Member: this node has Raft state (a configuration).
	Member bool
}
