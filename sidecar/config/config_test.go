package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clearEnv unsets every variable Load reads, for the test's duration.
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "KAR_") || strings.HasPrefix(k, "KAFKA_") || strings.HasPrefix(k, "REDIS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	write := func(k, v string) { os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o600) }
	write("kafka_brokers", "dir:1,dir:2")
	write("redis_port", "1111")
	write("redis_password", "from-dir")
	write("kar_app_port", "2222")

	cases := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, c *Run, rest []string)
	}{
		{"defaults", nil, []string{"-config_dir", "/nonexistent", "-app", "a"}, func(t *testing.T, c *Run, rest []string) {
			if c.AppPort != 8080 || c.RedisPort != 31379 || c.KafkaBrokers[0] != "localhost:31093" || c.KafkaUsername != "token" || c.LeaseTTL != 3*time.Second {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{"config dir fills", nil, []string{"-config_dir", dir, "-app", "a"}, func(t *testing.T, c *Run, rest []string) {
			if len(c.KafkaBrokers) != 2 || c.KafkaBrokers[1] != "dir:2" || c.RedisPort != 1111 || c.RedisPassword != "from-dir" || c.AppPort != 2222 {
				t.Errorf("from dir: %+v", c)
			}
		}},
		{"env beats dir", map[string]string{"REDIS_PORT": "3333", "KAR_CONFIG_DIR": dir}, []string{"-app", "a"}, func(t *testing.T, c *Run, rest []string) {
			if c.RedisPort != 3333 || c.AppPort != 2222 {
				t.Errorf("env vs dir: %+v", c)
			}
		}},
		{"flags beat env and extra args", map[string]string{"KAR_APP_PORT": "4444", "KAR_EXTRA_ARGS": "-service s -app_port 5555"}, []string{"-config_dir", "/none", "-app", "a", "-app_port", "6666", "node", "x.js", "-v"}, func(t *testing.T, c *Run, rest []string) {
			if c.AppPort != 6666 || c.Service != "s" {
				t.Errorf("flags: %+v", c)
			}
			if strings.Join(rest, " ") != "node x.js -v" {
				t.Errorf("command = %q", rest)
			}
		}},
		{"extra args beat env", map[string]string{"KAR_APP_PORT": "4444", "KAR_EXTRA_ARGS": "-app_port 5555 -h2c"}, []string{"-config_dir", "/none", "-app", "a"}, func(t *testing.T, c *Run, rest []string) {
			if c.AppPort != 5555 || !c.H2C {
				t.Errorf("extra args: %+v", c)
			}
		}},
		{"lists and durations", map[string]string{"KAR_ACTORS": "A, B,,C"}, []string{"-config_dir", "/none", "-app", "a", "-actor_busy_timeout", "250ms", "--", "cmd"}, func(t *testing.T, c *Run, rest []string) {
			if strings.Join(c.Actors, "|") != "A|B|C" || c.ActorBusyTimeout != 250*time.Millisecond || strings.Join(rest, " ") != "cmd" {
				t.Errorf("lists: %+v %q", c, rest)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var c Run
			rest, err := Load(&c, "run", tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, &c, rest)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		env  map[string]string
		args []string
		says string
	}{
		{map[string]string{"REDIS_PORT": "six"}, nil, "REDIS_PORT"},
		{map[string]string{"KAFKA_ENABLE_TLS": "maybe"}, nil, "KAFKA_ENABLE_TLS"},
		{nil, []string{"-app_port", "http"}, "-app_port"},
		{nil, []string{"-request_timeout", "soon"}, "duration"},
		{nil, []string{"-nope"}, "nope"},
	}
	for _, tc := range cases {
		clearEnv(t)
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		var c Run
		_, err := Load(&c, "run", append([]string{"-config_dir", "/none"}, tc.args...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v %v: err %v, want it to name %s", tc.env, tc.args, err, tc.says)
		}
	}
	// A bad secret's value never shows in the error.
	clearEnv(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "redis_port"), []byte("s3cret-not-a-port"), 0o600)
	var c Run
	_, err := Load(&c, "run", []string{"-config_dir", dir}, io.Discard)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("config-dir error shows the value: %v", err)
	}
	// Passwords have no flag: they would show in ps.
	clearEnv(t)
	if _, err := Load(&c, "run", []string{"-redis_password", "x"}, io.Discard); err == nil {
		t.Error("a -redis_password flag was accepted")
	}
	if _, err := Load(&c, "run", []string{"-h"}, io.Discard); !errors.Is(err, ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestValidate(t *testing.T) {
	good := func() Run {
		var c Run
		c.App, c.AppPort, c.KafkaBrokers, c.RedisPort, c.LeaseTTL = "app", 8080, []string{"b:1"}, 6379, time.Second
		return c
	}
	cases := []struct {
		mod  func(*Run)
		says string
	}{
		{func(c *Run) {}, ""},
		{func(c *Run) { c.App = "" }, "no application name"},
		{func(c *Run) { c.App = "a b" }, "may hold only"},
		{func(c *Run) { c.AppPort = 70000 }, "-app_port"},
		{func(c *Run) { c.Actors = []string{"A:B"} }, "':'"},
		{func(c *Run) { c.Service = "x/y" }, "'/'"},
		{func(c *Run) { c.KafkaBrokers = nil }, "kar dev"},
		{func(c *Run) { c.LeaseTTL = time.Millisecond }, "too short"},
	}
	for _, tc := range cases {
		c := good()
		tc.mod(&c)
		err := c.Validate()
		if (tc.says == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Validate: %v, want %q", err, tc.says)
		}
	}
}
