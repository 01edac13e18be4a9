package cache_test

import (
	"testing"

	"github.com/tern-edge/tern/cache"
	"github.com/tern-edge/tern/cache/cachetest"
)

func TestMemStorage(t *testing.T) { cachetest.Storage(t, &cache.MemStorage{}) }
