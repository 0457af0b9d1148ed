package store

// LoadLocal merges records into this node's copy directly, as a replica
// write would: for benchmarks that need 100,000 items in place quickly.
func (s *Store) LoadLocal(key string, recs ...Record) {
	now := s.cfg.Now()
	for i := range recs {
		if recs[i].Version == 0 {
			recs[i].Version, recs[i].Writer = s.clock.nextAt(now), s.self
		}
	}
	s.local.apply(s.partition(key), key, recs, now)
}
