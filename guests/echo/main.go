//go:build wasip1

// Command echo is a WAGI guest that answers with a JSON description of the
// request it was given: method, paths, query, arguments, headers, the whole
// environment and the body. Tests use it to see exactly what a guest sees.
//
// Build it from this directory with:
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -o echo.wasm .
package main

import (
	"encoding/json"
	"io"
	"os"
	"strings"
)

// request is the JSON document echo writes as its response body.
type request struct {
	Method     string            `json:"method"`
	ScriptName string            `json:"script_name"`
	PathInfo   string            `json:"path_info"`
	Query      string            `json:"query"`
	Args       []string          `json:"args"`
	Headers    map[string]string `json:"headers"`
	Env        map[string]string `json:"env"`
	Body       string            `json:"body"`
}

func main() {
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		os.Stdout.WriteString("Status: 500 Internal Server Error\nContent-Type: text/plain\n\nreading stdin: " + err.Error() + "\n")
		return
	}
	req := request{
		Method:     os.Getenv("REQUEST_METHOD"),
		ScriptName: os.Getenv("SCRIPT_NAME"),
		PathInfo:   os.Getenv("PATH_INFO"),
		Query:      os.Getenv("QUERY_STRING"),
		Args:       os.Args,
		Headers:    map[string]string{},
		Env:        map[string]string{},
		Body:       string(body),
	}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		req.Env[k] = v
		// CGI turns a header name into HTTP_ plus the name upper-cased with
		// '-' as '_'; turn it back into the lower-case wire form.
		if name, ok := strings.CutPrefix(k, "HTTP_"); ok {
			req.Headers[strings.ToLower(strings.ReplaceAll(name, "_", "-"))] = v
		}
	}
	out, err := json.MarshalIndent(req, "", "  ")
	if err != nil {
		os.Stdout.WriteString("Status: 500 Internal Server Error\nContent-Type: text/plain\n\nencoding: " + err.Error() + "\n")
		return
	}
	os.Stdout.WriteString("Content-Type: application/json\n\n")
	os.Stdout.Write(out)
	os.Stdout.WriteString("\n")
}
