package install

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// serviceKey is the part of an IBM Cloud resource key kar reads (see
// reference/ibm-cloud-knative-apis.md §4).
type serviceKey struct {
	Name        string `json:"name"`
	SourceCRN   string `json:"source_crn"`
	Credentials struct {
		Connection *struct {
			Rediss *struct {
				Hosts []struct {
					Hostname string          `json:"hostname"`
					Port     json.RawMessage `json:"port"`
				} `json:"hosts"`
				Authentication struct {
					Username string `json:"username"`
					Password string `json:"password"`
				} `json:"authentication"`
				Certificate struct {
					CertificateBase64 string `json:"certificate_base64"`
				} `json:"certificate"`
			} `json:"rediss"`
		} `json:"connection"`
		KafkaBrokersSASL   []string `json:"kafka_brokers_sasl"`
		BootstrapEndpoints string   `json:"bootstrap_endpoints"`
		User               string   `json:"user"`
		Password           string   `json:"password"`
		APIKeyUnderscore   string   `json:"api_key"`
		APIKey             string   `json:"apikey"`
	} `json:"credentials"`
}

// ManagedConfig reads the runtime configuration (one key per config file
// name) from a file of IBM Cloud service keys: the JSON array printed by
// `ibmcloud resource service-key NAME --output json`, a
// /v2/resource_keys answer ({"resources": [...]}) or a single key. It needs
// exactly one Databases for Redis key and one Event Streams key.
func ManagedConfig(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-m: reading service credentials: %w (save `ibmcloud resource service-key NAME --output json` to a file and pass its path)", err)
	}
	var keys []serviceKey
	trimmed := strings.TrimSpace(string(b))
	switch {
	case strings.HasPrefix(trimmed, "["):
		err = json.Unmarshal(b, &keys)
	case strings.HasPrefix(trimmed, "{"):
		var page struct {
			Resources []serviceKey `json:"resources"`
		}
		if err = json.Unmarshal(b, &page); err == nil && page.Resources != nil {
			keys = page.Resources
		} else {
			var one serviceKey
			err = json.Unmarshal(b, &one)
			keys = []serviceKey{one}
		}
	default:
		err = fmt.Errorf("not JSON")
	}
	if err != nil {
		return nil, fmt.Errorf("-m %s: not IBM Cloud service-key JSON: %w", path, err)
	}

	var redis, kafka []serviceKey
	for _, k := range keys {
		switch {
		case strings.Contains(k.SourceCRN, "redis") || k.Credentials.Connection != nil && k.Credentials.Connection.Rediss != nil:
			redis = append(redis, k)
		case strings.Contains(k.SourceCRN, "messagehub") || len(k.Credentials.KafkaBrokersSASL) > 0 || k.Credentials.BootstrapEndpoints != "":
			kafka = append(kafka, k)
		}
	}
	if len(redis) != 1 || len(kafka) != 1 {
		return nil, fmt.Errorf("-m %s: found %d Databases for Redis and %d Event Streams keys, want exactly one of each", path, len(redis), len(kafka))
	}

	cfg := map[string]string{"redis_enable_tls": "true", "kafka_enable_tls": "true", "kafka_version": "2.8.0"}
	r := redis[0].Credentials.Connection
	if r == nil || r.Rediss == nil || len(r.Rediss.Hosts) == 0 || r.Rediss.Hosts[0].Hostname == "" {
		return nil, fmt.Errorf("-m %s: Redis key %q has no credentials.connection.rediss.hosts[0].hostname", path, redis[0].Name)
	}
	// A JSON number in real keys; a numeric string is accepted too.
	port := strings.Trim(string(r.Rediss.Hosts[0].Port), `"`)
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return nil, fmt.Errorf("-m %s: Redis key %q: credentials.connection.rediss.hosts[0].port is not a port number", path, redis[0].Name)
	}
	cfg["redis_host"] = r.Rediss.Hosts[0].Hostname
	cfg["redis_port"] = port
	cfg["redis_user"] = r.Rediss.Authentication.Username
	cfg["redis_password"] = r.Rediss.Authentication.Password
	if ca := r.Rediss.Certificate.CertificateBase64; ca != "" {
		cfg["redis_ca"] = ca
	}
	if cfg["redis_password"] == "" {
		return nil, fmt.Errorf("-m %s: Redis key %q has no credentials.connection.rediss.authentication.password", path, redis[0].Name)
	}

	k := kafka[0].Credentials
	brokers := strings.Join(k.KafkaBrokersSASL, ",")
	if brokers == "" {
		brokers = k.BootstrapEndpoints
	}
	if brokers == "" {
		return nil, fmt.Errorf("-m %s: Event Streams key %q has neither credentials.kafka_brokers_sasl nor bootstrap_endpoints", path, kafka[0].Name)
	}
	cfg["kafka_brokers"] = brokers
	cfg["kafka_username"] = firstNonEmpty(k.User, "token")
	cfg["kafka_password"] = firstNonEmpty(k.Password, k.APIKeyUnderscore, k.APIKey)
	if cfg["kafka_password"] == "" {
		return nil, fmt.Errorf("-m %s: Event Streams key %q has no credentials.password (nor api_key, apikey)", path, kafka[0].Name)
	}
	return cfg, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
