package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	"sigs.k8s.io/yaml"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestKarDevServesAndStopsCleanly runs the built binary as a newcomer
// would, uses both backends with the mesh's client libraries, then stops it
// with SIGTERM and checks nothing is left running.
func TestKarDevServesAndStopsCleanly(t *testing.T) {
	for _, mode := range []string{"server", "embedded"} {
		t.Run(mode, func(t *testing.T) {
			kafkaPort, redisPort := testenv.FreePort(t), testenv.FreePort(t)
			p := testenv.Start(t, "kar-dev", nil, "", testenv.KarBin(t), "dev",
				"-kafka_port", strconv.Itoa(kafkaPort), "-redis_port", strconv.Itoa(redisPort), "-redis", mode)
			p.WaitOutput(t, "serving; press Ctrl-C", 30*time.Second)
			out := p.Output()
			for _, want := range []string{
				fmt.Sprintf("export KAFKA_BROKERS=localhost:%d\n", kafkaPort),
				"export REDIS_HOST=localhost\n",
				fmt.Sprintf("export REDIS_PORT=%d\n", redisPort),
			} {
				if !strings.Contains(out, want) {
					t.Errorf("kar dev output lacks %q:\n%s", want, out)
				}
			}
			redisPID := 0
			if m := regexp.MustCompile(`redis-server \S+ \(.*, pid (\d+)\)`).FindStringSubmatch(out); m != nil {
				redisPID, _ = strconv.Atoi(m[1])
			}
			if (mode == "server") != (redisPID != 0) {
				t.Fatalf("-redis %s: redis-server pid %d in output:\n%s", mode, redisPID, out)
			}

			devUseKafka(t, fmt.Sprintf("localhost:%d", kafkaPort))
			rc := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("localhost:%d", redisPort)})
			defer rc.Close()
			ctx := context.Background()
			if err := rc.Set(ctx, "hello", "world", 0).Err(); err != nil {
				t.Fatalf("Redis SET: %v", err)
			}
			if v, err := rc.Get(ctx, "hello").Result(); err != nil || v != "world" {
				t.Fatalf("Redis GET = %q, %v", v, err)
			}

			if err := p.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code, err := p.Wait(30 * time.Second); err != nil || code != 0 {
				t.Fatalf("kar dev after SIGTERM: exit %d, %v; output:\n%s", code, err, p.Output())
			}
			if !strings.Contains(p.Output(), "kar dev: stopped") {
				t.Errorf("kar dev did not say it stopped:\n%s", p.Output())
			}
			if redisPID != 0 {
				if err := syscall.Kill(redisPID, 0); !errors.Is(err, syscall.ESRCH) {
					t.Errorf("redis-server pid %d still exists after kar dev exited (kill 0: %v)", redisPID, err)
				}
			}
			for _, port := range []int{kafkaPort, redisPort} {
				if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
					c.Close()
					t.Errorf("port %d still answers after kar dev exited", port)
				}
			}
		})
	}
}

func devUseKafka(t *testing.T, broker string) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	producer, err := sarama.NewSyncProducer([]string{broker}, cfg)
	if err != nil {
		t.Fatalf("Kafka producer on %s: %v", broker, err)
	}
	defer producer.Close()
	if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: "kar-dev-test", Value: sarama.StringEncoder("hi")}); err != nil {
		t.Fatalf("produce: %v", err)
	}
	consumer, err := sarama.NewConsumer([]string{broker}, cfg)
	if err != nil {
		t.Fatalf("Kafka consumer: %v", err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition("kar-dev-test", 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("ConsumePartition: %v", err)
	}
	defer pc.AsyncClose()
	select {
	case m := <-pc.Messages():
		if string(m.Value) != "hi" {
			t.Fatalf("consumed %q, want hi", m.Value)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no record consumed within 10s")
	}
}

func TestKarDevPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		name string
		args []string
		flag string
	}{
		{"kafka", []string{"-kafka_port", strconv.Itoa(taken), "-redis_port", strconv.Itoa(testenv.FreePort(t))}, "-kafka_port"},
		{"redis", []string{"-kafka_port", strconv.Itoa(testenv.FreePort(t)), "-redis_port", strconv.Itoa(taken)}, "-redis_port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testenv.Start(t, "kar-dev", nil, "", append([]string{testenv.KarBin(t), "dev"}, tc.args...)...)
			code, err := p.Wait(30 * time.Second)
			if err != nil || code != exitUsage {
				t.Fatalf("exit %d, %v; want %d; output:\n%s", code, err, exitUsage, p.Output())
			}
			want := fmt.Sprintf("port %d is in use: is another `kar dev` running?", taken)
			if !strings.Contains(p.Output(), want) || !strings.Contains(p.Output(), tc.flag) {
				t.Errorf("output lacks %q and %s:\n%s", want, tc.flag, p.Output())
			}
			if n := strings.Count(strings.TrimSpace(p.Output()), "\n"); n > 0 {
				t.Errorf("want one line, got %d:\n%s", n+1, p.Output())
			}
		})
	}
}

func TestKarDevBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-redis", "docker"}, `unknown Redis mode "docker"`},
		{[]string{"-kafka_port", "0"}, "want a port between 1 and 65535"},
		{[]string{"-redis_port", "x"}, "invalid value"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-v", "loud"}, "want error, warn, info or debug"},
		{[]string{"-retention", "-1h"}, "want a duration of 0 (keep all) or more"},
		{[]string{"-retention", "forever"}, "invalid value"},
		{[]string{"-retention_mb", "-5"}, "want a number of MiB"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut strings.Builder
			code := runDev(context.Background(), tc.args, &out, &errOut)
			if code != exitUsage || !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("runDev(%q) = %d, stderr %q; want %d and %q", tc.args, code, errOut.String(), exitUsage, tc.want)
			}
		})
	}
}

// scripts/kar-env-local.sh exports exactly what kar dev prints for its default ports.
func TestKarEnvLocalScript(t *testing.T) {
	script, err := filepath.Abs("../../scripts/kar-env-local.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", `set -eu; before=$(compgen -e | sort); source "$1"; after=$(compgen -e | sort); `+
		`for v in $(comm -13 <(echo "$before") <(echo "$after")); do echo "$v=${!v}"; done`, "bash", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("source %s: %v\n%s", script, err, out)
	}
	got := strings.Fields(string(out))
	sort.Strings(got)
	want := []string{"KAFKA_BROKERS=localhost:31093", "REDIS_HOST=localhost", "REDIS_PORT=31379"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("kar-env-local.sh exports %v, want %v", got, want)
	}
}

// The compose file must be valid YAML with the two services on the ports
// of kar-env-local.sh by default (test/containers runs it for real).
func TestDockerComposeFile(t *testing.T) {
	b, err := os.ReadFile("../../scripts/docker-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Compose's ${VAR:-default}: the defaults are what a user gets.
	b = regexp.MustCompile(`\$\{[A-Z_]+:-([^}]*)\}`).ReplaceAll(b, []byte("$1"))
	// Strict: a misspelt key fails here rather than being ignored by Docker.
	var doc struct {
		Name     string `json:"name"`
		Services map[string]struct {
			Image         string         `json:"image"`
			ContainerName string         `json:"container_name"`
			User          string         `json:"user"`
			Restart       string         `json:"restart"`
			Ports         []string       `json:"ports"`
			Environment   map[string]any `json:"environment"`
			Command       []string       `json:"command"`
			Healthcheck   struct {
				Test     []string `json:"test"`
				Interval string   `json:"interval"`
				Timeout  string   `json:"timeout"`
				Retries  int      `json:"retries"`
			} `json:"healthcheck"`
		} `json:"services"`
	}
	if err := yaml.UnmarshalStrict(b, &doc); err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	for name, port := range map[string]string{"redis": "31379", "kafka": "31093"} {
		s, ok := doc.Services[name]
		if !ok {
			t.Errorf("no service %q", name)
			continue
		}
		if s.Image == "" {
			t.Errorf("service %s has no image", name)
		}
		found := false
		for _, p := range s.Ports {
			found = found || strings.HasPrefix(p, port+":") || strings.Contains(p, ":"+port+":")
		}
		if !found {
			t.Errorf("service %s does not publish host port %s: %v", name, port, s.Ports)
		}
	}
	if !strings.Contains(string(b), "localhost:31093") {
		t.Error("Kafka is not advertised as localhost:31093")
	}
}

func TestDockerComposeScriptsHelp(t *testing.T) {
	for _, s := range []string{"docker-compose-start.sh", "docker-compose-stop.sh"} {
		out, err := exec.Command("bash", "../../scripts/"+s, "-h").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage:") {
			t.Errorf("%s -h: %v\n%s", s, err, out)
		}
		out, err = exec.Command("bash", "../../scripts/"+s, "-bogus").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Usage:") {
			t.Errorf("%s -bogus should fail with usage: %v\n%s", s, err, out)
		}
	}
}

// Even kill -9 of kar dev leaves no redis-server behind.
func TestKarDevKilledLeavesNoRedisServer(t *testing.T) {
	p := testenv.Start(t, "kar-dev", nil, "", testenv.KarBin(t), "dev", "-redis", "server",
		"-kafka_port", strconv.Itoa(testenv.FreePort(t)), "-redis_port", strconv.Itoa(testenv.FreePort(t)))
	p.WaitOutput(t, "serving; press Ctrl-C", 30*time.Second)
	m := regexp.MustCompile(`redis-server \S+ \(.*, pid (\d+)\)`).FindStringSubmatch(p.Output())
	if m == nil {
		t.Fatalf("no redis-server pid in:\n%s", p.Output())
	}
	redisPID, _ := strconv.Atoi(m[1])
	// Only kar dev itself: redis-server is in its own process group.
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		return errors.Is(syscall.Kill(redisPID, 0), syscall.ESRCH) || devIsZombie(redisPID)
	}, "redis-server (pid %d) to die with kar dev", redisPID)
}

func devIsZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}
