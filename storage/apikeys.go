package storage

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// API key roles, as protocols/httpapi numbers them (Role 1 network,
// 2 channel, 3 ops). Stored: never renumber.
const (
	roleMin uint8 = 1
	roleMax uint8 = 3
	roleOps uint8 = 3
)

const (
	// tokenRandomBytes: 256 bits, beyond guessing.
	tokenRandomBytes = 32
	// BootstrapTokenBytesMin bounds the ops token an operator supplies
	// (OCS_BOOTSTRAP_KEY): shorter ones are guessable.
	BootstrapTokenBytesMin = 16
	// tokenBytesMax bounds a presented token, so that a huge header is
	// not hashed.
	tokenBytesMax = 256
)

// IssueKey creates an API key for role (1 network, 2 channel, 3 ops) and
// returns its token, shown only here: the store keeps its SHA-256 only.
// Safe for concurrent use.
func (s *Store) IssueKey(role uint8) (string, error) {
	if role < roleMin || role > roleMax {
		return "", fmt.Errorf("storage: issue key: %w: role %d, want %d..%d", ErrInvalid, role, roleMin, roleMax)
	}
	var raw [tokenRandomBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("storage: issue key: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	if err := s.storeKey(sha256.Sum256([]byte(token)), role); err != nil {
		return "", err
	}
	return token, nil
}

// KeyRole returns the role of token, or false if it is no key. It reads
// only memory: keys are cached at Open and on every issue.
func (s *Store) KeyRole(token []byte) (uint8, bool) {
	if len(token) == 0 || len(token) > tokenBytesMax {
		return 0, false
	}
	h := sha256.Sum256(token)
	s.keys.RLock()
	role, ok := s.keys.roles[h]
	s.keys.RUnlock()
	return role, ok
}

// EnsureBootstrapKey makes token an ops key unless it is a key already
// (then its role is left as it is). It is how the first operator gets in.
func (s *Store) EnsureBootstrapKey(token string) error {
	if len(token) < BootstrapTokenBytesMin || len(token) > tokenBytesMax {
		return fmt.Errorf("storage: bootstrap key: %w: %d bytes, want %d..%d",
			ErrInvalid, len(token), BootstrapTokenBytesMin, tokenBytesMax)
	}
	if _, ok := s.KeyRole([]byte(token)); ok {
		return nil
	}
	return s.storeKey(sha256.Sum256([]byte(token)), roleOps)
}

func (s *Store) storeKey(h [32]byte, role uint8) error {
	var kb [apiKeyKeyLen]byte
	if err := s.db.Set(appendAPIKeyKey(kb[:0], &h), []byte{apiKeyV1, role}, pebble.Sync); err != nil {
		return fmt.Errorf("storage: store key: %w", err)
	}
	s.keys.Lock()
	s.keys.roles[h] = role
	s.keys.Unlock()
	return nil
}

// loadAPIKeys fills the key cache from the meta table.
func (s *Store) loadAPIKeys() error {
	prefix := appendMetaKey(nil, metaAPIKey)
	upper := append(append([]byte(nil), prefix[:len(prefix)-1]...), prefix[len(prefix)-1]+1)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("storage: load keys: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != apiKeyKeyLen || len(v) != apiKeyLen || v[0] != apiKeyV1 || v[1] < roleMin || v[1] > roleMax {
			_ = it.Close()
			return fmt.Errorf("storage: load keys: %w: key record %x", ErrCorrupt, k)
		}
		var h [32]byte
		copy(h[:], k[len(prefix):])
		s.keys.roles[h] = v[1]
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("storage: load keys: %w", err)
	}
	return nil
}
