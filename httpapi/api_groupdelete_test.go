package httpapi_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// metricSum is the value of an unlabelled metric of the node.
func (n *hnode) metricSum(t *testing.T, name string) float64 {
	t.Helper()
	body := n.get(t, testnode.MetricsToken, "/metrics").expect(t, http.StatusOK).Body
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s %q: %v", name, v, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// A group delete with ConsistencyLevel: strong waits for the leader's
// commit index once: the strong read's barrier already covers every send
// answered before the request, which is what the delete's own barrier is
// for. It ran both.
func TestStrongGroupDeleteRunsOneBarrier(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, func(c *node.Config) { c.Limits.AppRate = 0 })
	id := e.sendOK(t, e.tasks, e.aliceTasks, visual("drop", "groupName", "drop"))
	before := e.metricSum(t, "herald_read_barriers_total")
	e.del(t, e.tasks.Token, "/v1.0/me/notifications?groupName=drop", "X-UNS-ID", e.aliceTasks,
		"ConsistencyLevel", "strong").expect(t, http.StatusNoContent)
	if got := e.metricSum(t, "herald_read_barriers_total") - before; got != 1 {
		t.Errorf("a strong group delete asked %v read barriers; want 1", got)
	}
	if st := str(e.get(t, e.alice.Token, "/v1.0/me/notifications/"+id).expect(t, http.StatusOK).obj(t), "status"); st != "deleted" {
		t.Errorf("the group's notification is %q after the delete", st)
	}
	before = e.metricSum(t, "herald_read_barriers_total")
	e.del(t, e.tasks.Token, "/v1.0/me/notifications?groupName=other", "X-UNS-ID", e.aliceTasks).expect(t, http.StatusNoContent)
	if got := e.metricSum(t, "herald_read_barriers_total") - before; got != 1 {
		t.Errorf("a group delete asked %v read barriers; want its own 1", got)
	}
}

// commandsProposed is how many commands the node's leader has put in the
// Raft log (herald_raft_batch_commands_sum).
func (n *hnode) commandsProposed(t *testing.T) float64 {
	t.Helper()
	return n.metricSum(t, "herald_raft_batch_commands_sum")
}

// An application's DELETE ?groupName= must not make the state machine read
// every notification of the user. The FSM applies every write of the
// cluster, one after another, on every node: a group delete applied there
// read and decoded each of the user's notifications, tombstones included,
// and an application that repeated it (within its rate limit) for a user
// of 10,000 notifications held every other write, an admin's sign-in
// included, for seconds. The ids are found on the request's side now, and
// only the deletes of what matches reach the log: a group that matches
// nothing costs the log nothing, and one of k notifications k deletes.
func TestGroupDeleteDoesNotScanTheUserInTheStateMachine(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, func(c *node.Config) { c.Limits.AppRate = 0 })
	hdr := []string{"X-UNS-ID", e.aliceTasks}
	const others = 200
	var wg sync.WaitGroup
	errs := make(chan error, others)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < others; i += 8 {
				r := e.send(t, e.tasks, e.aliceTasks, visual(fmt.Sprintf("keep %d", i), "groupName", "keep"))
				if r.Status != http.StatusCreated {
					errs <- fmt.Errorf("%s", r)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	drop := []string{
		e.sendOK(t, e.tasks, e.aliceTasks, visual("drop 1", "groupName", "drop")),
		e.sendOK(t, e.tasks, e.aliceTasks, visual("drop 2", "groupName", "drop")),
	}
	mailDrop := e.sendOK(t, e.mail, e.aliceMail, visual("mail's", "groupName", "drop"))

	const deletes = 40
	before := e.commandsProposed(t)
	for range deletes {
		e.del(t, e.tasks.Token, "/v1.0/me/notifications?groupName=none", hdr...).expect(t, http.StatusNoContent)
	}
	// The node's purge proposes a command every 200 ms meanwhile.
	if got := e.commandsProposed(t) - before; got >= deletes/2 {
		t.Errorf("%d group deletes that matched nothing put %v commands in the Raft log; want none of their own", deletes, got)
	}

	e.del(t, e.tasks.Token, "/v1.0/me/notifications?groupName=drop", hdr...).expect(t, http.StatusNoContent)
	for _, id := range drop {
		if st := str(e.get(t, e.alice.Token, "/v1.0/me/notifications/"+id).expect(t, http.StatusOK).obj(t), "status"); st != "deleted" {
			t.Errorf("notification %s of the deleted group is %q", id, st)
		}
	}
	if st := str(e.get(t, e.alice.Token, "/v1.0/me/notifications/"+mailDrop).expect(t, http.StatusOK).obj(t), "status"); st != "active" {
		t.Errorf("another application's notification of the same group name is %q, want active", st)
	}
	if got := len(e.get(t, e.tasks.Token, "/v1.0/me/notifications?groupName=keep&$top=1000", hdr...).expect(t, http.StatusOK).value(t)); got != others {
		t.Errorf("%d notifications of the other group left, want %d", got, others)
	}
}
