package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

func TestNewServesItsHosts(t *testing.T) {
	now := time.Now()
	p, err := New(now, "127.0.0.1", "kar-injector.kar-system.svc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(p.Cert, p.Key); err != nil {
		t.Fatalf("cert and key do not match: %v", err)
	}
	b, _ := pem.Decode(p.Cert)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.CACert)
	for _, host := range []string{"127.0.0.1", "kar-injector.kar-system.svc"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, CurrentTime: now}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example"}); err == nil {
		t.Error("certificate valid for a host it was not made for")
	}
	if !p.NotAfter.After(now.Add(Validity - time.Minute)) {
		t.Errorf("NotAfter %v", p.NotAfter)
	}
}

func TestBundle(t *testing.T) {
	now := time.Now()
	a, _ := New(now, "h")
	b, _ := New(now, "h")
	old, _ := New(now.Add(-3*Validity), "h") // expired by now

	if got := Bundle(now, b.CACert, a.CACert); !bytes.Equal(got, append(append([]byte{}, b.CACert...), a.CACert...)) {
		t.Error("the previous valid CA is not kept")
	}
	if got := Bundle(now, b.CACert, old.CACert); !bytes.Equal(got, b.CACert) {
		t.Error("an expired CA is kept")
	}
	if got := Bundle(now, b.CACert, b.CACert); !bytes.Equal(got, b.CACert) {
		t.Error("the same CA twice")
	}
	// Rotating again keeps only one previous CA: the bundle does not grow.
	ab := Bundle(now, b.CACert, a.CACert)
	c, _ := New(now, "h")
	if got := Bundle(now, c.CACert, ab); !bytes.Equal(got, append(append([]byte{}, c.CACert...), b.CACert...)) {
		t.Error("bundle grows or keeps the wrong CA")
	}
	if got := Bundle(now, b.CACert, []byte("garbage")); !bytes.Equal(got, b.CACert) {
		t.Error("garbage kept")
	}
}
