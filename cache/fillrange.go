package cache

import (
	"net/http"
	"strconv"
	"strings"
)

// A Range request that arrives while its object is being filled is
// answered from the fill when it can be: the part asked for is streamed
// as its chunks land, waiting for them if need be, so a video player
// seeking into an object still on its way gets a 206 without a second
// origin request. When the fill cannot answer (several ranges, or a body
// whose length the origin did not announce, so a suffix or an open range
// has no end yet), the request goes to the origin, which answers the
// range itself.

// fillPart is the part of a fill's body a request asks for.
type fillPart struct {
	whole         bool  // the whole body, as a 200: no Range, or one to ignore
	unsatisfiable bool  // 416: the range starts past the end
	start, end    int64 // the range, end inclusive, when neither of the above
}

// partOfFill decides what r gets from fl. ok is false when the fill
// cannot answer and r must go to the origin.
func partOfFill(r *http.Request, fl *fill) (p fillPart, ok bool) {
	spec := r.Header.Get("Range")
	if r.Method != http.MethodGet || spec == "" || fl.meta.Status != http.StatusOK || !ifRangeHolds(r, fl.meta) {
		return fillPart{whole: true}, true
	}
	spec, isBytes := strings.CutPrefix(spec, "bytes=")
	if !isBytes {
		return fillPart{whole: true}, true // unknown unit: ignored (RFC 9110 §14.2)
	}
	if strings.Contains(spec, ",") || fl.length < 0 {
		return fillPart{}, false
	}
	size := fl.length
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return fillPart{whole: true}, true // invalid: ignored
	}
	if first == "" { // suffix: the last n bytes
		n, err := strconv.ParseInt(last, 10, 64)
		switch {
		case err != nil || n < 0:
			return fillPart{whole: true}, true
		case n == 0 || size == 0:
			return fillPart{unsatisfiable: true}, true
		}
		return fillPart{start: max(size-n, 0), end: size - 1}, true
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return fillPart{whole: true}, true
	}
	end := size - 1
	if last != "" {
		if end, err = strconv.ParseInt(last, 10, 64); err != nil || end < start {
			return fillPart{whole: true}, true
		}
		end = min(end, size-1)
	}
	if start >= size {
		return fillPart{unsatisfiable: true}, true
	}
	return fillPart{start: start, end: end}, true
}

// ifRangeHolds evaluates If-Range (RFC 9110 §13.1.5) against the
// response being filled: true without one, or when it names the
// response's strong entity tag or its exact Last-Modified date.
func ifRangeHolds(r *http.Request, m *meta) bool {
	v := r.Header.Get("If-Range")
	if v == "" {
		return true
	}
	if strings.HasPrefix(v, `"`) {
		etag := m.Header.Get("Etag")
		return etag != "" && !strings.HasPrefix(etag, "W/") && etag == v
	}
	lm := m.Header.Get("Last-Modified")
	return lm != "" && lm == v
}
