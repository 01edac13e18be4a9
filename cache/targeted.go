package cache

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/dunglas/httpsfv"
	"golang.org/x/net/http/httpguts"
)

// Targeted cache control (RFC 9213). A targeted field is a Structured
// Field Dictionary (RFC 8941) with Cache-Control's directives, addressed
// to a class of caches. This cache obeys, first to last, the fields in
// targetFields; the first present and valid one replaces Cache-Control
// and Expires (§2.2). They are for this hop: never forwarded downstream.

// TernCacheControl is the field that targets this cache alone, ahead of
// CDN-Cache-Control.
const TernCacheControl = "Tern-Cache-Control"

// targetFields are the targeted fields obeyed by default, in precedence
// order.
var targetFields = []string{TernCacheControl, "Cdn-Cache-Control"}

// CheckTargetedField reports whether name can be a cache's own targeted
// field: a valid field name that is not one of the fields it overrides.
func CheckTargetedField(name string) error {
	switch {
	case !httpguts.ValidHeaderFieldName(name):
		return fmt.Errorf("targeted field %q: not a valid header field name", name)
	case strings.EqualFold(name, "Cache-Control"), strings.EqualFold(name, "CDN-Cache-Control"):
		return fmt.Errorf("targeted field %q: names a field it would override; choose a name of its own such as %s", name, TernCacheControl)
	}
	return nil
}

// targets returns the targeted fields to obey when this cache's own
// field is named own (empty: TernCacheControl), in precedence order.
func targets(own string) []string {
	if own == "" {
		return targetFields
	}
	return []string{http.CanonicalHeaderKey(own), "Cdn-Cache-Control"}
}

// responseDirectives returns the cache directives of a response header:
// those of the first valid field of fields (see targets), marked
// targeted, or else of Cache-Control.
func responseDirectives(h http.Header, fields []string) directives {
	for _, name := range fields {
		if vs := h[name]; len(vs) > 0 {
			if d, ok := parseTargeted(vs); ok {
				return d
			}
		}
	}
	return parseCacheControl(h)
}

// parseTargeted parses a targeted field's lines. ok is false, and the
// field is to be ignored as a whole (§2.1), when the lines are not one
// valid Dictionary, are empty, or give a known directive the wrong type:
// a Boolean for the flags, a non-negative Integer for the delta-seconds.
// Unknown members are ignored, as in Cache-Control.
func parseTargeted(lines []string) (directives, bool) {
	d := directives{maxAge: -1, sMaxAge: -1, staleWhileRevalidate: -1, staleIfErr: -1, maxStale: -1, minFresh: -1, targeted: true}
	dict, err := httpsfv.UnmarshalDictionary(lines)
	if err != nil || len(dict.Names()) == 0 {
		return d, false
	}
	for _, name := range dict.Names() {
		m, _ := dict.Get(name)
		it, isItem := m.(httpsfv.Item)
		var flag *bool
		var delta *int64
		switch name {
		case "no-store":
			flag = &d.noStore
		case "no-cache":
			flag = &d.noCache
		case "private":
			flag = &d.private
		case "public":
			flag = &d.public
		case "must-revalidate":
			flag = &d.mustRevalidate
		case "proxy-revalidate":
			flag = &d.proxyRevalidate
		case "immutable":
			flag = &d.immutable
		case "must-understand":
			flag = &d.mustUnderstand
		case "max-age":
			delta = &d.maxAge
		case "s-maxage":
			delta = &d.sMaxAge
		case "stale-while-revalidate":
			delta = &d.staleWhileRevalidate
		case "stale-if-error":
			delta = &d.staleIfErr
		default:
			continue
		}
		if !isItem {
			return d, false // an Inner List where an Item belongs
		}
		switch v := it.Value.(type) {
		case bool:
			if flag == nil {
				return d, false
			}
			*flag = v
		case int64:
			if delta == nil || v < 0 {
				return d, false
			}
			*delta = min(v, maxDelta)
		default:
			return d, false
		}
	}
	return d, true
}

// removeTargeted deletes the targeted fields this cache obeys, fields,
// from a header going downstream.
func removeTargeted(h http.Header, fields []string) {
	for _, name := range fields {
		h.Del(name)
	}
}
