package storage_test

import (
	"github.com/ocs-engine/ocs/actors"
	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/storage"
)

// *storage.Store must satisfy the engine's contract. This lives in an
// external test package so that storage itself never imports actors. Apply
// returns the concrete *storage.Pending, so cmd/ocs wraps the store in an
// adapter of exactly this shape; everything else is the store's own method.
type engineStore struct{ *storage.Store }

func (s engineStore) Apply(changes []charging.Change) (actors.Pending, error) {
	p, err := s.Store.Apply(changes)
	if p == nil {
		return nil, err
	}
	return p, err
}

var _ actors.Store = engineStore{}
