// Command kar-injector is the mutating admission webhook that injects kar
// into annotated Pods. The admission logic lives in k8s/injector.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	corev1 "k8s.io/api/core/v1"

	"github.com/kar-runtime/kar/k8s/injector"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("kar-injector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	certFile := fs.String("tls_cert_file", "", "PEM certificate served to the API server (required)")
	keyFile := fs.String("tls_private_key_file", "", "PEM private key of -tls_cert_file (required)")
	port := fs.Int("port", 8443, "HTTPS port")
	image := fs.String("sidecar_image", envOr("KAR_SIDECAR_IMAGE", "localhost:5000/kar/kar:latest"), "image of the injected kar sidecar container (env KAR_SIDECAR_IMAGE)")
	pullSecret := fs.String("image_pull_secret", os.Getenv("KAR_IMAGE_PULL_SECRET"), "image-pull secret added to Pods that get a sidecar container (env KAR_IMAGE_PULL_SECRET)")
	pullPolicy := fs.String("image_pull_policy", os.Getenv("KAR_IMAGE_PULL_POLICY"), "pull policy of the sidecar container: Always, IfNotPresent, Never (env KAR_IMAGE_PULL_POLICY)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *certFile == "" || *keyFile == "" {
		fmt.Fprintln(stderr, "kar-injector: -tls_cert_file and -tls_private_key_file are required")
		return 2
	}
	switch corev1.PullPolicy(*pullPolicy) {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		fmt.Fprintf(stderr, "kar-injector: -image_pull_policy %q: use Always, IfNotPresent or Never\n", *pullPolicy)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(*port)))
	if err != nil {
		log.Error("cannot listen", "port", *port, "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &injector.Server{
		CertFile: *certFile,
		KeyFile:  *keyFile,
		Options: injector.Options{
			SidecarImage:    *image,
			ImagePullSecret: *pullSecret,
			PullPolicy:      corev1.PullPolicy(*pullPolicy),
		},
		Log: log,
	}
	log.Info("kar-injector serving", "addr", ln.Addr().String(), "path", injector.Path, "sidecar_image", *image)
	if err := srv.Serve(ctx, ln); err != nil {
		log.Error("kar-injector stopped", "err", err)
		return 1
	}
	log.Info("kar-injector stopped")
	return 0
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
