package raft

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
const RulesLevel = 1

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

// setRules raises the level to c.Level; it never lowers it. The result is
// the level now in force.
func (t *tx) setRules(c *Command) Result {
	level := max(t.rules(), c.Level)
	t.set([]byte(keyRules), putUint64(uint64(level)))
	return ok(level)
}

// Rules is the cluster's rules level as this node has applied it.
func (s *Store) Rules() (int, error) {
	v, found, err := s.getString([]byte(keyRules))
	if err != nil || !found {
		return 0, err
	}
	return int(getUint64([]byte(v))), nil
}
