package reporting

// WithoutIdempotencyKey turns the idempotency key off, to show that the
// tables depend on it.
func WithoutIdempotencyKey(s *Store) { s.noKey = true }
