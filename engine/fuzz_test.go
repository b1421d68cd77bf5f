package engine

import (
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/steal"
)

// FuzzReceive feeds an engine that has work queued, stolen and running a peer's
// message built from arbitrary values (the wire's decoder and its budgets have fuzz
// targets of their own): whatever a peer sends, the engine must not panic, and its
// books must stay straight.
func FuzzReceive(f *testing.F) {
	f.Add(uint8(0), "node0000-1", uint64(0), 1, uint8(0), uint8(0), []byte(`1`))
	f.Add(uint8(1), "node0000-2", uint64(1), 2, uint8(1), uint8(1), []byte(nil))
	f.Add(uint8(2), "peer0000-1", uint64(2), 0, uint8(0), uint8(0), []byte(nil))
	f.Add(uint8(3), "x", uint64(9), 0, uint8(0), uint8(2), []byte(nil))
	f.Add(uint8(4), "node0000-3", uint64(1), 1, uint8(2), uint8(3), []byte(`{}`))
	f.Add(uint8(5), "", uint64(0), 3, uint8(0), uint8(0), []byte(nil))
	f.Add(uint8(6), "node0000-4", uint64(1), 1, uint8(0), uint8(1), []byte(nil))
	f.Fuzz(func(t *testing.T, kind uint8, id string, epoch uint64, n int, st uint8, flags uint8, blob []byte) {
		states := []api.State{api.Running, api.Succeeded, api.Failed, api.Queued, "bogus"}
		m := &Message{}
		switch kind % 8 {
		case 0, 1:
			m.Reports = []Report{{ID: id, Epoch: epoch, Attempt: n, State: states[int(st)%len(states)], Result: blob,
				Lost: flags&1 != 0, Returned: flags&2 != 0, Error: string(blob)}}
		case 2:
			m.Grant = &GrantMsg{Grant: steal.Grant{Victim: "peer0000", VictimInc: epoch, Thief: "node0000", ThiefInc: 1, ReqID: uint64(n),
				Tasks: []steal.GrantedTask{{ID: id, Epoch: epoch}}}, Tasks: []GrantedRun{{ID: id, Void: flags&1 != 0, Spec: api.Spec{Type: "block"}}}}
		case 3:
			m.Cancel = []Ack{{ID: id, Epoch: epoch}}
			m.CancelAcks = []Ack{{ID: id, Epoch: epoch}}
		case 4:
			m.Req = &steal.StealRequest{Thief: "peer0000", ThiefInc: epoch, ReqID: uint64(n), Max: int(st),
				Cap: steal.Capability{Types: map[string]bool{"block": flags&1 == 0, id: true}}}
		case 5:
			m.Reply = &steal.Reply{Thief: "peer0000", ThiefInc: 1, ReqID: uint64(n), Accept: flags&1 != 0}
			m.Release = &steal.Release{Victim: "peer0000", VictimInc: epoch, Thief: "node0000", ReqID: uint64(n)}
		case 6:
			m.Acks = []Ack{{ID: id, Epoch: epoch}}
			m.Empty = &steal.Empty{Victim: "peer0000", Thief: "node0000", ReqID: uint64(n)}
		case 7:
			m.Load = &Load{Ver: epoch, Queued: n, Free: int(st) - 128, Backlog: []steal.Backlog{{Class: steal.Class{Type: id}, Count: n}}}
		}
		e, err := New(clusterTestConfig("node0000"))
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Unix(1000, 0)
		step(e, t0, MemberUp{Name: "p", State: "alive", Alive: true, Meta: Meta{ID: "peer0000", RPC: "p:1", Types: []string{"block"}}})
		step(e, t0, Submit{Req: 1, Batch: true, Specs: []api.Spec{{Type: "block"}, {Type: "block"}, {Type: "block"}, {Type: "block", Name: "a"}, {Type: "block", Deps: []string{"a"}}}})
		// A peer took a task, so that reports about it are current.
		req := steal.StealRequest{Thief: "peer0000", ThiefInc: 1, ReqID: 1, Max: 1, Cap: steal.Capability{Types: map[string]bool{"block": true}}}
		step(e, t0, Receive{From: "peer0000", Msg: &Message{Req: &req}})
		step(e, t0, Receive{From: "peer0000", Msg: m})
		step(e, t0.Add(time.Second), Receive{From: "peer0000", Msg: m}) // a duplicate
		step(e, t0.Add(2*time.Second), Tick{})
		s := e.Stats()
		if s.Busy < 0 || s.Busy > 2 || s.Live < 0 || s.Live > 5 || s.Queued < 0 {
			t.Fatalf("books out of line after %+v: %+v", m, s)
		}
	})
}
