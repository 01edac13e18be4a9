package localca

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func caPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("%s: no certificate", path)
	}
	return pool
}

func TestEnsureCreatesOnceAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	leaf1, caPath, err := Ensure(dir, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, CertFile); caPath != want {
		t.Errorf("caPath = %q, want %q", caPath, want)
	}
	keyBefore, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf2, _, err := Ensure(dir, nil, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	keyAfter, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(keyBefore) != string(keyAfter) {
		t.Error("second Ensure replaced the CA key")
	}
	ca1, _ := x509.ParseCertificate(leaf1.Certificate[1])
	ca2, _ := x509.ParseCertificate(leaf2.Certificate[1])
	if ca1.SerialNumber.Cmp(ca2.SerialNumber) != 0 || !ca1.PublicKey.(*ecdsa.PublicKey).Equal(ca2.PublicKey) {
		t.Error("second Ensure used a different CA")
	}
	if ca1.Subject.CommonName != Name || !ca1.IsCA {
		t.Errorf("CA subject %q IsCA %v", ca1.Subject.CommonName, ca1.IsCA)
	}
	if got := ca1.NotAfter.Sub(now); got < 9*365*24*time.Hour {
		t.Errorf("CA valid for %v, want about 10 years", got)
	}
	if leaf1.Leaf.SerialNumber.Cmp(leaf2.Leaf.SerialNumber) == 0 {
		t.Error("two leaves share a serial number")
	}
	if _, ok := ca1.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("CA key is %T, want ECDSA", ca1.PublicKey)
	}
}

func TestLeafVerifies(t *testing.T) {
	dir := t.TempDir()
	hosts := []string{"localhost", "app.localhost", "127.0.0.1", "::1", "[::2]"}
	leaf, caPath, err := Ensure(dir, hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	pool := caPool(t, caPath)
	days := leaf.Leaf.NotAfter.Sub(now).Hours() / 24
	if days < 300 || days > 398 {
		t.Errorf("leaf valid for %.0f days, want about a year and at most 398", days)
	}
	for _, h := range []string{"localhost", "app.localhost", "127.0.0.1", "::1", "::2"} {
		_, err := leaf.Leaf.Verify(x509.VerifyOptions{
			DNSName:     h,
			Roots:       pool,
			CurrentTime: now.Add(time.Minute),
			KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			t.Errorf("verify %s: %v", h, err)
		}
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: pool, CurrentTime: now}); err == nil {
		t.Error("leaf verified for a host it was not issued for")
	}
	var ips []string
	for _, ip := range leaf.Leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if got, want := strings.Join(ips, ","), "127.0.0.1,::1,::2"; got != want {
		t.Errorf("IP SANs = %s, want %s", got, want)
	}
	if got, want := strings.Join(leaf.Leaf.DNSNames, ","), "localhost,app.localhost"; got != want {
		t.Errorf("DNS SANs = %s, want %s", got, want)
	}
	if !leaf.Leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("first IP SAN %v", leaf.Leaf.IPAddresses[0])
	}
}

func TestDefaultHosts(t *testing.T) {
	leaf, _, err := Ensure(t.TempDir(), nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(leaf.Leaf.DNSNames, ","); got != "localhost" {
		t.Errorf("DNS SANs = %s", got)
	}
	if len(leaf.Leaf.IPAddresses) != 2 {
		t.Errorf("IP SANs = %v", leaf.Leaf.IPAddresses)
	}
}

func TestBrokenCA(t *testing.T) {
	otherKey := func(t *testing.T, dir string) {
		other := t.TempDir()
		if _, _, err := Ensure(other, nil, now); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(filepath.Join(other, KeyFile))
		write(t, filepath.Join(dir, KeyFile), string(data))
	}
	leafAsCA := func(t *testing.T, dir string) {
		leaf, _, err := Ensure(t.TempDir(), nil, now)
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, CertFile), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]})))
	}
	expiry := now.Add(caValidity).Format(time.RFC3339)
	// In want, %[1]s is the CA directory.
	tests := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		when   time.Time
		want   string
	}{
		{"corrupt certificate", func(t *testing.T, dir string) { write(t, filepath.Join(dir, CertFile), "garbage") },
			now, "CA certificate %[1]s/ca.pem: no PEM CERTIFICATE block"},
		{"truncated certificate", func(t *testing.T, dir string) { truncate(t, filepath.Join(dir, CertFile)) },
			now, "CA certificate %[1]s/ca.pem: no PEM CERTIFICATE block"},
		{"bad certificate DER", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, CertFile), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")})))
		}, now, "CA certificate %[1]s/ca.pem: x509: malformed certificate"},
		{"not a CA", leafAsCA,
			now, "CA certificate %[1]s/ca.pem: not a CA certificate"},
		{"corrupt key", func(t *testing.T, dir string) { write(t, filepath.Join(dir, KeyFile), "garbage") },
			now, "CA key %[1]s/ca-key.pem: no PEM PRIVATE KEY block"},
		{"truncated key", func(t *testing.T, dir string) { truncate(t, filepath.Join(dir, KeyFile)) },
			now, "CA key %[1]s/ca-key.pem: no PEM PRIVATE KEY block"},
		{"key of another CA", otherKey,
			now, "CA key %[1]s/ca-key.pem: does not match the certificate %[1]s/ca.pem"},
		{"certificate missing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, CertFile)) },
			now, "CA certificate %[1]s/ca.pem is missing but its key %[1]s/ca-key.pem exists; remove the key to create a new CA"},
		{"key missing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, KeyFile)) },
			now, "CA key %[1]s/ca-key.pem is missing but its certificate %[1]s/ca.pem exists; remove the certificate to create a new CA"},
		{"expired", func(*testing.T, string) {},
			now.Add(caValidity), "CA certificate %[1]s/ca.pem: expired at " + expiry + "; remove %[1]s/ca.pem and %[1]s/ca-key.pem to create a new CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := Ensure(dir, nil, now); err != nil {
				t.Fatal(err)
			}
			tt.break_(t, dir)
			before := snapshot(t, dir)
			_, _, err := Ensure(dir, nil, tt.when)
			if want := fmt.Sprintf(tt.want, dir); err == nil || err.Error() != want {
				t.Errorf("Ensure = %v\nwant %s", err, want)
			}
			if after := snapshot(t, dir); after != before {
				t.Error("Ensure changed the CA files after an error")
			}
		})
	}
}

func TestEmptyHost(t *testing.T) {
	if _, _, err := Ensure(t.TempDir(), []string{"localhost", ""}, now); err == nil || !strings.Contains(err.Error(), "empty host") {
		t.Errorf("err = %v, want an empty host error", err)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	write(t, path, strings.Join(lines[:len(lines)/2], "\n")+"\n-----END x-----\n")
}

// snapshot is the names and contents of the files in dir.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		b.WriteString(e.Name() + "\n" + string(data))
	}
	return b.String()
}
