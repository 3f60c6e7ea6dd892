// Package certs makes the small private CA and serving certificate that
// secure the API server → kar-injector connection. A new pair is made on
// every `kar k8s deploy`, which is how the certificate is rotated.
package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Validity of a generated CA and serving certificate. Re-running deploy
// within this period rotates them.
const Validity = 2 * 365 * 24 * time.Hour

// Pair is a PEM-encoded serving certificate, its key and the CA that
// signed it. The CA key is thrown away: nothing else is ever signed with it.
type Pair struct {
	CACert   []byte
	Cert     []byte
	Key      []byte
	NotAfter time.Time
}

// New makes a CA and a serving certificate for hosts (DNS names or IPs).
func New(now time.Time, hosts ...string) (*Pair, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	notAfter := now.Add(Validity)
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kar-injector-ca", Organization: []string{"kar"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: firstOr(hosts, "kar-injector")},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Pair{
		CACert:   pemBlock("CERTIFICATE", caDER),
		Cert:     pemBlock("CERTIFICATE", der),
		Key:      pemBlock("EC PRIVATE KEY", keyDER),
		NotAfter: notAfter,
	}, nil
}

// Bundle joins the new CA with a previous one still valid at now, so the
// API server trusts both the injector Pod still running with the old
// certificate and the one rolling out with the new certificate.
func Bundle(now time.Time, newCA, oldCA []byte) []byte {
	out := append([]byte{}, newCA...)
	rest := oldCA
	for len(rest) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil || now.After(c.NotAfter) || bytes.Contains(out, pem.EncodeToMemory(b)) {
			continue
		}
		out = append(out, pem.EncodeToMemory(b)...)
		break // one previous CA is enough for one rollout
	}
	return out
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}
