package agent

import (
	"fmt"
	"net/url"
	"os"
	"strings"
)

// ReadSecret reads a password from a file, trimmed of surrounding space.
func ReadSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("password file %s is empty", path)
	}
	return s, nil
}

// withUser puts user and password into each of the comma-separated URLs.
func withUser(urls, user, password string) (string, error) {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("hub url %q: not a URL", p)
		}
		u.User = url.UserPassword(user, password)
		parts[i] = u.String()
	}
	return strings.Join(parts, ","), nil
}
