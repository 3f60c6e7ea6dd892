package config

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
			if c.AppPort != 8080 || c.RedisPort != 31379 || c.KafkaBrokers[0] != "localhost:31093" || c.KafkaUsername != "token" || c.LeaseTTL != 3*time.Second ||
				c.ActorCollectorInterval != 10*time.Second || c.ActorReminderDelay != 3*time.Second || c.CallTimeout() != 0 {
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

// KAR 1.3.10's kar run flags are all accepted: those with a meaning set
// their field, the others warn once (one line each) that they do nothing.
func TestKARFlags(t *testing.T) {
	pem := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, []byte(pem), 0o600)
	cases := []struct {
		args  []string
		check func(c *Run) bool
		warns string // the one warning line expected, "" for none
	}{
		{[]string{"-actor_reminder_interval", "100ms"}, func(c *Run) bool { return c.ActorReminderInterval == 100*time.Millisecond }, ""},
		{[]string{"-actor_reminder_acceptable_delay", "5s"}, func(c *Run) bool { return c.ActorReminderDelay == 5*time.Second }, ""},
		{[]string{"-request_retry_limit", "20s"}, func(c *Run) bool { return c.CallTimeout() == 20*time.Second }, ""},
		{[]string{"-request_retry_limit", "20s", "-request_timeout", "3s"}, func(c *Run) bool { return c.CallTimeout() == 3*time.Second }, ""},
		{[]string{"-hostname", "pod-7"}, func(c *Run) bool { return c.Hostname == "pod-7" }, ""},
		{[]string{"-redis_ca_cert", caFile}, func(c *Run) bool { return c.RedisCA == pem }, ""},
		{[]string{"-redis_ca_cert", "TFMwdA=="}, func(c *Run) bool { return c.RedisCA == "TFMwdA==" }, ""},
		{[]string{"-v", "warning"}, func(c *Run) bool { return c.Validate() == nil }, ""},
		{[]string{"-v", "fatal"}, func(c *Run) bool { return c.Validate() == nil }, ""},
		{[]string{"-v", "3"}, func(c *Run) bool { return c.Validate() == nil }, ""},
		{[]string{"-kafka_password", "s3cret-k"}, func(c *Run) bool { return c.KafkaPassword == "s3cret-k" }, "-kafka_password on the command line is visible to every user"},
		{[]string{"-redis_password", "s3cret-r"}, func(c *Run) bool { return c.RedisPassword == "s3cret-r" }, "-redis_password on the command line is visible to every user"},
		{[]string{"-kafka_topic_config", "retention.ms=1,segment.ms=2"}, func(c *Run) bool {
			m, err := c.TopicConfig()
			return err == nil && len(m) == 2 && *m["retention.ms"] == "1" && *m["segment.ms"] == "2" && c.Validate() == nil
		}, ""},
		{[]string{"-kafka_topic_config", "retention.ms"}, func(c *Run) bool {
			err := c.Validate()
			return err != nil && strings.Contains(err.Error(), "-kafka_topic_config")
		}, ""},
		{[]string{"-kafka_replication_factor", "2"}, func(c *Run) bool { return c.KafkaReplicationFactor == 2 && c.Validate() == nil }, ""},
		{[]string{"-kafka_replication_factor", "-1"}, func(c *Run) bool {
			err := c.Validate()
			return err != nil && strings.Contains(err.Error(), "-kafka_replication_factor -1")
		}, ""},
		{[]string{}, func(c *Run) bool { return c.KafkaReplicationFactor == 0 && !c.KafkaNoIdempotence }, ""},
		{[]string{"-kafka_no_idempotence"}, func(c *Run) bool { return c.KafkaNoIdempotence }, ""},
		{[]string{"-redis_slow_op_threshold", "2s"}, nil, "-redis_slow_op_threshold (KAR_REDIS_SLOW_OP_THRESHOLD) has no effect"},
		{[]string{"-redis_slow_op_threshold", "1s"}, nil, ""}, // KAR's default: nothing to warn about
		{[]string{"-placement_cache"}, nil, "-placement_cache (KAR_PLACEMENT_CACHE) has no effect"},
		{[]string{"-kubernetes_mode"}, nil, "-kubernetes_mode (KAR_KUBERNETES_MODE) has no effect"},
		{[]string{"-sidecar_mode"}, nil, "-sidecar_mode (KAR_SIDECAR_MODE) has no effect"},
		{[]string{"-debug"}, nil, "-debug (KAR_DEBUG) has no effect"},
		{[]string{"-cancel"}, nil, "-cancel (KAR_CANCEL) has no effect"},
		{[]string{"-rpclib=false"}, nil, ""},
	}
	for _, tc := range cases {
		clearEnv(t)
		var c Run
		var out strings.Builder
		args := append([]string{"-config_dir", "/none", "-app", "a"}, tc.args...)
		rest, err := Load(&c, "run", append(args, "node", "x.js"), &out)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if strings.Join(rest, " ") != "node x.js" {
			t.Errorf("%v: command %q", tc.args, rest)
		}
		if tc.check != nil && !tc.check(&c) {
			t.Errorf("%v: not applied: %+v", tc.args, c)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		switch {
		case tc.warns == "" && out.Len() > 0:
			t.Errorf("%v: unexpected output %q", tc.args, out.String())
		case tc.warns != "" && (len(lines) != 1 || !strings.Contains(lines[0], tc.warns)):
			t.Errorf("%v: output %q, want one line containing %q", tc.args, out.String(), tc.warns)
		}
		if strings.Contains(out.String(), "s3cret") {
			t.Errorf("%v: a password shows in %q", tc.args, out.String())
		}
	}
	// The env twins warn too.
	clearEnv(t)
	t.Setenv("KAR_DEBUG", "true")
	var c Run
	var out strings.Builder
	if _, err := Load(&c, "run", []string{"-config_dir", "/none"}, &out); err != nil || !strings.Contains(out.String(), "-debug (KAR_DEBUG) has no effect") {
		t.Errorf("KAR_DEBUG=true: %v %q", err, out.String())
	}
}

// kar-sdk reads KAR_REQUEST_TIMEOUT as milliseconds and KAR_VERBOSE as
// true/false; kar takes both spellings of both.
func TestSharedEnvironment(t *testing.T) {
	cases := []struct {
		env     map[string]string
		timeout time.Duration
		says    string // error, "" for none
	}{
		{map[string]string{"KAR_REQUEST_TIMEOUT": "30000"}, 30 * time.Second, ""},
		{map[string]string{"KAR_REQUEST_TIMEOUT": "30s"}, 30 * time.Second, ""},
		{map[string]string{"KAR_REQUEST_TIMEOUT": "-1000"}, 0, ""},
		{map[string]string{"KAR_REQUEST_TIMEOUT": "soon"}, 0, "KAR_REQUEST_TIMEOUT"},
		{map[string]string{"KAR_VERBOSE": "true"}, 0, ""},
		{map[string]string{"KAR_VERBOSE": "false"}, 0, ""},
		{map[string]string{"KAR_VERBOSE": "loud"}, 0, "-v"},
	}
	for _, tc := range cases {
		clearEnv(t)
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		for _, name := range []string{"run", "rest"} {
			var err error
			var timeout time.Duration
			if name == "run" {
				var c Run
				if _, err = Load(&c, name, []string{"-config_dir", "/none", "-app", "a"}, io.Discard); err == nil {
					err, timeout = c.Validate(), c.CallTimeout()
				}
			} else {
				var c Client
				if _, err = Load(&c, name, []string{"-config_dir", "/none", "-app", "a"}, io.Discard); err == nil {
					err, timeout = c.Validate(), max(c.RequestTimeout, 0)
				}
			}
			if (tc.says == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.says) {
				t.Errorf("%s %v: err %v, want %q", name, tc.env, err, tc.says)
			}
			if err == nil && timeout != tc.timeout {
				t.Errorf("%s %v: timeout %s, want %s", name, tc.env, timeout, tc.timeout)
			}
		}
	}
	// A flag given as plain milliseconds too.
	clearEnv(t)
	var c Run
	if _, err := Load(&c, "run", []string{"-config_dir", "/none", "-request_timeout", "1500"}, io.Discard); err != nil || c.RequestTimeout != 1500*time.Millisecond {
		t.Errorf("-request_timeout 1500: %v %s", err, c.RequestTimeout)
	}
}

func TestParseLevel(t *testing.T) {
	cases := map[string]slog.Level{
		"": slog.LevelError, "error": slog.LevelError, "ERROR": slog.LevelError, "false": slog.LevelError, "1": slog.LevelError,
		"fatal": LevelFatal, "0": LevelFatal, "-3": LevelFatal,
		"warn": slog.LevelWarn, "warning": slog.LevelWarn, "2": slog.LevelWarn,
		"info": slog.LevelInfo, "true": slog.LevelInfo, "3": slog.LevelInfo,
		"debug": slog.LevelDebug, "4": slog.LevelDebug, "9": slog.LevelDebug,
	}
	for in, want := range cases {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("verbose"); err == nil {
		t.Error("ParseLevel(verbose) accepted")
	}
}

// A bad command line is one line that says what is wrong and where to look.
func TestBadFlagIsOneLine(t *testing.T) {
	clearEnv(t)
	var c Run
	var out strings.Builder
	_, err := Load(&c, "run", []string{"-config_dir", "/none", "-nope"}, &out)
	if err == nil || out.Len() != 0 || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "-nope") || !strings.Contains(err.Error(), "kar help") {
		t.Errorf("err %v, output %q", err, out.String())
	}
	out.Reset()
	if _, err := Load(&c, "run", []string{"-h"}, &out); !errors.Is(err, ErrHelp) || !strings.Contains(out.String(), "-actor_reminder_interval") {
		t.Errorf("-h: %v %q", err, out.String())
	}
}

func TestRedisAddrs(t *testing.T) {
	cases := []struct {
		host    string
		cluster bool
		want    []string
		says    string
	}{
		{"localhost", false, []string{"localhost:6379"}, ""},
		{"", false, []string{":6379"}, ""},
		{"redis.example:7000", false, []string{"redis.example:7000"}, ""},
		{"::1", false, []string{"[::1]:6379"}, ""},
		{"[::1]:7000", false, []string{"[::1]:7000"}, ""},
		{"a:7000,b:7001, c", true, []string{"a:7000", "b:7001", "c:6379"}, ""},
		{"a:7000", true, []string{"a:7000"}, ""},
		{"a:7000,b:7001", false, nil, "REDIS_CLUSTER=true"},
		{"a,,b", true, nil, "empty host"},
		{"a:x", true, nil, "not a port"},
		{"a:70000", false, nil, "not a port"},
	}
	for _, tc := range cases {
		b := Backend{RedisHost: tc.host, RedisPort: 6379, RedisCluster: tc.cluster}
		got, err := b.RedisAddrs()
		if tc.says != "" {
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("RedisAddrs(%q, cluster %v) = %q, %v; want an error saying %q", tc.host, tc.cluster, got, err, tc.says)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("RedisAddrs(%q, cluster %v) = %q, %v; want %q", tc.host, tc.cluster, got, err, tc.want)
		}
	}
}
