//go:build linux

package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/internal/faultproxy"
	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// mountTmpfs mounts a small tmpfs on a new directory, so that the disk
// really fills up. Where mounting is not permitted it skips the test, except
// in CI (CI=true), which runs as root and must run it.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs (%v): CI runs as root and must run the full-disk tests", err)
		}
		t.Skipf("cannot mount a tmpfs here (%v); raft's disk guard tests cover the refusal through a free-space seam", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return filepath.Join(dir, "data")
}

// fill writes a file until only leave bytes stay free (or the disk is
// full: tmpfs answers ENOSPC rather than faulting on write(2)).
func fill(t *testing.T, path string, leave uint64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		t.Fatal(err)
	}
	free := st.Bavail * uint64(st.Bsize)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xa5}, 1<<20)
	for n := uint64(0); n+leave < free; n += uint64(len(chunk)) {
		if _, err := f.Write(chunk[:min(uint64(len(chunk)), free-leave-n)]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

// A full data disk refuses writes with 507 quotaLimitReached and nothing
// else: reads, sign-in, /healthz and /readyz keep working, the metrics say
// so, writes resume by themselves once space is freed, and after a restart
// every acknowledged write is there exactly once.
func TestFullDiskRefusesWritesAndRecovers(t *testing.T) {
	ctx := context.Background()
	data := mountTmpfs(t, "96m")
	cfg := testnode.Config(t, data)
	cfg.Limits.AppRate, cfg.Limits.UserRate = 0, 0
	cfg.DiskReserve = "24MiB"
	n := testnode.Start(t, &cfg)

	anon := clientFor(t, n, "")
	tok, err := anon.PasswordToken(ctx, "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	userToken, appToken, unsid := liveSender(t, n, tok.AccessToken, "bob", "tasks.disk.test")
	// No retries: a 507 must reach the test as it reached the client.
	sender, err := client.New(n.URL, client.WithToken(appToken))
	if err != nil {
		t.Fatal(err)
	}
	var acked []string
	send := func(id string) error {
		got, err := sender.Send(ctx, unsid, &client.Notification{AppNotificationID: id, Payload: &client.Payload{RawContent: id}})
		if err == nil {
			if got.AppNotificationID != id {
				t.Fatalf("send %s returned %+v", id, got)
			}
			acked = append(acked, id)
		}
		return err
	}
	for i := range 5 {
		if err := send(fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}

	filler := filepath.Join(filepath.Dir(data), "filler")
	fill(t, filler, 0)
	pollUntil(t, "the node sees its disk full", func() error {
		if !n.Store().DiskSpace().Full {
			return fmt.Errorf("disk space %+v", n.Store().DiskSpace())
		}
		return nil
	})
	err = send("while-full")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusInsufficientStorage || ce.Code != "quotaLimitReached" ||
		!strings.Contains(ce.Message, "disk is full") {
		t.Fatalf("send on a full disk: want 507 quotaLimitReached saying the disk is full, got %v", err)
	}
	bob := clientFor(t, n, userToken)
	if ids, err := appNotificationIds(ctx, bob); err != nil || len(ids) != 5 {
		t.Fatalf("read on a full disk: %v, %v", ids, err)
	}
	if _, err := anon.PasswordToken(ctx, "bob", "bob-password-1"); err != nil {
		t.Fatalf("sign-in on a full disk: %v", err)
	}
	if code := httpGet(t, n.URL+"/healthz", nil); code != http.StatusOK {
		t.Fatalf("/healthz on a full disk: %d", code)
	}
	var ready bytes.Buffer
	if code := httpGet(t, n.URL+"/readyz", &ready); code != http.StatusOK || !strings.Contains(ready.String(), `"disk":"full: `) {
		t.Fatalf("/readyz on a full disk: %d %s", code, ready.String())
	}
	var metrics bytes.Buffer
	resp, err := n.GetMetrics()
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(&metrics, resp.Body)
	resp.Body.Close()
	if !strings.Contains(metrics.String(), "\nherald_disk_full 1\n") || !strings.Contains(metrics.String(), "herald_disk_free_bytes ") {
		t.Fatalf("metrics on a full disk do not say so:\n%s", grepLines(metrics.String(), "herald_disk"))
	}
	// The reserve is exported beside the free space, so that an alert
	// can compare the two (docs/operations.md, "Disk filling").
	if free, reserve := metric(t, n, "herald_disk_free_bytes"), metric(t, n, "herald_disk_reserve_bytes"); reserve != float64(n.Store().DiskSpace().Reserve) || reserve == 0 || free >= reserve {
		t.Fatalf("metrics on a full disk: free %v, reserve %v, want the reserve %d above the free space", free, reserve, n.Store().DiskSpace().Reserve)
	}

	// A node restarted on the full disk starts, serves reads, and still
	// refuses writes (its first reading is taken before Badger opens).
	restart := func() {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := n.Close(cctx); err != nil {
			t.Fatal(err)
		}
		n = testnode.Start(t, &cfg)
		if sender, err = client.New(n.URL, client.WithToken(appToken)); err != nil {
			t.Fatal(err)
		}
	}
	restart()
	if !n.Store().DiskSpace().Full {
		t.Fatalf("restarted on a full disk, the node does not count it full: %+v", n.Store().DiskSpace())
	}
	pollUntil(t, "reads after a restart on a full disk", func() error {
		ids, err := appNotificationIds(ctx, clientFor(t, n, userToken))
		if err == nil && len(ids) != 5 {
			err = fmt.Errorf("%d notifications", len(ids))
		}
		return err
	})
	pollUntil(t, "507 after a restart on a full disk", func() error {
		err := send("while-full-again")
		if errors.As(err, &ce) && ce.Status == http.StatusInsufficientStorage {
			return nil
		}
		if err == nil {
			t.Fatal("a write was taken on a full disk after a restart")
		}
		return err
	})

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "writes resume once space is freed", func() error { return send("after") })
	if n.Store().DiskSpace().Full {
		t.Fatal("a write was taken while the node still counts its disk full")
	}
	pollUntil(t, "the ballast made again", func() error {
		_, err := os.Stat(filepath.Join(data, "disk-ballast"))
		return err
	})

	restart()
	pollUntil(t, "every acknowledged write exactly once after a restart", func() error {
		ids, err := appNotificationIds(ctx, clientFor(t, n, userToken))
		if err != nil {
			return err
		}
		want := slices.Clone(acked)
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			return fmt.Errorf("have %v, want %v", ids, want)
		}
		return nil
	})
}

func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Every disk of a cluster fills together (they hold the same data): a
// write through a follower gets the leader's 507, reads through the
// follower go on, and writes through it resume once space is freed.
func TestFullDiskThroughAFollower(t *testing.T) {
	ctx := context.Background()
	cfgs := []node.Config{clusterConfig(t, "n1")}
	cfgs = append(cfgs, clusterConfig(t, "n2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "n3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	nodes := make([]*testnode.Node, 3)
	for i := range cfgs {
		cfgs[i].DataDir = mountTmpfs(t, "64m")
		cfgs[i].DiskReserve = "16MiB"
		nodes[i] = testnode.Start(t, &cfgs[i])
	}
	anon := clientFor(t, nodes[0], "")
	tok, err := anon.PasswordToken(ctx, "admin", testnode.AdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	var follower *testnode.Node
	pollUntil(t, "a leader and a follower that knows the admin's token", func() error {
		follower = nil
		for _, n := range nodes {
			if !n.Store().IsLeader() && n.Store().HasState() {
				follower = n
			}
		}
		if follower == nil {
			return errors.New("no follower yet")
		}
		_, err := clientFor(t, follower, tok.AccessToken).Cluster(ctx)
		return err
	})
	admin, createUser := userCreator(t, follower, tok.AccessToken)
	if err := createUser("before"); err != nil {
		t.Fatal(err)
	}

	fillers := make([]string, len(cfgs))
	for i := range cfgs {
		fillers[i] = filepath.Join(filepath.Dir(cfgs[i].DataDir), "filler")
		fill(t, fillers[i], 4<<20)
	}
	pollUntil(t, "every node sees its disk full", func() error {
		for _, n := range nodes {
			if !n.Store().DiskSpace().Full {
				return fmt.Errorf("%s: %+v", n.Config.NodeID, n.Store().DiskSpace())
			}
		}
		return nil
	})
	err = createUser("while-full")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusInsufficientStorage || ce.Code != "quotaLimitReached" {
		t.Fatalf("a write through a follower to a full leader: want 507 quotaLimitReached, got %v", err)
	}
	users, err := admin.ListUsers(ctx)
	if err != nil {
		t.Fatalf("read through a follower on full disks: %v", err)
	}
	for _, u := range users {
		if u.UserPrincipalName == "while-full" {
			t.Fatal("the refused write is there")
		}
	}

	for _, f := range fillers {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	pollUntil(t, "writes through the follower resume once space is freed", func() error { return createUser("after") })
}

// userCreator is an admin's client of n, with no retries (a 507 is an
// answer here), and a function that creates a user through it.
func userCreator(t *testing.T, n *testnode.Node, token string) (*client.Client, func(name string) error) {
	t.Helper()
	admin, err := client.New(n.URL, client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	return admin, func(name string) error {
		_, err := admin.CreateUser(context.Background(), client.NewUser{UserPrincipalName: name, Password: name + "-password-1"})
		return err
	}
}

func TestBadDiskReserveIsRefusedAtStart(t *testing.T) {
	cfg := testnode.Config(t, t.TempDir())
	cfg.DiskReserve = "lots"
	n, err := node.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		n.Close(context.Background())
		t.Fatal("a node started with --disk-reserve=lots")
	}
	if !strings.Contains(err.Error(), `disk reserve "lots"`) {
		t.Fatalf("the error does not name the setting: %v", err)
	}
}

// A follower that lost the answer to a forwarded write resends it; if the
// leader's disk filled in between, the resend is refused with the guard's
// 507, but the first send was committed: the follower must not pass on a
// 507 ("nothing was stored") but answer that the write may have been
// committed. The chaos harness found this (docs/faults.md).
func TestFullDiskRefusalOfAResendIsNotANo(t *testing.T) {
	ctx := context.Background()
	cfgs := []node.Config{clusterConfig(t, "n1")}
	cfgs = append(cfgs, clusterConfig(t, "n2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "n3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	for i := range cfgs {
		cfgs[i].DataDir = mountTmpfs(t, "64m")
		cfgs[i].DiskReserve = "16MiB"
		// The steps below need one leader throughout: with the short
		// timers of the other cluster tests a loaded machine sometimes
		// elected another between picking the leader and the write.
		cfgs[i].Raft.HeartbeatTimeout, cfgs[i].Raft.ElectionTimeout = 2*time.Second, 2*time.Second
	}
	m := newMesh(t, cfgs)
	nodes, tok := startSignedIn(t, cfgs)
	var li, fi int
	pollUntil(t, "a leader and a follower that knows the admin's token", func() error {
		li, fi = -1, -1
		for i, n := range nodes {
			switch {
			case n.Store().IsLeader():
				li = i
			case n.Store().HasState():
				fi = i
			}
		}
		if li < 0 || fi < 0 {
			return errors.New("no leader or no follower yet")
		}
		_, err := clientFor(t, nodes[fi], tok).Cluster(ctx)
		return err
	})
	leader := nodes[li]
	// No retries: the answer must reach the test as the follower gave it.
	admin, err := client.New(nodes[fi].URL, client.WithToken(tok))
	if err != nil {
		t.Fatal(err)
	}

	// Forwards have their own connections to the leader: one must be open
	// before the cut, since a new one cannot be set up without answers
	// (when the admin signed in on the leader, none is yet).
	warmForwards(t, clientFor(t, nodes[fi], tok), nodes[fi], "warm")
	// The leader's answers to the follower vanish: the write commits, the
	// follower does not hear so.
	m.links[fi][li].CutDirection(faultproxy.Backward)
	done := make(chan error, 1)
	go func() {
		_, err := admin.CreateUser(ctx, client.NewUser{UserPrincipalName: "resent", Password: "resent-password-1"})
		done <- err
	}()
	leaderAdmin := clientFor(t, leader, tok)
	hasUser := func() error {
		users, err := leaderAdmin.ListUsers(ctx)
		if err != nil {
			return err
		}
		for _, u := range users {
			if u.UserPrincipalName == "resent" {
				return nil
			}
		}
		return errors.New("the leader has not applied the write")
	}
	pollUntil(t, "the leader applies the forwarded write", hasUser)
	// The followers' disks fill first, and the leader learns so: a full
	// leader hands the leadership to a follower with room (node/run.go,
	// handOffFull), which would answer the resend with the first send's
	// result. Then the leader's fills, and no node can take the resend.
	for i := range cfgs {
		if i != li {
			fill(t, filepath.Join(filepath.Dir(cfgs[i].DataDir), "filler"), 4<<20)
		}
	}
	pollUntil(t, "the leader sees every follower's disk full", func() error {
		st, err := leaderAdmin.Cluster(ctx)
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			if n.ID != leader.Config.NodeID && n.Disk != "full" {
				return fmt.Errorf("%s: disk %q", n.ID, n.Disk)
			}
		}
		return nil
	})
	fill(t, filepath.Join(filepath.Dir(cfgs[li].DataDir), "filler"), 4<<20)
	pollUntil(t, "the leader sees its disk full", func() error {
		if !leader.Store().DiskSpace().Full {
			return fmt.Errorf("%+v", leader.Store().DiskSpace())
		}
		return nil
	})
	// The connection that carried the write breaks: the follower resends.
	m.links[fi][li].Heal()
	m.links[fi][li].DropConnections()

	err = <-done
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || !strings.Contains(ce.Message, "may have been committed") {
		leads := ""
		for _, n := range nodes {
			if n.Store().IsLeader() {
				leads = n.Config.NodeID
			}
		}
		t.Fatalf("a resend refused by a full leader after the first send committed: want 503 \"may have been committed\", got %v (%s led before the write, %q now)", err, leader.Config.NodeID, leads)
	}
	if err := hasUser(); err != nil {
		t.Fatal(err)
	}
	m.check(t)
}

// A node whose disk has no free block left at all (the ballast already
// spent, the rest filled by something else) does not start: it says why in
// the operator's words instead of dying of SIGBUS in Badger, and starts
// once space is freed.
func TestStartOnADiskWithNoRoomSaysSo(t *testing.T) {
	data := mountTmpfs(t, "48m")
	cfg := testnode.Config(t, data)
	cfg.DiskReserve = "16MiB"
	n := testnode.Start(t, &cfg)
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(data, "disk-ballast")); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(filepath.Dir(data), "filler")
	fill(t, filler, 0)

	_, err := node.Start(cctx, cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "is full") || !strings.Contains(err.Error(), "free space on that disk") {
		t.Fatalf("start on a disk with no room: want an error saying the disk is full, got %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n = testnode.Start(t, &cfg)
	if code := httpGet(t, n.URL+"/readyz", nil); code != http.StatusOK {
		t.Fatalf("/readyz once space is freed: %d", code)
	}
}

// A full leader refused every write that adds data for the whole cluster,
// though the other nodes had room, until its disk was freed or it was
// restarted. It now hands the leadership to a voter with room, and the
// writes are taken again without anyone's help; the full node says so.
func TestAFullLeaderHandsOffToANodeWithRoom(t *testing.T) {
	ctx := context.Background()
	cfgs := []node.Config{clusterConfig(t, "f1")}
	cfgs = append(cfgs, clusterConfig(t, "f2", cfgs[0].HTTPAddr))
	cfgs = append(cfgs, clusterConfig(t, "f3", cfgs[0].HTTPAddr, cfgs[1].HTTPAddr))
	for i := range cfgs {
		cfgs[i].DataDir = mountTmpfs(t, "64m")
		cfgs[i].DiskReserve = "16MiB"
	}
	nodes, adminToken := startSignedIn(t, cfgs)
	var leader *testnode.Node
	var via *testnode.Node
	pollUntil(t, "a leader and a follower that knows the admin's token", func() error {
		leader, via = nil, nil
		for _, n := range nodes {
			if n.Store().IsLeader() {
				leader = n
			} else if n.Store().HasState() {
				via = n
			}
		}
		if leader == nil || via == nil {
			return errors.New("not yet")
		}
		_, err := clientFor(t, via, adminToken).Cluster(ctx)
		return err
	})
	admin, createUser := userCreator(t, via, adminToken)
	if err := createUser("before"); err != nil {
		t.Fatal(err)
	}

	fill(t, filepath.Join(filepath.Dir(leader.Config.DataDir), "filler"), 4<<20)
	pollUntil(t, "the leader sees its disk full, and says so in the cluster view", func() error {
		st, err := clientFor(t, via, adminToken).Cluster(ctx)
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			want := "ok"
			if n.ID == leader.Config.NodeID {
				want = "full"
			}
			if n.Disk != want && !(n.ID == leader.Config.NodeID && n.State != "leader") {
				return fmt.Errorf("%s (%s): disk %q", n.ID, n.State, n.Disk)
			}
		}
		return nil
	})
	pollUntil(t, "writes through a follower taken again", func() error { return createUser("while-one-is-full") })
	if leader.Store().IsLeader() {
		t.Fatal("the full node still leads")
	}
	users, err := admin.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.UserPrincipalName)
	}
	if !slices.Contains(names, "before") || !slices.Contains(names, "while-one-is-full") {
		t.Fatalf("users %v", names)
	}
}
