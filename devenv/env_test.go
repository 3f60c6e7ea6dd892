package devenv

import (
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/kar-runtime/kar/sidecar/config"
)

// Env speaks sidecar/config's language: every variable is one the loader
// reads, and it reads back what the backend serves.
func TestEnvLoadsIntoSidecarConfig(t *testing.T) {
	certs, err := NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := startBackend(t, Options{Redis: RedisEmbedded, KafkaTLS: certs, RedisTLS: certs,
		KafkaPassword: "kp", RedisUser: "karmesh", RedisPassword: "rp"})
	for _, kv := range b.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	var c config.Client
	if _, err := config.Load(&c, "test", []string{"-config_dir", t.TempDir()}, io.Discard); err != nil {
		t.Fatalf("config.Load with Env(): %v", err)
	}
	got := []string{
		strings.Join(c.KafkaBrokers, ","), strconv.FormatBool(c.KafkaEnableTLS), c.KafkaUsername, c.KafkaPassword, c.KafkaCA,
		c.RedisHost, strconv.Itoa(c.RedisPort), strconv.FormatBool(c.RedisEnableTLS), c.RedisUser, c.RedisPassword, c.RedisCA,
	}
	want := []string{
		b.KafkaBrokers(), "true", "token", "kp", certs.CABase64(),
		"127.0.0.1", strconv.Itoa(b.RedisPort()), "true", "karmesh", "rp", certs.CABase64(),
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("config field %d = %q, want %q (Env: %v)", i, got[i], want[i], b.Env())
		}
	}
}
