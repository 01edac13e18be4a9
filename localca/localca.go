// Package localca is the development certificate authority behind `tern up`:
// a long-lived CA kept in the data directory, which a developer trusts once,
// and short-lived leaf certificates it issues for the local listeners.
package localca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names of the CA inside the directory given to Ensure.
const (
	CertFile = "ca.pem"
	KeyFile  = "ca-key.pem"
)

// Name is the common name of the CA certificate, as trust stores show it.
const Name = "Tern Local CA"

const (
	caValidity = 10 * 365 * 24 * time.Hour
	// leafValidity stays under the 398 days that Apple platforms accept for
	// server certificates, and far under the 825 days other clients cap at.
	leafValidity = 365 * 24 * time.Hour
	// backdate tolerates clocks that run a little behind ours.
	backdate = time.Hour
)

// DefaultHosts are the names a leaf covers when Ensure is given none.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Ensure loads the CA stored under dir, or creates it there if neither of
// its files exists, and issues a fresh leaf certificate for hosts (DNS
// names or IP addresses; DefaultHosts when empty), valid from now for about
// a year. The leaf's chain includes the CA certificate. caPath is the CA
// certificate file for clients to trust.
//
// The leaf key lives only in memory: every call issues a new leaf, while the
// CA is created once so that trusting it is a one-time step.
//
// # Errors
//
// A CA file that cannot be parsed, a key that does not match the
// certificate, a CA that has expired, or only one of the two files present
// is an error naming the file; Ensure never replaces an existing CA, since
// clients may already trust it.
func Ensure(dir string, hosts []string, now time.Time) (leaf tls.Certificate, caPath string, err error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	caPath = filepath.Join(dir, CertFile)
	ca, key, err := loadOrCreate(dir, now)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	leaf, err = issue(ca, key, hosts, now)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	return leaf, caPath, nil
}

// loadOrCreate returns the CA under dir, creating it when both files are
// absent.
func loadOrCreate(dir string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	certAbsent, keyAbsent := errors.Is(certErr, fs.ErrNotExist), errors.Is(keyErr, fs.ErrNotExist)
	switch {
	case certAbsent && keyAbsent:
		return create(dir, now)
	case certErr != nil && !certAbsent:
		return nil, nil, fmt.Errorf("read CA certificate: %w", certErr)
	case keyErr != nil && !keyAbsent:
		return nil, nil, fmt.Errorf("read CA key: %w", keyErr)
	case certAbsent:
		return nil, nil, fmt.Errorf("CA certificate %s is missing but its key %s exists; remove the key to create a new CA", certPath, keyPath)
	case keyAbsent:
		return nil, nil, fmt.Errorf("CA key %s is missing but its certificate %s exists; remove the certificate to create a new CA", keyPath, certPath)
	}

	ca, err := parseCert(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate %s: %w", certPath, err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("CA certificate %s: not a CA certificate", certPath)
	}
	if !now.Before(ca.NotAfter) {
		return nil, nil, fmt.Errorf("CA certificate %s: expired at %s; remove %s and %s to create a new CA", certPath, ca.NotAfter.UTC().Format(time.RFC3339), certPath, keyPath)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key %s: %w", keyPath, err)
	}
	if !publicKeysEqual(key.Public(), ca.PublicKey) {
		return nil, nil, fmt.Errorf("CA key %s: does not match the certificate %s", keyPath, certPath)
	}
	return ca, key, nil
}

// create makes a new CA and stores it under dir. The key is written before
// the certificate, and each file appears whole or not at all.
func create(dir string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: Name, Organization: []string{"Tern"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode CA key: %w", err)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("CA directory %s: %w", dir, err)
	}
	keyPath, certPath := filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile)
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

// issue signs a leaf certificate for hosts with the CA.
func issue(ca *x509.Certificate, caKey crypto.Signer, hosts []string, now time.Time) (tls.Certificate, error) {
	tmpl := &x509.Certificate{
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(leafValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		switch {
		case h == "":
			return tls.Certificate{}, errors.New("issue certificate: empty host name")
		case net.ParseIP(h) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(h))
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	tmpl.Subject = pkix.Name{CommonName: hosts[0], Organization: []string{"Tern development"}}
	// A leaf outliving its issuer would fail verification anyway.
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl.SerialNumber = serial

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate leaf key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue certificate for %s: %w", strings.Join(hosts, ", "), err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse issued certificate: %w", err)
	}
	return tls.Certificate{
		Certificate: [][]byte{der, ca.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// randomSerial returns a positive 128-bit serial number; random serials keep
// reissued certificates distinct without storing a counter.
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// writeFile writes data to path through a temporary file in the same
// directory, so a crash never leaves a truncated CA behind. It refuses to
// replace an existing file.
func writeFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once linked into place
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Link, unlike rename, fails when path exists: two processes
		// creating the CA at once cannot overwrite each other's files.
		err = os.Link(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
