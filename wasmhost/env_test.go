package wasmhost

import (
	"crypto/tls"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// envMap turns cgiEnv's list into a map, failing on a duplicate name: a
// guest's getenv sees only one of two equal names.
func envMap(t *testing.T, vars []envVar) map[string]string {
	t.Helper()
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		if _, dup := m[v.key]; dup {
			t.Fatalf("variable %s set twice", v.key)
		}
		m[v.key] = v.value
	}
	return m
}

func TestCGIEnv(t *testing.T) {
	tests := []struct {
		name   string
		req    func() *http.Request
		route  string
		length int64
		extra  []envVar
		want   map[string]string // variables that must have these values
		absent []string          // variables that must not be set
		exact  bool              // want is the whole environment
	}{
		{
			// The expectations of WAGI's own build_headers test, with
			// CONTENT_TYPE as RFC 3875 4.1.3 wants it.
			name: "wagi reference",
			req: func() *http.Request {
				r := httptest.NewRequest("POST", "https://example.com:3000/path/test%3brun?foo=bar", nil)
				r.Header.Set("X-Test-Header", "hello")
				r.Header.Set("Accept", "text/html")
				r.Header.Set("User-Agent", "test")
				r.Header.Set("Authorization", "supersecret")
				r.Header.Set("Connection", "sensitive")
				r.RemoteAddr = "192.168.0.1:3000"
				return r
			},
			route:  "/path/...",
			length: 1234,
			exact:  true,
			want: map[string]string{
				"AUTH_TYPE":          "",
				"CONTENT_LENGTH":     "1234",
				"CONTENT_TYPE":       "",
				"GATEWAY_INTERFACE":  "CGI/1.1",
				"HTTP_ACCEPT":        "text/html",
				"HTTP_HOST":          "example.com:3000",
				"HTTP_USER_AGENT":    "test",
				"HTTP_X_TEST_HEADER": "hello",
				"PATH_INFO":          "/test;run",
				"PATH_TRANSLATED":    "/test;run",
				"QUERY_STRING":       "foo=bar",
				"REMOTE_ADDR":        "192.168.0.1",
				"REMOTE_HOST":        "192.168.0.1",
				"REMOTE_USER":        "",
				"REQUEST_METHOD":     "POST",
				"SCRIPT_NAME":        "/path",
				"SERVER_NAME":        "example.com",
				"SERVER_PORT":        "3000",
				"SERVER_PROTOCOL":    "HTTP/1.1",
				"SERVER_SOFTWARE":    "WAGI/1",
				"X_FULL_URL":         "https://example.com:3000/path/test%3brun?foo=bar",
				"X_MATCHED_ROUTE":    "/path/...",
				"X_RAW_PATH_INFO":    "/test%3brun",
			},
		},
		{
			name:  "exact route has no path info",
			req:   func() *http.Request { return httptest.NewRequest("GET", "http://localhost:8080/hello", nil) },
			route: "/hello",
			want: map[string]string{
				"SCRIPT_NAME": "/hello", "X_MATCHED_ROUTE": "/hello", "PATH_INFO": "", "X_RAW_PATH_INFO": "",
				"SERVER_NAME": "localhost", "SERVER_PORT": "8080", "CONTENT_LENGTH": "0",
				"X_FULL_URL": "http://localhost:8080/hello", "REMOTE_ADDR": "192.0.2.1",
			},
		},
		{
			name:  "prefix route passes the rest as path info",
			req:   func() *http.Request { return httptest.NewRequest("GET", "/static/img/a.png", nil) },
			route: "/static",
			want:  map[string]string{"SCRIPT_NAME": "/static", "PATH_INFO": "/img/a.png", "X_MATCHED_ROUTE": "/static"},
		},
		{
			name:  "prefix route with trailing slash",
			req:   func() *http.Request { return httptest.NewRequest("GET", "/static/img/a.png", nil) },
			route: "/static/",
			want:  map[string]string{"SCRIPT_NAME": "/static", "PATH_INFO": "/img/a.png"},
		},
		{
			name:  "prefix matches whole segments only",
			req:   func() *http.Request { return httptest.NewRequest("GET", "/staticx/a", nil) },
			route: "/static",
			want:  map[string]string{"SCRIPT_NAME": "/static", "PATH_INFO": ""},
		},
		{
			name:  "root route",
			req:   func() *http.Request { return httptest.NewRequest("GET", "/a/b", nil) },
			route: "/",
			want:  map[string]string{"SCRIPT_NAME": "/", "PATH_INFO": "/a/b", "X_MATCHED_ROUTE": "/"},
		},
		{
			name:  "root wildcard on root path",
			req:   func() *http.Request { return httptest.NewRequest("GET", "/", nil) },
			route: "/...",
			want:  map[string]string{"SCRIPT_NAME": "/", "PATH_INFO": "/", "X_MATCHED_ROUTE": "/..."},
		},
		{
			name:  "empty route is the root",
			req:   func() *http.Request { return httptest.NewRequest("GET", "/x", nil) },
			route: "",
			want:  map[string]string{"SCRIPT_NAME": "/", "PATH_INFO": "/x", "X_MATCHED_ROUTE": "/"},
		},
		{
			name:  "escaped slash stays escaped in the raw path info",
			req:   func() *http.Request { return httptest.NewRequest("GET", "/files/a%2Fb%20c", nil) },
			route: "/files",
			want:  map[string]string{"PATH_INFO": "/a/b c", "X_RAW_PATH_INFO": "/a%2Fb%20c"},
		},
		{
			name:  "security: NUL in the path cannot reach the environment",
			req:   func() *http.Request { return httptest.NewRequest("GET", "/f/a%00b%ff", nil) },
			route: "/f",
			want:  map[string]string{"PATH_INFO": "/a\uFFFDb\uFFFD", "X_RAW_PATH_INFO": "/a%00b%ff"},
		},
		{
			name: "tls defaults the port to 443",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "https://example.com/x?q=1", nil)
				r.TLS = &tls.ConnectionState{}
				return r
			},
			route: "/x",
			want: map[string]string{
				"SERVER_NAME": "example.com", "SERVER_PORT": "443",
				"X_FULL_URL": "https://example.com:443/x?q=1",
			},
		},
		{
			name: "ipv6 host and client",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "http://[2001:db8::1]:8443/x", nil)
				r.RemoteAddr = "[2001:db8::2]:5000"
				return r
			},
			route: "/x",
			want: map[string]string{
				"SERVER_NAME": "2001:db8::1", "SERVER_PORT": "8443",
				"X_FULL_URL": "http://[2001:db8::1]:8443/x", "REMOTE_ADDR": "2001:db8::2",
			},
		},
		{
			name: "no host header",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/x", nil)
				r.Host = ""
				return r
			},
			route:  "/x",
			want:   map[string]string{"SERVER_NAME": "localhost", "SERVER_PORT": "80"},
			absent: []string{"HTTP_HOST"},
		},
		{
			name: "request content type and length",
			req: func() *http.Request {
				r := httptest.NewRequest("POST", "/x", strings.NewReader("hello"))
				r.Header.Set("Content-Type", "text/plain")
				r.Header.Set("Content-Length", "5")
				return r
			},
			route:  "/x",
			length: 5,
			want: map[string]string{
				"CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "5",
				"HTTP_CONTENT_TYPE": "text/plain", "HTTP_CONTENT_LENGTH": "5",
			},
		},
		{
			name: "repeated fields are joined",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/x", nil)
				r.Header.Add("Accept", "text/html")
				r.Header.Add("Accept", "application/json")
				r.Header.Add("Cookie", "a=1")
				r.Header.Add("Cookie", "b=2")
				return r
			},
			route: "/x",
			want:  map[string]string{"HTTP_ACCEPT": "text/html, application/json", "HTTP_COOKIE": "a=1; b=2"},
		},
		{
			name: "security: credentials and hop-by-hop fields are dropped",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/x", nil)
				r.Header.Set("Authorization", "Bearer secret")
				r.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
				r.Header.Set("Connection", "keep-alive")
				return r
			},
			route:  "/x",
			absent: []string{"HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION", "HTTP_CONNECTION"},
		},
		{
			name: "security: httpoxy Proxy header is dropped",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/x", nil)
				r.Header.Set("Proxy", "http://evil.example:8080")
				return r
			},
			route:  "/x",
			absent: []string{"HTTP_PROXY"},
		},
		{
			name: "security: underscore names cannot spoof a proxy's header",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/x", nil)
				r.Header.Set("X-Forwarded-For", "203.0.113.7")
				r.Header["X_forwarded_for"] = []string{"10.0.0.1"}
				return r
			},
			route: "/x",
			want:  map[string]string{"HTTP_X_FORWARDED_FOR": "203.0.113.7"},
		},
		{
			name:  "manifest variables come first",
			req:   func() *http.Request { return httptest.NewRequest("GET", "/x", nil) },
			route: "/x",
			extra: []envVar{{"GREETING", "hello"}, {"MODE", "test"}},
			want:  map[string]string{"GREETING": "hello", "MODE": "test"},
		},
		{
			name: "http/2",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/x", nil)
				r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
				return r
			},
			route: "/x",
			want:  map[string]string{"SERVER_PROTOCOL": "HTTP/2.0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := cgiEnv(nil, tt.req(), tt.route, tt.length, tt.extra)
			got := envMap(t, vars)
			for k, want := range tt.want {
				v, ok := got[k]
				if !ok {
					t.Errorf("%s not set", k)
					continue
				}
				if v != want {
					t.Errorf("%s = %q, want %q", k, v, want)
				}
			}
			for _, k := range tt.absent {
				if v, ok := got[k]; ok {
					t.Errorf("%s = %q, want it unset", k, v)
				}
			}
			if tt.exact && !maps.Equal(got, tt.want) {
				extra := slices.Sorted(maps.Keys(got))
				t.Errorf("environment has extra variables; got names %v", extra)
			}
			if len(tt.extra) > 0 {
				for i, v := range tt.extra {
					if vars[i] != v {
						t.Errorf("vars[%d] = %v, want manifest %v first", i, vars[i], v)
					}
				}
			}
		})
	}
}

func TestCGIArgs(t *testing.T) {
	tests := []struct {
		url  string
		want []string
	}{
		{"/env", []string{"/env"}},
		{"/env?greet=matt&foo=bar", []string{"/env", "greet=matt", "foo=bar"}},
		{"/a%20b?x=%41&&y", []string{"/a%20b", "x=%41", "", "y"}},
		{"/q?", []string{"/q"}},
	}
	for _, tt := range tests {
		got := cgiArgs(nil, httptest.NewRequest("GET", tt.url, nil))
		if !slices.Equal(got, tt.want) {
			t.Errorf("cgiArgs(%s) = %q, want %q", tt.url, got, tt.want)
		}
	}
}

func TestManifestEnv(t *testing.T) {
	tests := []struct {
		env     map[string]string
		wantErr string
	}{
		{env: map[string]string{"B": "2", "A": "1"}},
		{env: map[string]string{"": "x"}, wantErr: `app demo: invalid environment variable name ""`},
		{env: map[string]string{"A=B": "x"}, wantErr: `app demo: invalid environment variable name "A=B"`},
		{env: map[string]string{"PATH_INFO": "/x"}, wantErr: "app demo: environment variable PATH_INFO would shadow a CGI variable"},
		{env: map[string]string{"HTTP_HOST": "x"}, wantErr: "app demo: environment variable HTTP_HOST would shadow a CGI variable"},
		{env: map[string]string{"K": "a\x00b"}, wantErr: "app demo: environment variable K contains NUL"},
	}
	for _, tt := range tests {
		vars, err := manifestEnv("demo", tt.env)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("manifestEnv(%q) error = %v, want %q", tt.env, err, tt.wantErr)
			}
			continue
		}
		must(t, err)
		if !slices.Equal(vars, []envVar{{"A", "1"}, {"B", "2"}}) {
			t.Errorf("manifestEnv = %v, want sorted A, B", vars)
		}
	}
}
