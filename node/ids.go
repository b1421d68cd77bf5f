package node

import (
	"crypto/rand"
	"encoding/base32"
	"strconv"
	"strings"
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

func taskID(nodeID string, seq uint64) string {
	return nodeID + "-" + strconv.FormatUint(seq, 36)
}

func graphID(nodeID string, seq uint64) string {
	return nodeID + "-g" + strconv.FormatUint(seq, 36)
}

// OwnerOf returns the node id embedded in a task or graph id.
func OwnerOf(id string) (string, bool) {
	owner, rest, ok := strings.Cut(id, "-")
	return owner, ok && len(owner) == 8 && rest != ""
}
