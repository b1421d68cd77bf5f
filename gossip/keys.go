package gossip

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// GenerateKey returns a new random 32-byte gossip key, base64-encoded (the
// form ParseKey and the --gossip-key flag accept).
func GenerateKey() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (it crashes the program instead).
	return base64.StdEncoding.EncodeToString(key)
}

// ParseKey decodes a base64 gossip key (standard or URL alphabet, padding
// optional) and checks that it is 16, 24 or 32 bytes long (AES-128/192/256).
// Errors wrap ErrInvalidKey.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	var key []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: not base64 (make one with `starling keygen`): %v", ErrInvalidKey, err)
	}
	if err := checkKeyLen(len(key)); err != nil {
		return nil, err
	}
	return key, nil
}

func checkKeyLen(n int) error {
	switch n {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("%w: %d bytes, want 16, 24 or 32", ErrInvalidKey, n)
}

// DeriveKey derives a 32-byte key for purpose from secret with HKDF-SHA256
// (an HMAC-SHA256 construction), so one cluster secret can key several
// independent uses (e.g. DeriveKey(gossipKey, "starling peer rpc v1")).
// Different purposes give unrelated keys; the same inputs always give the
// same key.
func DeriveKey(secret []byte, purpose string) []byte {
	key, err := hkdf.Key(sha256.New, secret, []byte("starling/gossip.DeriveKey"), purpose, 32)
	if err != nil {
		// Only possible for lengths above 255*32 bytes.
		panic("gossip: hkdf: " + err.Error())
	}
	return key
}
