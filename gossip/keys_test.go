package gossip

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseKey(t *testing.T) {
	k16 := base64.StdEncoding.EncodeToString(make([]byte, 16))
	tests := []struct {
		name    string
		in      string
		wantLen int
		wantErr string
	}{
		{"generated", GenerateKey(), 32, ""},
		{"16 bytes", k16, 16, ""},
		{"24 bytes", base64.StdEncoding.EncodeToString(make([]byte, 24)), 24, ""},
		{"surrounding space", " " + k16 + "\n", 16, ""},
		{"url alphabet unpadded", base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)), 32, ""},
		{"empty", "", 0, "empty"},
		{"not base64", "not a key!", 0, "not base64"},
		{"wrong length", base64.StdEncoding.EncodeToString(make([]byte, 20)), 0, "20 bytes, want 16, 24 or 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ParseKey(tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseKey(%q) error = %v, want ErrInvalidKey mentioning %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || len(key) != tt.wantLen {
				t.Fatalf("ParseKey(%q) = %d bytes, %v; want %d bytes", tt.in, len(key), err, tt.wantLen)
			}
		})
	}
	if k1, k2 := GenerateKey(), GenerateKey(); k1 == k2 {
		t.Error("GenerateKey repeated itself")
	}
}

func TestDeriveKey(t *testing.T) {
	secret := []byte("0123456789abcdef")
	k1 := DeriveKey(secret, "peer rpc")
	if len(k1) != 32 {
		t.Fatalf("len = %d", len(k1))
	}
	if !bytes.Equal(k1, DeriveKey(secret, "peer rpc")) {
		t.Error("not deterministic")
	}
	if bytes.Equal(k1, DeriveKey(secret, "other")) {
		t.Error("different purposes gave the same key")
	}
	if bytes.Equal(k1, DeriveKey([]byte("fedcba9876543210"), "peer rpc")) {
		t.Error("different secrets gave the same key")
	}
	if bytes.Equal(k1, secret) || bytes.Contains(k1, secret) {
		t.Error("derived key leaks the secret")
	}
}

func TestEncryptedCluster(t *testing.T) {
	key, err := ParseKey(GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	withKey := func(k []byte) func(*Config) { return func(c *Config) { c.SecretKey = k } }

	a := start(t, "a", withKey(key))
	b := start(t, "b", withKey(key), joining(a))
	waitConverged(t, a, b)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	other, _ := ParseKey(GenerateKey())
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"wrong key", other}, {"no key", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			x := start(t, "x-"+strings.ReplaceAll(tc.name, " ", "-"), withKey(tc.key))
			if n, err := x.Join(ctx, []string{a.LocalAddr()}); err == nil {
				t.Fatalf("joined an encrypted cluster with %s (contacted %d)", tc.name, n)
			}
			time.Sleep(200 * time.Millisecond) // give a wrongly accepted member time to show up
			if a.NumAlive() != 2 || x.NumAlive() != 1 {
				t.Fatalf("after rejected join: a sees %d alive, x sees %d", a.NumAlive(), x.NumAlive())
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr error
		wantMsg string
	}{
		{"no name", func(c *Config) { c.Name = "" }, ErrInvalidConfig, "name is required"},
		{"bad bind", func(c *Config) { c.BindAddr = "nonsense" }, ErrInvalidConfig, "bind address"},
		{"hostname bind", func(c *Config) { c.BindAddr = "localhost:0" }, ErrInvalidConfig, "not an IP"},
		{"bad port", func(c *Config) { c.BindAddr = "127.0.0.1:70000" }, ErrInvalidConfig, "invalid port"},
		{"bad advertise", func(c *Config) { c.AdvertiseAddr = "1.2.3.4" }, ErrInvalidConfig, "advertise address"},
		{"short key", func(c *Config) { c.SecretKey = []byte("short") }, ErrInvalidKey, "5 bytes"},
		{"big meta", func(c *Config) { c.Meta = make([]byte, MaxMetaSize+1) }, ErrMetaTooLarge, "limit 512"},
		{"bad profile", func(c *Config) { c.Profile = 9 }, ErrInvalidConfig, "unknown profile"},
		{"negative", func(c *Config) { c.ReconnectInterval = -time.Second }, ErrInvalidConfig, "must not be negative"},
		{"ttl too short", func(c *Config) { c.LoadTTL = c.LoadInterval }, ErrInvalidConfig, "load TTL"},
		{"backoff inverted", func(c *Config) { c.JoinBackoffMax = time.Millisecond }, ErrInvalidConfig, "join backoff"},
		{"empty seed", func(c *Config) { c.Join = []string{""} }, ErrInvalidConfig, "empty join address"},
		{"public without key", func(c *Config) { c.BindAddr = "0.0.0.0:0" }, ErrKeyRequired, "--gossip-key"},
		{"lan ip without key", func(c *Config) { c.BindAddr = "192.0.2.1:7946" }, ErrKeyRequired, "--insecure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := FastConfig("a")
			tt.mutate(&cfg)
			c, err := New(cfg)
			if err == nil {
				shutdown(t, c)
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("New: %v; want %v mentioning %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}

func TestPublicBindWithKeyOrInsecurePassesTheCheck(t *testing.T) {
	key, _ := ParseKey(GenerateKey())
	for _, mutate := range []func(*Config){
		func(c *Config) { c.SecretKey = key },
		func(c *Config) { c.Insecure = true },
	} {
		cfg := FastConfig("a")
		cfg.BindAddr = "0.0.0.0:0"
		mutate(&cfg)
		c, err := New(cfg)
		if err == nil {
			shutdown(t, c)
			continue
		}
		// Without a private interface memberlist cannot pick an address
		// to advertise; that is fine, the key check is what we test.
		if errors.Is(err, ErrKeyRequired) || errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("New: %v", err)
		}
	}
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig("n")
	if c.BindAddr != DefaultBindAddr || c.Profile != ProfileLAN || c.LoadInterval != 200*time.Millisecond ||
		c.ReconnectTimeout != 24*time.Hour || c.Logger == nil {
		t.Fatalf("DefaultConfig = %+v", c)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if err := FastConfig("n").validate(); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[Profile]string{ProfileLAN: "lan", ProfileLocal: "local", ProfileFast: "fast", 7: "profile(7)"} {
		if p.String() != want {
			t.Errorf("%d.String() = %q", p, p.String())
		}
	}
	// Each member gets its own memberlist config.
	if m1, m2 := memberlistConfig(ProfileFast), memberlistConfig(ProfileFast); m1 == m2 {
		t.Error("memberlist config shared")
	}
}
