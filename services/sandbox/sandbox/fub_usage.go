package sandbox

// FUBUsage is how the account's quota has been used since the last reset (FUB.Usage, the
// kit's): the calls counted against it, and the calls refused with 429. POST /v1/events, which
// Follow Up Boss does not count, is in neither.
type FUBUsage = Usage
