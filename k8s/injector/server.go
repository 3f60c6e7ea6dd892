package injector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Server is kar-injector's HTTPS server.
type Server struct {
	CertFile, KeyFile string
	Options           Options
	Log               *slog.Logger
}

// Serve answers on ln until ctx is cancelled, then drains in-flight
// reviews and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	certs, err := newCertReloader(s.CertFile, s.KeyFile)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(Path, &Handler{Options: s.Options, Log: s.Log})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: certs.get,
		},
		// The API server gives a webhook at most 30 s; a client slower
		// than that is not the API server.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log().Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

// certReloader re-reads the key pair when the files change, so a
// certificate rotated by `kar k8s deploy` (the kubelet updates the mounted
// secret in place) is served without a restart.
type certReloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	mod               time.Time
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) load() error {
	st, err := os.Stat(r.certFile)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w (set -tls_cert_file)", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("loading TLS key pair %s, %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.mod = &cert, st.ModTime()
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, err := os.Stat(r.certFile); err == nil && !st.ModTime().Equal(r.mod) {
		// Keep serving the old pair if the new one is half-written.
		_ = r.load()
	}
	return r.cert, nil
}
