// Package reqid gives each request an id that a client is shown with an
// error and the log line about that error carries, so that an operator
// can find the details a client is not shown.
package reqid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// Header is the response header that carries a request's id.
const Header = "Tern-Request-Id"

type ctxKey struct{}

// New returns a fresh random id.
func New() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// From returns the id attached to ctx, or "" if there is none.
func From(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// With returns ctx carrying id.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// Middleware gives every request through h an id, in its context and in
// the response's Header. An id a client sends is not trusted: a log line
// must name one request.
func Middleware(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := New()
		w.Header()[Header] = []string{id} // Header is canonical
		h.ServeHTTP(w, r.WithContext(With(r.Context(), id)))
	})
}

// Of returns r's id, making one (and setting the response Header) when r
// did not pass through Middleware, as in a handler served on its own.
func Of(w http.ResponseWriter, r *http.Request) string {
	if id := From(r.Context()); id != "" {
		return id
	}
	id := New()
	w.Header().Set(Header, id)
	return id
}

// Error answers r with code and a public message that names the request's
// id, and returns the id for the log line that holds the details.
func Error(w http.ResponseWriter, r *http.Request, code int, public string) string {
	id := Of(w, r)
	http.Error(w, public+" (request id "+id+")", code)
	return id
}
