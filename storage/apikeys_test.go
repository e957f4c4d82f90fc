package storage

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

func TestAPIKeys(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs})
	require.NoError(t, err)

	network, err := s.IssueKey(1)
	require.NoError(t, err)
	channel, err := s.IssueKey(2)
	require.NoError(t, err)
	require.NotEqual(t, network, channel)
	require.Len(t, network, 43, "32 bytes in unpadded base64url")
	for _, role := range []uint8{0, 4, 255} {
		_, err := s.IssueKey(role)
		require.ErrorIs(t, err, ErrInvalid, "role %d", role)
	}
	require.ErrorIs(t, s.EnsureBootstrapKey("short"), ErrInvalid)
	const boot = "bootstrap-ops-token-0123456789"
	require.NoError(t, s.EnsureBootstrapKey(boot))
	require.NoError(t, s.EnsureBootstrapKey(boot), "idempotent")

	check := func(s *Store) {
		role, ok := s.KeyRole([]byte(network))
		require.True(t, ok)
		require.Equal(t, uint8(1), role)
		role, ok = s.KeyRole([]byte(channel))
		require.True(t, ok)
		require.Equal(t, uint8(2), role)
		role, ok = s.KeyRole([]byte(boot))
		require.True(t, ok)
		require.Equal(t, uint8(3), role)
		for _, bad := range []string{"", network[:42], network + "x", "bootstrap-ops-token-012345678"} {
			_, ok := s.KeyRole([]byte(bad))
			require.False(t, ok, "%q", bad)
		}
	}
	check(s)
	require.NoError(t, s.Close())

	// Only hashes are stored, and they survive a restart.
	s, err = Open("db", Options{FS: fs})
	require.NoError(t, err)
	check(s)
	require.Len(t, s.keys.roles, 3)
	require.NoError(t, s.Close())
}
