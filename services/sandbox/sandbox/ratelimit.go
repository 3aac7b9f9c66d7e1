package sandbox

import (
	"time"
)

// slidingWindow counts requests per key over a sliding window, as a log of their times.
//
// It is hand-written rather than taken from golang.org/x/time/rate because that package is a
// token bucket: the vendors document a sliding window, and the Retry-After they send is the time
// until the oldest counted request leaves the window, which only a log gives exactly.
// It is not safe for concurrent use; its owner holds a lock.
type slidingWindow struct {
	window time.Duration
	logs   map[string][]time.Time
}

func newSlidingWindow(window time.Duration) *slidingWindow {
	return &slidingWindow{window: window, logs: map[string][]time.Time{}}
}

// prune drops the requests of key that have left the window at now and returns the rest.
func (s *slidingWindow) prune(key string, now time.Time) []time.Time {
	log := s.logs[key]
	i := 0
	for i < len(log) && !now.Before(log[i].Add(s.window)) {
		i++
	}
	log = log[i:]
	if len(log) == 0 {
		delete(s.logs, key)
		return nil
	}
	s.logs[key] = log
	return log
}

// take counts one request for key if fewer than limit are in the window. It returns the
// requests still allowed after this one, and, when refused, how long until a slot frees.
func (s *slidingWindow) take(key string, limit int, now time.Time) (remaining int, retryAfter time.Duration, ok bool) {
	log := s.prune(key, now)
	if len(log) >= limit {
		return 0, log[len(log)-limit].Add(s.window).Sub(now), false
	}
	s.logs[key] = append(log, now)
	return limit - len(log) - 1, 0, true
}

// full reports whether key has limit requests in the window at now, and if so how long until
// a slot frees, without counting one.
func (s *slidingWindow) full(key string, limit int, now time.Time) (time.Duration, bool) {
	log := s.prune(key, now)
	if len(log) < limit {
		return 0, false
	}
	return log[len(log)-limit].Add(s.window).Sub(now), true
}

// remaining returns how many requests key may still make at now, without counting one.
func (s *slidingWindow) remaining(key string, limit int, now time.Time) int {
	return max(0, limit-len(s.prune(key, now)))
}

// ceilSeconds rounds d up to whole seconds, and to at least 1.
func ceilSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}
