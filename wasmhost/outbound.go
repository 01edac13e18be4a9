package wasmhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// httpModule is the name of WAGI's outbound HTTP host module, from
// github.com/deislabs/wasi-experimental-http.
const httpModule = "wasi_experimental_http"

// allowAllHosts is wasi-experimental-http's wildcard allowed host.
const allowAllHosts = "insecure:allow-all"

// maxOutboundResponses bounds the responses one instance may hold open.
const maxOutboundResponses = 16

// wasi_experimental_http error codes (its witx http_error enum).
const (
	httpOK                    = 0
	httpInvalidHandle         = 1
	httpMemoryNotFound        = 2
	httpMemoryAccessError     = 3
	httpBufferTooSmall        = 4
	httpHeaderNotFound        = 5
	httpUTF8Error             = 6
	httpDestinationNotAllowed = 7
	httpInvalidMethod         = 8
	httpInvalidEncoding       = 9
	httpInvalidURL            = 10
	httpRequestError          = 11
	httpRuntimeError          = 12
	httpTooManySessions       = 13
)

// instantiateHTTP instantiates wasi_experimental_http on rt. Its functions
// act for the request in the call's context, within its app's allowed
// hosts, and only until the request's deadline.
func instantiateHTTP(ctx context.Context, rt wazero.Runtime) error {
	return instantiateHost(ctx, rt, httpModule,
		hostFunc{"req", httpReq, []string{"url", "url_len", "method", "method_len", "headers", "headers_len", "body", "body_len", "result.status_code", "result.handle"}},
		hostFunc{"close", httpClose, []string{"handle"}},
		hostFunc{"header_get", httpHeaderGet, []string{"handle", "name", "name_len", "buf", "buf_len", "result.written"}},
		hostFunc{"headers_get_all", httpHeadersGetAll, []string{"handle", "buf", "buf_len", "result.written"}},
		// The crate's guest bindings import headers_get_all under this name.
		hostFunc{"header_get_all", httpHeadersGetAll, []string{"handle", "buf", "buf_len", "result.written"}},
		hostFunc{"body_read", httpBodyRead, []string{"handle", "buf", "buf_len", "result.written"}},
	)
}

// outResponse is an outbound response a guest holds a handle to.
type outResponse struct {
	header http.Header
	body   []byte
	pos    int
}

// allowList is an app's allowed outbound destinations.
type allowList struct {
	all     bool
	entries []allowEntry
}

// allowEntry is one allowed destination. An empty scheme allows http and
// https, each on its default port unless port is set.
type allowEntry struct {
	scheme, host, port string
}

// parseAllowedHosts parses AppConfig.AllowedHosts. An entry is a URL
// ("https://api.example.com", "http://10.0.0.2:8080"), which allows that
// scheme, host and port (the scheme's default if none is given); a bare
// host or host:port, which allows http and https; or WAGI's
// "insecure:allow-all".
func parseAllowedHosts(app string, hosts []string) (allowList, error) {
	var l allowList
	for _, h := range hosts {
		if h == allowAllHosts {
			l.all = true
			continue
		}
		e, err := parseAllowEntry(h)
		if err != nil {
			return allowList{}, fmt.Errorf("app %s: allowed host %q: %w", app, h, err)
		}
		l.entries = append(l.entries, e)
	}
	return l, nil
}

func parseAllowEntry(h string) (allowEntry, error) {
	if !strings.Contains(h, "://") {
		h = "//" + h
	}
	u, err := url.Parse(h)
	switch {
	case err != nil:
		return allowEntry{}, err
	case u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https":
		return allowEntry{}, errors.New("scheme must be http or https")
	case u.Hostname() == "":
		return allowEntry{}, errors.New("no host")
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return allowEntry{}, errors.New("only a scheme, host and port may be given")
	}
	e := allowEntry{scheme: u.Scheme, host: strings.ToLower(u.Hostname()), port: u.Port()}
	if e.port == "" && e.scheme != "" {
		e.port = defaultPort(e.scheme)
	}
	return e, nil
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// allows reports whether a guest may send a request to u.
func (l allowList) allows(u *url.URL) bool {
	if l.all {
		return true
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	for _, e := range l.entries {
		if e.host != host || (e.scheme != "" && e.scheme != u.Scheme) {
			continue
		}
		if e.port == port || (e.port == "" && port == defaultPort(u.Scheme)) {
			return true
		}
	}
	return false
}

// errRedirectDenied stops a redirect to a destination the app may not
// reach: without it, an allowed host could redirect a guest anywhere.
var errRedirectDenied = errors.New("redirect to a host that is not allowed")

// newOutboundClient returns the HTTP client for an app's guests, which
// follows redirects only within allow.
func newOutboundClient(allow allowList) *http.Client {
	return &http.Client{
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if !allow.allows(r.URL) {
				return fmt.Errorf("%w: %s", errRedirectDenied, r.URL.Redacted())
			}
			return nil
		},
	}
}

// guestString reads a UTF-8 string from guest memory, or returns the
// error code for why it cannot.
func guestString(mem api.Memory, ptr, n uint64) (string, uint32) {
	if mem == nil {
		return "", httpMemoryNotFound
	}
	b, ok := mem.Read(uint32(ptr), uint32(n))
	if !ok {
		return "", httpMemoryAccessError
	}
	if !utf8.Valid(b) {
		return "", httpUTF8Error
	}
	return string(b), httpOK
}

// httpReq implements req(url, url_len, method, method_len, headers,
// headers_len, body, body_len, result.status_code, result.handle) ->
// error. The request runs synchronously, under the request's deadline.
func httpReq(ctx context.Context, mod api.Module, stack []uint64) {
	stack[0] = uint64(doHTTPReq(ctx, mod, stack))
}

func doHTTPReq(ctx context.Context, mod api.Module, p []uint64) uint32 {
	q := requestFrom(ctx)
	if q == nil || q.app == nil {
		return httpRuntimeError
	}
	app := q.app
	mem := mod.Memory()
	rawURL, code := guestString(mem, p[0], p[1])
	if code != httpOK {
		return code
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return httpInvalidURL
	}
	if !app.allow.allows(u) {
		app.logger.LogAttrs(ctx, slog.LevelWarn, "outbound request denied",
			slog.String("host", u.Host), slog.String("reason", "host not in allowed_hosts"))
		return httpDestinationNotAllowed
	}
	method, code := guestString(mem, p[2], p[3])
	if code != httpOK {
		return code
	}
	if !validFieldName(method) {
		return httpInvalidMethod
	}
	rawHeaders, code := guestString(mem, p[4], p[5])
	if code != httpOK {
		return code
	}
	header, ok := parseHeaderString(rawHeaders)
	if !ok {
		return httpInvalidEncoding
	}
	body, ok := mem.Read(uint32(p[6]), uint32(p[7]))
	if !ok {
		return httpMemoryAccessError
	}
	if len(q.responses) >= maxOutboundResponses {
		return httpTooManySessions
	}

	// The body is copied: the transport may still read it after Do
	// returns, and guest memory is recycled when the instance ends.
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(bytes.Clone(body)))
	if err != nil {
		return httpInvalidURL
	}
	// A Host field is ignored (net/http sends u's host): it would let a
	// guest reach any virtual host behind an allowed address.
	req.Header = header
	resp, err := app.client.Do(req)
	if err != nil {
		code := uint32(httpRequestError)
		if errors.Is(err, errRedirectDenied) {
			code = httpDestinationNotAllowed
		}
		app.logger.LogAttrs(ctx, slog.LevelWarn, "outbound request failed",
			slog.String("method", method), slog.String("url", u.Redacted()), slog.String("err", err.Error()))
		return code
	}
	defer resp.Body.Close()
	limit := app.limits.MaxResponseBytes
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	switch {
	case err != nil:
		app.logger.LogAttrs(ctx, slog.LevelWarn, "outbound response failed",
			slog.String("url", u.Redacted()), slog.String("err", err.Error()))
		return httpRequestError
	case int64(len(respBody)) > limit:
		app.logger.LogAttrs(ctx, slog.LevelWarn, "outbound response too large",
			slog.String("url", u.Redacted()), slog.Int64("max_response", limit))
		return httpRequestError
	}
	app.logger.LogAttrs(ctx, slog.LevelDebug, "outbound request",
		slog.String("method", method), slog.String("url", u.Redacted()), slog.Int("status", resp.StatusCode))

	handle := q.nextHandle
	for {
		if _, used := q.responses[handle]; !used {
			break
		}
		handle++
	}
	if !mem.WriteUint16Le(uint32(p[8]), uint16(resp.StatusCode)) || !mem.WriteUint32Le(uint32(p[9]), handle) {
		return httpMemoryAccessError
	}
	if q.responses == nil {
		q.responses = make(map[uint32]*outResponse)
	}
	q.responses[handle] = &outResponse{header: resp.Header, body: respBody}
	q.nextHandle = handle + 1
	return httpOK
}

// parseHeaderString parses the API's header encoding, "name:value" lines.
func parseHeaderString(s string) (http.Header, bool) {
	h := make(http.Header)
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		if !ok || !validFieldName(name) || !validFieldValue(value) {
			return nil, false
		}
		h.Add(name, value)
	}
	return h, true
}

// response returns the response for a guest's handle.
func response(ctx context.Context, handle uint64) (*outResponse, uint32) {
	q := requestFrom(ctx)
	if q == nil {
		return nil, httpRuntimeError
	}
	r, ok := q.responses[uint32(handle)]
	if !ok {
		return nil, httpInvalidHandle
	}
	return r, httpOK
}

// httpClose implements close(handle) -> error. Closing an unknown handle
// succeeds, as in WAGI.
func httpClose(ctx context.Context, _ api.Module, stack []uint64) {
	if q := requestFrom(ctx); q != nil {
		delete(q.responses, uint32(stack[0]))
	}
	stack[0] = httpOK
}

// httpHeaderGet implements header_get(handle, name, name_len, buf,
// buf_len, result.written) -> error, writing the first value of the
// named response header.
func httpHeaderGet(ctx context.Context, mod api.Module, stack []uint64) {
	stack[0] = uint64(doHeaderGet(ctx, mod, stack))
}

func doHeaderGet(ctx context.Context, mod api.Module, p []uint64) uint32 {
	r, code := response(ctx, p[0])
	if code != httpOK {
		return code
	}
	mem := mod.Memory()
	name, code := guestString(mem, p[1], p[2])
	if code != httpOK {
		return code
	}
	values := r.header.Values(name)
	if len(values) == 0 {
		return httpHeaderNotFound
	}
	return writeOut(mem, []byte(values[0]), p[3], p[4], p[5])
}

// httpHeadersGetAll implements headers_get_all(handle, buf, buf_len,
// result.written) -> error, writing every response header as
// "name:value\n" lines, names in lower case and sorted.
func httpHeadersGetAll(ctx context.Context, mod api.Module, stack []uint64) {
	r, code := response(ctx, stack[0])
	if code != httpOK {
		stack[0] = uint64(code)
		return
	}
	names := make([]string, 0, len(r.header))
	for name := range r.header {
		names = append(names, name)
	}
	slices.Sort(names)
	var b []byte
	for _, name := range names {
		for _, v := range r.header[name] {
			b = append(b, strings.ToLower(name)...)
			b = append(b, ':')
			b = append(b, v...)
			b = append(b, '\n')
		}
	}
	stack[0] = uint64(writeOut(mod.Memory(), b, stack[1], stack[2], stack[3]))
}

// httpBodyRead implements body_read(handle, buf, buf_len, result.written)
// -> error, copying the next part of the body; 0 bytes means the end.
func httpBodyRead(ctx context.Context, mod api.Module, stack []uint64) {
	r, code := response(ctx, stack[0])
	if code != httpOK {
		stack[0] = uint64(code)
		return
	}
	n := min(int(uint32(stack[2])), len(r.body)-r.pos)
	code = writeOut(mod.Memory(), r.body[r.pos:r.pos+n], stack[1], stack[2], stack[3])
	if code == httpOK {
		r.pos += n
	}
	stack[0] = uint64(code)
}

// writeOut writes b to the guest's buffer and its length to written, or
// fails with BufferTooSmall (writing nothing) if it does not fit.
func writeOut(mem api.Memory, b []byte, buf, bufLen, written uint64) uint32 {
	if mem == nil {
		return httpMemoryNotFound
	}
	if uint64(len(b)) > uint64(uint32(bufLen)) {
		return httpBufferTooSmall
	}
	if !mem.Write(uint32(buf), b) || !mem.WriteUint32Le(uint32(written), uint32(len(b))) {
		return httpMemoryAccessError
	}
	return httpOK
}
