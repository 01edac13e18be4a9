package wasmhost

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// defaultContentType is sent with a body the guest gave no Content-Type.
// RFC 3875 6.3.1 says the server should not guess one, and RFC 9110 8.3
// names octet-stream as the type to assume; it also keeps net/http from
// sniffing guest output into text/html.
const defaultContentType = "application/octet-stream"

// cgiResponse is a guest's stdout parsed as a CGI response.
type cgiResponse struct {
	status int
	header http.Header
	body   []byte // aliases the parsed output
	// dropped names the header lines that were skipped: malformed lines,
	// invalid names or values, and fields the host owns. WAGI skips them
	// too; Serve logs them so the app's author can see why.
	dropped []string
}

// errNoHeaderEnd and the other parse errors describe output that is not a
// CGI response; Serve answers 500 for all of them.
var (
	errNoHeaderEnd  = errors.New("no blank line ends the header block")
	errInsufficient = errors.New("header block has none of Content-Type, Location or Status")
)

// parseCGI parses a guest's stdout as a CGI response (RFC 3875 6): header
// lines, a blank line, then the body.
//
// The rules, where RFC 3875 leaves room or WAGI differs:
//   - Lines end in LF or CRLF, and the two may be mixed.
//   - Output with no blank line has no header block and is an error, as
//     in WAGI ("no headers at all" is never taken as a bare body).
//   - Like WAGI, at least one of Content-Type, Location or Status must be
//     present; Status alone is enough.
//   - Status is "NNN[ reason]" with NNN in 200..599: a guest may not send
//     an informational response. A bad Status is an error (WAGI sends 502;
//     Tern counts every unusable output as the guest's failure, 500).
//   - Location without Status is a redirect: 302 Found. A local redirect
//     (an absolute path, RFC 3875 6.2.2) is also sent to the client as a
//     302, since a guest cannot re-enter the router; clients resolve the
//     path against the request URL.
//   - Status, Location and Content-Type may appear once each; any other
//     field may repeat and is sent as many times (Set-Cookie).
//   - Lines without a colon, invalid field names or values, hop-by-hop
//     fields and Content-Length (the host frames the body itself) are
//     dropped and listed in dropped.
//   - A non-empty body without Content-Type gets defaultContentType.
func parseCGI(out []byte) (cgiResponse, error) {
	resp := cgiResponse{status: http.StatusOK, header: make(http.Header)}
	var status, location, contentType string
	rest := out
	for {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return cgiResponse{}, errNoHeaderEnd
		}
		line := rest[:nl]
		rest = rest[nl+1:]
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			resp.dropped = append(resp.dropped, truncateForLog(string(line)))
			continue
		}
		key := string(bytes.TrimSpace(name))
		val := string(bytes.TrimSpace(value))
		if !validFieldName(key) || !validFieldValue(val) {
			resp.dropped = append(resp.dropped, truncateForLog(key))
			continue
		}
		key = textproto.CanonicalMIMEHeaderKey(key)
		var err error
		switch key {
		case "Status":
			status, err = once(key, status, val)
		case "Location":
			location, err = once(key, location, val)
		case "Content-Type":
			contentType, err = once(key, contentType, val)
		default:
			if hostOwnedField(key) {
				resp.dropped = append(resp.dropped, key)
				continue
			}
			resp.header[key] = append(resp.header[key], val)
		}
		if err != nil {
			return cgiResponse{}, err
		}
	}
	if status == "" && location == "" && contentType == "" {
		return cgiResponse{}, errInsufficient
	}
	resp.body = rest

	if status != "" {
		code, err := parseStatus(status)
		if err != nil {
			return cgiResponse{}, err
		}
		resp.status = code
	} else if location != "" {
		resp.status = http.StatusFound
	}
	if location != "" {
		resp.header["Location"] = []string{location}
	}
	switch {
	case contentType != "":
		resp.header["Content-Type"] = []string{contentType}
	case len(resp.body) > 0:
		resp.header["Content-Type"] = []string{defaultContentType}
	}
	return resp, nil
}

// once returns value as the field's value, or an error if the field was
// already set: a response with two statuses or two locations is ambiguous.
func once(name, prev, value string) (string, error) {
	if prev != "" {
		return "", fmt.Errorf("header field %s appears more than once", name)
	}
	if value == "" {
		return "", fmt.Errorf("header field %s is empty", name)
	}
	return value, nil
}

// parseStatus parses a CGI Status value, "NNN" or "NNN reason".
func parseStatus(s string) (int, error) {
	code, _, _ := strings.Cut(s, " ")
	n, err := strconv.Atoi(code)
	if err != nil || len(code) != 3 || n < 200 || n > 599 {
		return 0, fmt.Errorf("header field Status %q is not a status code in 200..599", truncateForLog(s))
	}
	return n, nil
}

// hostOwnedField reports whether a response field is the host's to set:
// hop-by-hop fields (RFC 9110 7.6.1) and the body framing.
func hostOwnedField(key string) bool {
	switch key {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding",
		"Upgrade", "Te", "Trailer", "Content-Length":
		return true
	}
	return false
}

// validFieldName reports whether s is an RFC 9110 token.
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validFieldValue reports whether s holds no control characters other
// than tab (RFC 9110 5.5).
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// truncateForLog bounds guest-controlled text that ends up in logs.
func truncateForLog(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
