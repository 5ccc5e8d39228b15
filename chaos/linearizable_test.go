//go:build linux

package chaos

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability check (docs/faults.md, check 5). The model is one
// register per notification: the notification an appNotificationId first
// created, with its content, read state, action state and deletion. Writes
// are every put, patch and delete; reads are the strong GETs by id and the
// strong feed listings, each listing projected onto every key it observes
// (a linearizable snapshot of the feed is a linearizable read of each
// notification in it).

// regState is one notification as the model holds it. id is "" before the
// first create, "?" after a create whose answer was lost.
type regState struct {
	id, content, read, action string
	deleted                   bool
}

// regInput is one operation on the register.
type regInput struct {
	kind         string
	content      string // put
	read, action string // patch
	id           string // get and list: the id read
	opID         int
	desc         string
	fromList     bool
}

// regOutput is what the operation answered. unknown: no answer, the
// operation may or may not have taken effect, at any time after its call.
type regOutput struct {
	unknown bool
	status  int
	n       *notif // get, list (nil: absent), put, patch
}

func idMatches(state, got string) bool { return state == "?" || state == got }

func regStep(st regState, in regInput, out regOutput) (bool, regState) {
	switch in.kind {
	case opPut:
		if out.unknown {
			if st.id == "" {
				st.id = "?"
			}
			if st.deleted {
				return true, st // it made a new notification, not this one
			}
			st.content, st.read, st.action = in.content, "unread", "noInteraction"
			return true, st
		}
		if out.n == nil || out.n.Payload.RawContent != in.content {
			return false, st
		}
		switch {
		case st.id == "":
			return true, regState{id: out.n.ID, content: in.content, read: "unread", action: "noInteraction"}
		case st.deleted:
			return out.n.ID != st.id, st
		case idMatches(st.id, out.n.ID):
			return true, regState{id: out.n.ID, content: in.content, read: "unread", action: "noInteraction"}
		}
		return false, st
	case opPatch:
		live := st.id != "" && !st.deleted
		if out.unknown {
			if live {
				st.read, st.action = in.read, in.action
			}
			return true, st
		}
		if out.status == 404 {
			return !live, st
		}
		if !live || out.n == nil || out.n.ReadState != in.read || out.n.UserActionState != in.action || out.n.Payload.RawContent != st.content {
			return false, st
		}
		st.read, st.action = in.read, in.action
		return true, st
	case opDelete:
		if out.unknown || out.status == 204 {
			if st.id != "" {
				st.deleted = true
			}
			return out.unknown || st.id != "", st
		}
		return out.status == 404 && st.id == "", st
	case opGet, opList:
		if out.status == 404 || (in.kind == opList && out.n == nil) {
			// Absent: never created, or (a GET of) a deleted one.
			return st.id == "" || (st.deleted && in.kind == opGet), st
		}
		n := out.n
		if n == nil || st.id == "" || !idMatches(st.id, n.ID) {
			return false, st
		}
		want := "active"
		if st.deleted {
			want = "deleted"
		}
		// From rules level 4 a tombstone keeps no content (raft/apply.go,
		// markDeleted); a cluster reads one written before its raise with
		// the content it had.
		content := n.Payload.RawContent == st.content || st.deleted && n.Payload.RawContent == ""
		ok := n.Status == want && content && n.ReadState == st.read && n.UserActionState == st.action
		if ok && st.id == "?" {
			st.id = n.ID
		}
		return ok, st
	}
	return false, st
}

var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, o := range history {
			k := o.Metadata.(string)
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], o)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return regState{} },
	Step: func(state, input, output any) (bool, any) {
		return regStep(state.(regState), input.(regInput), output.(regOutput))
	},
	Equal: func(a, b any) bool { return a.(regState) == b.(regState) },
	DescribeOperation: func(input, output any) string {
		return fmt.Sprintf("%s -> %+v", input.(regInput).desc, output)
	},
}

// linearizabilityHistory turns the recorded history into porcupine's, per
// key. Reads without an answer observed nothing and are left out; writes
// without one stay pending to the end of time.
func linearizabilityHistory(ops []*op, primary map[string]string) []porcupine.Operation {
	var out []porcupine.Operation
	add := func(o *op, key string, in regInput, res regOutput) {
		ret := o.End.UnixNano()
		if res.unknown {
			ret = math.MaxInt64
		}
		in.opID, in.desc = o.ID, o.String()
		out = append(out, porcupine.Operation{ClientId: max(o.Client, 0), Input: in, Call: o.Start.UnixNano(), Output: res, Return: ret,
			Metadata: fmt.Sprintf("%d/%s", o.User, key)})
	}
	for _, o := range ops {
		if o.NotApplied {
			// It did not happen (the server said so, or it never left):
			// if it did all the same, the reads catch it.
			continue
		}
		res := regOutput{unknown: !o.definite(), status: o.Status, n: o.Result}
		switch o.Kind {
		case opPut:
			add(o, o.Key, regInput{kind: opPut, content: o.Content}, res)
		case opPatch:
			add(o, o.Key, regInput{kind: opPatch, read: o.Read, action: o.Action}, res)
		case opDelete:
			add(o, o.Key, regInput{kind: opDelete}, res)
		case opGet:
			if res.unknown || primary[fmt.Sprintf("%d/%s", o.User, o.Key)] != o.NID {
				continue // unanswered, or a read of a later notification of the key
			}
			add(o, o.Key, regInput{kind: opGet, id: o.NID}, res)
		case opList:
			if !o.acked() {
				continue
			}
			seen := map[string]bool{}
			for _, n := range o.List {
				seen[n.AppNotificationID] = true
			}
			keys := append([]string(nil), o.ListKeys...)
			for k := range seen {
				keys = append(keys, k)
			}
			done := map[string]bool{}
			for _, k := range keys {
				pid, ok := primary[fmt.Sprintf("%d/%s", o.User, k)]
				if done[k] || !ok {
					continue
				}
				done[k] = true
				var found *notif
				for i := range o.List {
					if o.List[i].ID == pid {
						found = &o.List[i]
					}
				}
				in := regInput{kind: opList, id: pid, fromList: true}
				add(o, k, in, regOutput{status: 200, n: found})
				seen := "absent"
				if found != nil {
					seen = found.state()
				}
				out[len(out)-1].Input = regInput{kind: opList, id: pid, fromList: true, opID: o.ID, desc: o.String() + " saw " + pid + " " + seen}
			}
		}
	}
	return out
}

// checkLinearizable runs porcupine; it reports Unknown when it ran out of
// time, which the caller treats as a failure to prove, not a pass.
func checkLinearizable(ops []*op, primary map[string]string, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo, int) {
	hist := linearizabilityHistory(ops, primary)
	res, info := porcupine.CheckOperationsVerbose(registerModel, hist, timeout)
	return res, info, len(hist)
}
