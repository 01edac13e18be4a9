// Package provider implements carbon.Provider for trace files and for the
// WattTime v3, Electricity Maps v3 and UK National Grid carbon intensity
// APIs.
//
// The HTTP clients share one transport layer: a configurable base URL (so
// tests and proxies can stand in), a token-bucket rate limit below each
// provider's published limit, a pause honouring Retry-After after a 429,
// errors that wrap carbon's sentinels and name the provider, path and
// status, and credentials held as [Secret] so that they print, log and
// marshal as "[redacted]". Nothing here reads files, flags or the
// environment: callers pass readers and a getenv function.
//
// What each source's numbers mean differs, and the readings say so:
// WattTime's MOER is a marginal signal (carbon.Marginal) in lbs/MWh,
// converted to g/kWh; Electricity Maps and National Grid are averages
// (carbon.Average). Do not rank sites on a mix of the two.
package provider
