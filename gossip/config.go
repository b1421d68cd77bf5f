package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultBindAddr is the address gossip binds to when Config.BindAddr is
// empty: loopback, memberlist's usual port.
const DefaultBindAddr = "127.0.0.1:7946"

// MaxMetaSize is the largest Config.Meta / UpdateMeta payload memberlist can
// carry in its alive messages.
const MaxMetaSize = memberlist.MetaMaxSize

// MaxLoadSize is the largest report SetLoad accepts. A report must fit in one
// gossip packet next to memberlist's own messages.
const MaxLoadSize = 512

// Sentinel errors. Errors returned by this package wrap one of these, so
// callers can test them with errors.Is.
var (
	// ErrInvalidConfig is wrapped by every Config validation error.
	ErrInvalidConfig = errors.New("gossip: invalid config")
	// ErrKeyRequired is returned by New when the bind address is not a
	// loopback address and neither a SecretKey nor Insecure is set.
	ErrKeyRequired = errors.New("gossip: a non-loopback bind address needs a gossip key " +
		"(pass --gossip-key, e.g. one made by `starling keygen`, or --insecure to gossip in plain text)")
	// ErrInvalidKey is wrapped by ParseKey and key-length errors.
	ErrInvalidKey = errors.New("gossip: invalid key")
	// ErrMetaTooLarge is returned when node metadata exceeds MaxMetaSize.
	ErrMetaTooLarge = errors.New("gossip: meta too large")
	// ErrLoadTooLarge is returned by SetLoad when a report exceeds MaxLoadSize.
	ErrLoadTooLarge = errors.New("gossip: load report too large")
	// ErrShutdown is returned by calls made after Shutdown.
	ErrShutdown = errors.New("gossip: shut down")
	// ErrNoSeeds is returned by Join when it is given no addresses.
	ErrNoSeeds = errors.New("gossip: no addresses to join")
)

// Profile selects memberlist's timers and this package's defaults.
type Profile int

const (
	// ProfileLAN is memberlist.DefaultLANConfig: for agents on a real
	// network. It is the zero value.
	ProfileLAN Profile = iota
	// ProfileLocal is memberlist.DefaultLocalConfig: for several agents on
	// one machine or a very fast network.
	ProfileLocal
	// ProfileFast has aggressive timers for tests and `starling dev`
	// (probe every 50ms, gossip every 20ms, push/pull every second), in the
	// spirit of serf's test configuration. Do not use it across a real
	// network: it produces false failure reports under load.
	ProfileFast
)

// String returns "lan", "local" or "fast".
func (p Profile) String() string {
	switch p {
	case ProfileLAN:
		return "lan"
	case ProfileLocal:
		return "local"
	case ProfileFast:
		return "fast"
	default:
		return "profile(" + strconv.Itoa(int(p)) + ")"
	}
}

// Config configures a member. Build one with DefaultConfig or FastConfig, or
// as a literal: New fills every zero duration from the Profile's defaults,
// so Config{Name: "a"} is a valid LAN config bound to DefaultBindAddr.
//
// A Config is copied by New; changing it afterwards has no effect.
type Config struct {
	// Name identifies this member in the cluster. It must be unique among
	// the live members. Required.
	Name string

	// BindAddr is the host:port gossip listens on for UDP and TCP. The host
	// must be an IP literal ("0.0.0.0" for all interfaces). Port 0 picks an
	// ephemeral port; LocalAddr reports the one chosen. Default
	// DefaultBindAddr. Ignored when Transport is set.
	BindAddr string

	// AdvertiseAddr is the host:port other members use to reach this one,
	// when it differs from BindAddr (NAT, containers). Port 0 means the
	// bound port. Optional.
	AdvertiseAddr string

	// Join lists seed members (host:port). New joins them in the background,
	// retrying with backoff until one answers or Shutdown.
	Join []string

	// SecretKey encrypts and authenticates all gossip with AES-GCM
	// (memberlist's keyring). It must be 16, 24 or 32 bytes; see GenerateKey
	// and ParseKey. All members need the same key.
	SecretKey []byte

	// Insecure allows a non-loopback bind address without a SecretKey.
	Insecure bool

	// Meta is static, opaque node metadata (for example the peer RPC
	// address and tags) carried in memberlist's alive messages. At most
	// MaxMetaSize bytes. Change it later with UpdateMeta.
	Meta []byte

	// Profile selects timers and defaults. Default ProfileLAN.
	Profile Profile

	// Logger receives this package's and memberlist's log lines.
	// Default: discard.
	Logger *slog.Logger

	// Events, when set, receives membership events. See Events for the
	// delivery contract.
	Events Events

	// Transport overrides memberlist's network transport, for example to
	// inject faults in tests. The member takes ownership of it and shuts it
	// down. When set, BindAddr is ignored and the transport's advertised
	// address is subject to the loopback/key check instead. Default: a
	// memberlist.NetTransport on BindAddr.
	Transport memberlist.NodeAwareTransport

	// LoadInterval is how often a changed load report is broadcast.
	// Default 200ms (50ms for ProfileFast).
	LoadInterval time.Duration

	// LoadTTL is how long a peer's load report stays valid without a newer
	// one; older reports are dropped as stale. An unchanged local report is
	// re-sent every LoadTTL/3 so live members never go stale. It must be
	// at least 3*LoadInterval. Default 5s (1s for ProfileFast), or
	// 5*LoadInterval if that is longer.
	LoadTTL time.Duration

	// ReconnectInterval is how often one failed (not left) member is picked
	// and joined again, so that a healed partition merges. Default 30s
	// (10s Local, 200ms Fast).
	ReconnectInterval time.Duration

	// ReconnectTimeout is how long a failed member is retried, and listed
	// by Members as dead, before it is forgotten. Default 24h (1h Local,
	// 1m Fast).
	ReconnectTimeout time.Duration

	// TombstoneTimeout is how long a member that left gracefully is listed
	// by Members before it is forgotten. Default 24h (1h Local, 30s Fast).
	TombstoneTimeout time.Duration

	// JoinBackoffMin and JoinBackoffMax bound the exponential backoff
	// (with jitter) between background attempts to join the Join seeds.
	// Defaults 1s and 30s (100ms and 1s for ProfileFast).
	JoinBackoffMin time.Duration
	JoinBackoffMax time.Duration

	// BroadcastTimeout bounds how long UpdateMeta waits for its broadcast
	// to leave this member. Default 5s (1s for ProfileFast).
	BroadcastTimeout time.Duration
}

// DefaultConfig returns a LAN-profile Config for the named member with every
// default spelled out.
func DefaultConfig(name string) Config {
	return Config{Name: name, BindAddr: DefaultBindAddr}.withDefaults()
}

// LocalConfig returns a Local-profile Config for the named member bound to an
// ephemeral loopback port: several members on one machine that does other work too.
func LocalConfig(name string) Config {
	return Config{Name: name, BindAddr: "127.0.0.1:0", Profile: ProfileLocal}.withDefaults()
}

// FastConfig returns a Fast-profile Config for the named member bound to an
// ephemeral loopback port: what tests and `starling dev` want.
func FastConfig(name string) Config {
	return Config{Name: name, BindAddr: "127.0.0.1:0", Profile: ProfileFast}.withDefaults()
}

// withDefaults fills zero fields from the profile.
func (c Config) withDefaults() Config {
	type defaults struct {
		loadInterval, loadTTL                time.Duration
		reconnectInterval, reconnectTimeout  time.Duration
		tombstone, joinMin, joinMax, bcastTO time.Duration
	}
	d := defaults{200 * time.Millisecond, 5 * time.Second, 30 * time.Second, 24 * time.Hour,
		24 * time.Hour, time.Second, 30 * time.Second, 5 * time.Second}
	switch c.Profile {
	case ProfileLocal:
		d.reconnectInterval, d.reconnectTimeout, d.tombstone = 10*time.Second, time.Hour, time.Hour
		d.joinMin, d.joinMax = 500*time.Millisecond, 10*time.Second
	case ProfileFast:
		d = defaults{50 * time.Millisecond, time.Second, 200 * time.Millisecond, time.Minute,
			30 * time.Second, 100 * time.Millisecond, time.Second, time.Second}
	}
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	set(&c.LoadInterval, d.loadInterval)
	set(&c.LoadTTL, max(d.loadTTL, 5*c.LoadInterval))
	set(&c.ReconnectInterval, d.reconnectInterval)
	set(&c.ReconnectTimeout, d.reconnectTimeout)
	set(&c.TombstoneTimeout, d.tombstone)
	set(&c.JoinBackoffMin, d.joinMin)
	set(&c.JoinBackoffMax, d.joinMax)
	set(&c.BroadcastTimeout, d.bcastTO)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate checks a Config after withDefaults. It does not check the
// loopback/key rule, which needs the final address (see New).
func (c Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Name == "" {
		return bad("name is required")
	}
	switch c.Profile {
	case ProfileLAN, ProfileLocal, ProfileFast:
	default:
		return bad("unknown profile %d", int(c.Profile))
	}
	if c.Transport == nil {
		if _, _, err := splitAddr(c.BindAddr, true); err != nil {
			return bad("bind address %q: %v", c.BindAddr, err)
		}
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitAddr(c.AdvertiseAddr, true); err != nil {
			return bad("advertise address %q: %v", c.AdvertiseAddr, err)
		}
	}
	for _, s := range c.Join {
		if s == "" {
			return bad("empty join address")
		}
	}
	if c.SecretKey != nil {
		if err := checkKeyLen(len(c.SecretKey)); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	if len(c.Meta) > MaxMetaSize {
		return fmt.Errorf("%w: %w: %d bytes, limit %d", ErrInvalidConfig, ErrMetaTooLarge, len(c.Meta), MaxMetaSize)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"load interval", c.LoadInterval}, {"load TTL", c.LoadTTL},
		{"reconnect interval", c.ReconnectInterval}, {"reconnect timeout", c.ReconnectTimeout},
		{"tombstone timeout", c.TombstoneTimeout}, {"join backoff min", c.JoinBackoffMin},
		{"join backoff max", c.JoinBackoffMax}, {"broadcast timeout", c.BroadcastTimeout},
	} {
		if d.v < 0 {
			return bad("%s must not be negative, got %v", d.name, d.v)
		}
	}
	if c.LoadTTL < 3*c.LoadInterval {
		return bad("load TTL %v must be at least 3 load intervals (%v)", c.LoadTTL, 3*c.LoadInterval)
	}
	if c.JoinBackoffMax < c.JoinBackoffMin {
		return bad("join backoff max %v is below min %v", c.JoinBackoffMax, c.JoinBackoffMin)
	}
	return nil
}

// splitAddr parses host:port where host must be an IP literal (or empty,
// meaning all interfaces when emptyAny is set).
func splitAddr(addr string, emptyAny bool) (net.IP, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, 0, fmt.Errorf("invalid port %q", portStr)
	}
	if host == "" && emptyAny {
		host = "0.0.0.0"
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, 0, fmt.Errorf("host %q is not an IP address", host)
	}
	return ip, port, nil
}

// memberlistConfig returns a fresh memberlist.Config for the profile. Every
// member gets its own: memberlist mutates the Config it is given.
func memberlistConfig(p Profile) *memberlist.Config {
	switch p {
	case ProfileLocal:
		return memberlist.DefaultLocalConfig()
	case ProfileFast:
		mc := memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 50 * time.Millisecond
		mc.ProbeTimeout = 30 * time.Millisecond
		mc.GossipInterval = 20 * time.Millisecond
		mc.PushPullInterval = time.Second
		mc.TCPTimeout = 500 * time.Millisecond
		mc.SuspicionMult = 4
		mc.SuspicionMaxTimeoutMult = 4
		mc.GossipToTheDeadTime = time.Second
		mc.DeadNodeReclaimTime = time.Second
		return mc
	default:
		return memberlist.DefaultLANConfig()
	}
}
