// Package wire carries msgpack messages between Starling nodes over persistent TCP
// connections, authenticated with the cluster key.
//
// A Transport dials one connection to each peer it sends to and accepts connections
// from peers; each connection carries messages one way, so a reply travels on the
// replier's own connection. Messages to one peer are queued and written in batches
// (one flush per batch), which is what lets thousands of small reports a second flow.
// Delivery is best effort: a message queued when a connection breaks is lost, and the
// layers above retransmit what matters.
//
//	t, err := wire.New(wire.Config[Msg]{ID: self, Key: key, Listener: ln,
//		Handle: func(from string, m *Msg) { ... }})
//	t.Send(peerAddr, &Msg{...})
//	defer t.Close()
//
// The handshake: the acceptor sends a random nonce; the dialer answers with its id
// and HMAC-SHA256(key, nonce || id); the acceptor checks it in constant time and
// answers one byte. Without a key the MAC is empty and any peer is accepted.
package wire
