package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestClusterKeyIsFreshAndLong(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		code, out, errOut := runCLI(t, nil, "cluster", "key")
		key := strings.TrimSpace(out)
		if code != 0 || errOut != "" {
			t.Fatalf("cluster key: exit %d, %s", code, errOut)
		}
		b, err := base64.RawURLEncoding.DecodeString(key)
		if err != nil || len(b) != 32 || len(key) < 32 || strings.HasPrefix(key, "-") {
			t.Fatalf("key %q: %d bytes, %v", key, len(b), err)
		}
		if seen[key] {
			t.Fatalf("key %q printed twice", key)
		}
		seen[key] = true
	}
}

func TestClusterJoinAndRemove(t *testing.T) {
	var added map[string]string
	var removed []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0/admin/cluster/nodes", func(w http.ResponseWriter, r *http.Request) {
		requireBearer(t, r, "tok")
		if err := json.NewDecoder(r.Body).Decode(&added); err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(added)
	})
	mux.HandleFunc("DELETE /v1.0/admin/cluster/nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		requireBearer(t, r, "tok")
		removed = append(removed, r.PathValue("id"))
		if r.PathValue("id") == "ghost" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"itemNotFound","message":"node not found"}}`))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	env := map[string]string{"HERALD_SERVER": fakeServer(t, mux), "HERALD_TOKEN": "tok"}

	code, out, errOut := runCLI(t, env, "cluster", "join", "--id", "n4", "--raft-addr", "10.0.0.4:8751", "--http-addr", "10.0.0.4:8750")
	want := map[string]string{"id": "n4", "raftAddr": "10.0.0.4:8751", "httpAddr": "10.0.0.4:8750"}
	if code != 0 || out != "added node n4\n" || len(added) != 3 || added["id"] != want["id"] ||
		added["raftAddr"] != want["raftAddr"] || added["httpAddr"] != want["httpAddr"] {
		t.Fatalf("cluster join: exit %d, %q, %q; server got %v", code, out, errOut, added)
	}
	if code, _, errOut := runCLI(t, env, "cluster", "join", "--id", "n5"); code == 0 || !strings.Contains(errOut, "raft-addr") {
		t.Errorf("cluster join without addresses: exit %d, %q", code, errOut)
	}

	if code, out, errOut := runCLI(t, env, "cluster", "remove", "n3"); code != 0 || out != "removed node n3\n" {
		t.Fatalf("cluster remove: exit %d, %q, %q", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, env, "cluster", "remove", "ghost"); code != 1 || !strings.Contains(errOut, "itemNotFound") {
		t.Errorf("cluster remove of an unknown node: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, env, "cluster", "remove"); code != 1 || !strings.Contains(errOut, "one node") {
		t.Errorf("cluster remove without an id: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, env, "cluster", "remove", "n2", "--server", "http://elsewhere"); code != 1 || !strings.Contains(errOut, "before the id") {
		t.Errorf("cluster remove with a flag after the id: exit %d, %q", code, errOut)
	}
	if strings.Join(removed, ",") != "n3,ghost" {
		t.Errorf("removed %v", removed)
	}
}

// herald cluster status says which node's clock is off the leader's, and
// by how much, past a second; a node within it, or not measured, passes.
func TestClusterStatusWarnsOfAClockOff(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.0/admin/cluster", func(w http.ResponseWriter, r *http.Request) {
		requireBearer(t, r, "tok")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"leaderId":"n1","term":2,"commitIndex":9,"slotCount":1024,"rulesLevel":5,"nodes":[
			{"id":"n1","state":"leader","voter":true,"clockOffsetMs":0},
			{"id":"n2","state":"follower","voter":true,"clockOffsetMs":-7200000},
			{"id":"n3","state":"follower","voter":true,"clockOffsetMs":400},
			{"id":"n4","state":"unreachable","voter":true}]}`))
	})
	env := map[string]string{"HERALD_SERVER": fakeServer(t, mux), "HERALD_TOKEN": "tok"}
	code, out, errOut := runCLI(t, env, "cluster", "status")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "n2: its clock is 2h0m0s behind the leader's") {
		t.Fatalf("no warning for n2, two hours behind:\n%s", out)
	}
	for _, id := range []string{"n1", "n3", "n4"} {
		if strings.Contains(out, id+": its clock") {
			t.Fatalf("a warning for %s:\n%s", id, out)
		}
	}
}
