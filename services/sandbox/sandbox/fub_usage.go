package sandbox

// FUBUsage is how the account's quota has been used since the last reset:
// the calls counted against it, and the calls refused with 429.
type FUBUsage struct {
	Counted int `json:"counted"`
	Refused int `json:"refused"`
}

func (u *FUBUsage) count(allowed bool) {
	if allowed {
		u.Counted++
	} else {
		u.Refused++
	}
}

// Usage returns the quota use since the last reset. POST /v1/events, which
// Follow Up Boss does not count, is not in it.
func (f *FUB) Usage() FUBUsage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.usage
}
