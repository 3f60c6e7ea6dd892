package codeengine

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/kar-runtime/kar/codeengine/cetest"
)

func key(crn string, cred map[string]any) ResourceKey {
	return ResourceKey{Name: "creds", SourceCRN: crn, Credentials: cred}
}

func TestRuntimeConfigFromKeys(t *testing.T) {
	full := []ResourceKey{key(cetest.RedisCRN, cetest.RedisCredentials()), key(cetest.EventStreamsCRN, cetest.EventStreamsCredentials())}
	rc, err := RuntimeConfigFromKeys("creds", full)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"REDIS_ENABLE_TLS": "true", "REDIS_CA": cetest.RedisCA, "REDIS_HOST": cetest.RedisHost, "REDIS_PORT": "31234",
		"REDIS_PASSWORD": cetest.RedisPassword, "REDIS_USER": cetest.RedisUser, "KAFKA_VERSION": KafkaVersion,
		"KAFKA_ENABLE_TLS": "true", "KAFKA_BROKERS": strings.Join(cetest.KafkaBrokers, ","), "KAFKA_PASSWORD": cetest.KafkaPassword,
	}
	if len(rc) != len(want) {
		t.Errorf("got %d variables, want %d", len(rc), len(want))
	}
	for k, v := range want {
		if rc[k] != v {
			t.Errorf("%s = %q, want %q", k, rc[k], v)
		}
	}

	es := func(edit func(map[string]any)) []ResourceKey {
		c := cetest.EventStreamsCredentials()
		edit(c)
		return []ResourceKey{full[0], key(cetest.EventStreamsCRN, c)}
	}
	redis := func(edit func(map[string]any)) []ResourceKey {
		c := cetest.RedisCredentials()
		edit(c)
		return []ResourceKey{key(cetest.RedisCRN, c), full[1]}
	}
	t.Run("newer Event Streams keys", func(t *testing.T) {
		rc, err := RuntimeConfigFromKeys("creds", es(func(c map[string]any) {
			delete(c, "kafka_brokers_sasl")
			delete(c, "password")
		}))
		if err != nil {
			t.Fatal(err)
		}
		if rc["KAFKA_BROKERS"] != strings.Join(cetest.KafkaBrokers, ",") || rc["KAFKA_PASSWORD"] != cetest.KafkaPassword {
			t.Errorf("brokers %q", rc["KAFKA_BROKERS"])
		}
	})
	failures := []struct {
		name    string
		keys    []ResourceKey
		wantErr string
	}{
		{"no keys", nil, `no service credential named "creds"`},
		{"no redis", full[1:], "has no key for a Databases for Redis instance (found keys for: messagehub)"},
		{"no event streams", full[:1], "has no key for a Event Streams instance"},
		{"two redis", append([]ResourceKey{key(strings.Replace(cetest.RedisCRN, "1111", "9999", 1), cetest.RedisCredentials())}, full...), "is used by 2 Databases for Redis keys"},
		{"redacted", []ResourceKey{key(cetest.RedisCRN, map[string]any{"REDACTED": "REDACTED_EXPLICIT"}), full[1]}, "redacted"},
		{"no redis password", redis(func(c map[string]any) {
			delete(c["connection"].(map[string]any)["rediss"].(map[string]any)["authentication"].(map[string]any), "password")
		}), "lacks connection.rediss.authentication.password"},
		{"no brokers", es(func(c map[string]any) { delete(c, "kafka_brokers_sasl"); delete(c, "bootstrap_endpoints") }), "lacks kafka_brokers_sasl and bootstrap_endpoints"},
		{"no kafka password", es(func(c map[string]any) { delete(c, "password"); delete(c, "api_key"); delete(c, "apikey") }), "lacks password"},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RuntimeConfigFromKeys("creds", tc.keys)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want %q", err, tc.wantErr)
			}
			for _, secret := range []string{cetest.RedisPassword, cetest.KafkaPassword} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q holds a password", err)
				}
			}
		})
	}
}

func TestShellQuoteEval(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	values := []string{"plain", "with space", "it's", `"$HOME" \n $(false) ; rm -rf /`, "", "a'b'c"}
	for _, v := range values {
		out, err := exec.Command(sh, "-c", "eval \"export V=$1\"; printf %s \"$V\"", "sh", ShellQuote(v)).Output()
		if err != nil || string(out) != v {
			t.Errorf("value %q came back as %q (%v)", v, out, err)
		}
	}
}
