package artifact

import (
	"strings"
	"testing"
)

func TestRouteOptions(t *testing.T) {
	base := "name = \"a\"\nversion = \"1.0.0\"\nwasm = \"a.wasm\"\n[[routes]]\npath = \"/a\"\n"
	tests := []struct {
		name, extra, wantErr string
	}{
		{"all options", "redirect_https = true\nscheme = \"https\"\nearly_data = true\nheaders = { Strict-Transport-Security = \"max-age=63072000\" }\n", ""},
		{"unknown scheme", "scheme = \"ftp\"\n", `routes[0].scheme "ftp": want https or http`},
		{"header name with a space", "headers = { \"X Bad\" = \"1\" }\n", `routes[0].headers "X Bad": not a valid header`},
		{"header value with a newline", "headers = { X-Ok = \"1\\r\\nSet-Cookie: x\" }\n", `routes[0].headers "X-Ok": not a valid header`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseManifest([]byte(base + tt.extra))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				r := m.Routes[0]
				if !r.RedirectHTTPS || r.Scheme != "https" || !r.EarlyData || r.Headers["Strict-Transport-Security"] == "" {
					t.Fatalf("route = %+v", r)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
