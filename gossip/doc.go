// Package gossip owns cluster membership for Starling: joining and leaving,
// failure detection, static node metadata, dissemination of load reports,
// re-joining failed members after a partition heals, and gossip encryption.
// It is a thin layer over hashicorp/memberlist, plugged in through
// memberlist's Delegate and EventDelegate the way serf is.
//
// It knows nothing about tasks: metadata and load reports are opaque bytes
// that the caller (package node) encodes.
//
// # Usage
//
//	cfg := gossip.DefaultConfig("node-1")   // or gossip.FastConfig in tests
//	cfg.BindAddr = "10.0.0.5:7946"
//	cfg.SecretKey, err = gossip.ParseKey(flagGossipKey) // required off loopback
//	cfg.Join = []string{"10.0.0.4:7946"}    // joined in the background, with retries
//	cfg.Meta = encodedStaticFacts           // RPC address, slots, tags, version
//	cfg.Events = gossip.EventFuncs{
//		Failed: func(m gossip.Member) { /* requeue work that ran on m.Name */ },
//	}
//	c, err := gossip.New(cfg)
//	if err != nil { ... }
//	defer c.Shutdown(context.Background())
//
//	c.SetLoad(encodedLoad)                  // a few times a second; broadcast when changed
//	for _, m := range c.Members() {         // with m.Meta, m.State, m.Load, m.LoadAge
//		...
//	}
//
//	// On drain:
//	c.Leave(5 * time.Second)                // peers see MemberLeave, not MemberFailed
//	c.Shutdown(ctx)
//
// # Guarantees and limits
//
// Membership is eventually consistent: different members may briefly
// disagree. Events about other members are delivered in order on one
// goroutine (see Events). Load is a hint: versioned so an older report
// never replaces a newer one, dropped after Config.LoadTTL, dropped for
// members that are not alive, and never exact.
//
// Binding a non-loopback address requires Config.SecretKey (AES-GCM via
// memberlist's keyring) or an explicit Config.Insecure. DeriveKey turns the
// gossip key into keys for other purposes, such as peer RPC.
package gossip
