package wasmhost

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// cgiCases are the parser's table; their outputs seed FuzzParseCGI too.
var cgiCases = []struct {
	name    string
	out     string
	status  int
	header  http.Header // fields that must be exactly these
	body    string
	dropped []string
	wantErr string
}{
	{
		name:   "content type and body",
		out:    "Content-Type: text/plain\n\nhello\n",
		status: 200,
		header: http.Header{"Content-Type": {"text/plain"}},
		body:   "hello\n",
	},
	{
		name:   "crlf line endings",
		out:    "Content-Type: text/html\r\nX-A: 1\r\n\r\n<p>hi</p>",
		status: 200,
		header: http.Header{"Content-Type": {"text/html"}, "X-A": {"1"}},
		body:   "<p>hi</p>",
	},
	{
		name:   "mixed line endings",
		out:    "Content-Type: text/plain\r\nX-A: 1\n\r\nbody",
		status: 200,
		header: http.Header{"X-A": {"1"}},
		body:   "body",
	},
	{
		name:   "body keeps its own blank lines and CRLFs",
		out:    "Content-Type: text/plain\n\n\n\r\nline\r\n",
		status: 200,
		body:   "\n\r\nline\r\n",
	},
	{
		name:   "status with reason",
		out:    "Status: 404 Not Found\nContent-Type: text/plain\n\nnope",
		status: 404,
		header: http.Header{"Content-Type": {"text/plain"}},
		body:   "nope",
	},
	{
		name:   "status alone is enough, as in WAGI",
		out:    "Status: 204\n\n",
		status: 204,
		header: http.Header{"Content-Type": nil},
	},
	{
		name:   "status without body type gets the default type",
		out:    "Status: 500\n\nerror text",
		status: 500,
		header: http.Header{"Content-Type": {"application/octet-stream"}},
		body:   "error text",
	},
	{
		name:   "location without status is a client redirect",
		out:    "Location: https://example.com/x\n\n",
		status: 302,
		header: http.Header{"Location": {"https://example.com/x"}, "Content-Type": nil},
	},
	{
		name:   "local redirect is sent as a client redirect",
		out:    "Location: /other/path?q=1\n\n",
		status: 302,
		header: http.Header{"Location": {"/other/path?q=1"}},
	},
	{
		name:   "location with status and document",
		out:    "Status: 301 Moved Permanently\nLocation: https://example.com/\nContent-Type: text/html\n\n<a href=\"https://example.com/\">moved</a>",
		status: 301,
		header: http.Header{"Location": {"https://example.com/"}, "Content-Type": {"text/html"}},
		body:   "<a href=\"https://example.com/\">moved</a>",
	},
	{
		name:   "repeated fields are all sent",
		out:    "Content-Type: text/plain\nSet-Cookie: a=1\nSet-Cookie: b=2\nset-cookie: c=3\n\n",
		status: 200,
		header: http.Header{"Set-Cookie": {"a=1", "b=2", "c=3"}},
	},
	{
		name:   "names are case-insensitive and values trimmed",
		out:    "content-TYPE:text/plain  \nstatus:  201 Created\nx-custom:\t v \n\nok",
		status: 201,
		header: http.Header{"Content-Type": {"text/plain"}, "X-Custom": {"v"}},
		body:   "ok",
	},
	{
		name:   "empty value of another field is kept",
		out:    "Content-Type: text/plain\nX-Empty:\n\n",
		status: 200,
		header: http.Header{"X-Empty": {""}},
	},
	{
		name:    "malformed lines are dropped, as in WAGI",
		out:     "Content-Type: text/plain\nnot a header\nBad Name: x\n\nok",
		status:  200,
		body:    "ok",
		dropped: []string{"not a header", "Bad Name"},
	},
	{
		name:    "security: host-owned fields are dropped",
		out:     "Content-Type: text/plain\nContent-Length: 999\nTransfer-Encoding: chunked\nConnection: close\nUpgrade: h2c\n\nok",
		status:  200,
		header:  http.Header{"Content-Length": nil, "Transfer-Encoding": nil, "Connection": nil, "Upgrade": nil},
		body:    "ok",
		dropped: []string{"Content-Length", "Transfer-Encoding", "Connection", "Upgrade"},
	},
	{
		name:    "security: control characters in a value drop the field",
		out:     "Content-Type: text/plain\nX-Evil: a\x00b\nX-Bell: \x07\n\nok",
		status:  200,
		header:  http.Header{"X-Evil": nil, "X-Bell": nil},
		body:    "ok",
		dropped: []string{"X-Evil", "X-Bell"},
	},
	{
		name:    "no blank line: no headers at all is an error, as in WAGI",
		out:     "hello world\n",
		wantErr: "no blank line ends the header block",
	},
	{
		name:    "headers without the blank line",
		out:     "Content-Type: text/plain\n",
		wantErr: "no blank line ends the header block",
	},
	{
		name:    "empty output",
		out:     "",
		wantErr: "no blank line ends the header block",
	},
	{
		name:    "empty header block",
		out:     "\nbody",
		wantErr: "header block has none of Content-Type, Location or Status",
	},
	{
		name:    "only other fields",
		out:     "X-A: 1\n\nbody",
		wantErr: "header block has none of Content-Type, Location or Status",
	},
	{
		name:    "status not a number",
		out:     "Status: OK\n\n",
		wantErr: `header field Status "OK" is not a status code in 200..599`,
	},
	{
		name:    "security: informational status",
		out:     "Status: 101 Switching Protocols\n\n",
		wantErr: `header field Status "101 Switching Protocols" is not a status code in 200..599`,
	},
	{
		name:    "status out of range",
		out:     "Status: 600\n\n",
		wantErr: `header field Status "600" is not a status code in 200..599`,
	},
	{
		name:    "two statuses",
		out:     "Status: 200\nStatus: 404\n\n",
		wantErr: "header field Status appears more than once",
	},
	{
		name:    "two locations",
		out:     "Location: /a\nLocation: /b\n\n",
		wantErr: "header field Location appears more than once",
	},
	{
		name:    "two content types",
		out:     "Content-Type: text/plain\nContent-Type: text/html\n\n",
		wantErr: "header field Content-Type appears more than once",
	},
	{
		name:    "empty location",
		out:     "Location:\n\n",
		wantErr: "header field Location is empty",
	},
}

func TestParseCGI(t *testing.T) {
	for _, tt := range cgiCases {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := parseCGI([]byte(tt.out))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			must(t, err)
			equal(t, "status", resp.status, tt.status)
			equal(t, "body", string(resp.body), tt.body)
			for k, want := range tt.header {
				if got := resp.header[k]; !slices.Equal(got, want) {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if !slices.Equal(resp.dropped, tt.dropped) {
				t.Errorf("dropped = %q, want %q", resp.dropped, tt.dropped)
			}
		})
	}
}

// FuzzParseCGI checks that parseCGI never panics on guest output and that
// whatever it accepts is a response net/http can send as is.
func FuzzParseCGI(f *testing.F) {
	for _, tt := range cgiCases {
		f.Add([]byte(tt.out))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		resp, err := parseCGI(out)
		if err != nil {
			return
		}
		if resp.status < 200 || resp.status > 599 {
			t.Fatalf("status %d out of range", resp.status)
		}
		if !bytes.HasSuffix(out, resp.body) {
			t.Fatalf("body %q is not the tail of the output", resp.body)
		}
		if len(resp.body) > 0 && resp.header.Get("Content-Type") == "" {
			t.Fatal("body without Content-Type")
		}
		for k, vs := range resp.header {
			if !validFieldName(k) || hostOwnedField(k) {
				t.Fatalf("field name %q let through", k)
			}
			for _, v := range vs {
				if !validFieldValue(v) || strings.ContainsAny(v, "\r\n") {
					t.Fatalf("field %s value %q let through", k, v)
				}
			}
		}
		w := httptest.NewRecorder()
		for k, vs := range resp.header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.status)
		_, _ = w.Write(resp.body)
	})
}
