package install

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kar-runtime/kar/codeengine"
)

// ManagedConfig reads the runtime configuration (one key per config file
// name) of managed services from IBM Cloud service keys, with the
// extraction rules of the Code Engine tooling (codeengine). credential is
// either a file holding the keys — the JSON array printed by `ibmcloud
// resource service-key NAME --output json`, a /v2/resource_keys answer
// ({"resources": [...]}) or one key — or the name of a service credential,
// fetched from Resource Controller with IBMCLOUD_API_KEY as
// kar-env-ibmcloud.sh and kar-ce-project-enable.sh do. Either way it needs
// exactly one Databases for Redis key and one Event Streams key.
func ManagedConfig(ctx context.Context, credential string) (map[string]string, error) {
	var rc codeengine.RuntimeConfig
	if st, err := os.Stat(credential); err == nil && !st.IsDir() {
		keys, err := readKeys(credential)
		if err != nil {
			return nil, err
		}
		if rc, err = codeengine.RuntimeConfigFromKeys(filepath.Base(credential), keys); err != nil {
			return nil, fmt.Errorf("-m %s: %w", credential, err)
		}
	} else {
		cfg, err := codeengine.FromEnv()
		if err != nil {
			return nil, err
		}
		client, err := codeengine.New(cfg)
		if errors.Is(err, codeengine.ErrNoAPIKey) {
			return nil, fmt.Errorf("-m %s: no such file, and as a service credential name it needs IBMCLOUD_API_KEY set (or save `ibmcloud resource service-key NAME --output json` to a file and pass its path)", credential)
		}
		if err != nil {
			return nil, err
		}
		keys, err := client.ResourceKeys(ctx, credential)
		if err != nil {
			return nil, fmt.Errorf("-m %s: %w", credential, err)
		}
		if rc, err = codeengine.RuntimeConfigFromKeys(credential, keys); err != nil {
			return nil, fmt.Errorf("-m %s: %w", credential, err)
		}
	}
	out := make(map[string]string, len(rc))
	for k, v := range rc {
		out[strings.ToLower(k)] = v
	}
	return out, nil
}

func readKeys(path string) ([]codeengine.ResourceKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-m: reading service credentials: %w", err)
	}
	var keys []codeengine.ResourceKey
	trimmed := strings.TrimSpace(string(b))
	switch {
	case strings.HasPrefix(trimmed, "["):
		err = json.Unmarshal(b, &keys)
	case strings.HasPrefix(trimmed, "{"):
		var page struct {
			Resources []codeengine.ResourceKey `json:"resources"`
		}
		if err = json.Unmarshal(b, &page); err == nil && page.Resources != nil {
			keys = page.Resources
		} else {
			var one codeengine.ResourceKey
			err = json.Unmarshal(b, &one)
			keys = []codeengine.ResourceKey{one}
		}
	default:
		err = errors.New("it does not start with [ or {")
	}
	if err != nil {
		return nil, fmt.Errorf("-m %s: not IBM Cloud service-key JSON: %w", path, err)
	}
	return keys, nil
}
