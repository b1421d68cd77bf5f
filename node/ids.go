package node

import (
	"crypto/rand"
	"encoding/base32"

	"github.com/starlingsched/starling/engine"
)

// Task and graph ids are "<node id>-<sequence>" (graphs: "<node id>-g<sequence>"). The
// node id is random per node start, so an id names its owner for as long as the owner
// lives, and a restarted node never reuses an id. Both halves are URL-safe.

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newNodeID returns 8 random characters (40 bits).
func newNodeID() string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("node: no randomness: " + err.Error()) // crypto/rand never fails on Linux
	}
	return idEncoding.EncodeToString(b[:])
}

// OwnerOf returns the node id embedded in a task or graph id.
func OwnerOf(id string) (string, bool) { return engine.OwnerOf(id) }
